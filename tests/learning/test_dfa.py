"""Integer DFA: purity, determinism, state, and one faithful update against a plain Python-int reference."""

import math

import pytest
import torch

from torch_intnn.audit import IntegerOnly, integer_only_backend
from torch_intnn.learning import create_rule
from torch_intnn.learning.dfa import E_ONE, TARGET
from torch_intnn.models import create_model
from torch_intnn.models.pocketnn import PocketMLP

MODELS = ["pocketnn_mlp_mnist", "pocketnn_mlp_fmnist"]
RULE = {"faithful": "dfa_faithful", "improved": "dfa"}  # the rule for each model variant


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8), torch.randint(0, 10, (n,), generator=g)


def _setup(name, mode, seed=0, **rule_args):
    model = create_model(name, variant=mode, seed=seed)
    x, y = _batch()
    model.fit_input(x)
    rule = create_rule(RULE[mode], model, seed=seed, **rule_args)
    return model, rule, rule.configure_optimizer(), x, y


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("mode", ["faithful", "improved"])
def test_step_and_inference_are_integer_only(name, mode):
    model, rule, opt, x, y = _setup(name, mode, **({} if mode == "faithful" else {"augment_shift": 1, "decay_shift": 11}))
    with IntegerOnly():
        rule.on_train_epoch_start(0, opt)
        for _ in range(2):
            stats = rule.step(x, y, opt)
            opt.step()
        model.eval()
        scores = rule.predict(x)
    assert scores.shape == (8, 10)
    assert {"loss", "correct", "saturated"} <= set(stats)
    assert all(v.dtype == torch.int64 and v.dim() == 0 for v in stats.values())
    assert int(stats["loss"]) > 0
    assert any(int(lin.weight.abs().sum()) for lin in model.linears)  # something was learnt


@pytest.mark.parametrize("mode, rule_args", [("faithful", {}), ("improved", {"augment_shift": 1})])
def test_same_seed_is_bit_identical_other_seed_differs(mode, rule_args):
    def train(seed):
        model, rule, opt, x, y = _setup("pocketnn_mlp_mnist", mode, seed=seed, **rule_args)
        for i in range(3):
            rule.step(x, y, opt)
            opt.step()
        return model.state_dict()

    a, b, c = train(0), train(0), train(1)
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    assert not all(torch.equal(v, c[k]) for k, v in a.items())


@pytest.mark.parametrize("name, bounds", [("pocketnn_mlp_mnist", [21, 51]), ("pocketnn_mlp_fmnist", [19, 36, 51])])
def test_feedback_matrices_are_seeded_buffers_in_state_dict(name, bounds):
    model = create_model(name, variant="faithful")
    rule = create_rule("dfa_faithful", model, seed=7)
    state = rule.state_dict()
    sizes = [lin.out_features for lin in model.linears[:-1]]
    for k, (r, n) in enumerate(zip(bounds, sizes)):  # r_k = isqrt(393204 // (n_{k-1} + n_k)), pocketnn.md sec. 4.1
        fb = state[f"feedback_{k}"]
        assert fb.shape == (10, n) and fb.dtype == torch.int32
        assert int(fb.abs().max()) == r and int((fb == 0).sum()) == 0
    again = create_rule("dfa_faithful", create_model(name, variant="faithful"), seed=7)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in state.items())
    improved = create_rule("dfa", create_model(name), seed=7)
    assert all(int(improved.feedback(k).abs().max()) == 8 for k in range(len(bounds)))


def test_each_rule_needs_its_model_variant_and_faithful_takes_no_improvements():
    with pytest.raises(ValueError, match="DFA needs a model built with variant='improved'"):
        create_rule("dfa", create_model("pocketnn_mlp_mnist", variant="faithful"))
    with pytest.raises(ValueError, match="FaithfulDFA needs a model built with variant='faithful'"):
        create_rule("dfa_faithful", create_model("pocketnn_mlp_mnist"))
    with pytest.raises(TypeError, match="augment_shift"):
        create_rule("dfa_faithful", create_model("pocketnn_mlp_mnist", variant="faithful"), augment_shift=1)


def test_learning_rate_schedules():
    faithful = create_rule("dfa_faithful", create_model("pocketnn_mlp_mnist", variant="faithful"))
    assert [faithful.lr_inv_at(e) for e in (0, 8, 9, 18, 19)] == [1000, 1000, 2000, 2000, 4000]  # epochs 10, 20
    improved = create_rule("dfa", create_model("pocketnn_mlp_mnist"), lr_inv=256, lr_milestones=[3, 5])
    opt = improved.configure_optimizer()
    improved.on_train_epoch_start(5, opt)
    assert all(g["lr_inv"] == 1024 for g in opt.param_groups)
    cosine = create_rule("dfa", create_model("pocketnn_mlp_mnist"), lr_inv=1000, cosine_epochs=4)
    assert [cosine.lr_inv_at(e) for e in range(5)] == [1000, 1172, 2000, 6828, 6828]  # 2 lr_inv / (1 + cos(pi e / 4))


def test_improved_units_give_each_layer_the_same_float_step():
    rule = create_rule("dfa", create_model("pocketnn_mlp_fmnist"))
    # amp_k = 1024 * R_k * input_one_k / 2**13: input 32 per std, activations 128, R = 8 for hidden layers, 1 output
    assert [g["amp"] for g in rule.configure_optimizer().param_groups] == [32, 128, 128, 16]


# ---- one faithful update by hand ------------------------------------------------------------------------------


def c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def ref_tanh(u: int) -> tuple[int, int]:
    for lo, hi, y, g in ((-(10**9), -127, lambda u: -127, 127), (-127, -74, lambda u: c_div(u, 4) - 88, 8),
                         (-74, -31, lambda u: u - 32, 2), (-31, 32, lambda u: 2 * u, 1), (32, 75, lambda u: u + 32, 2),
                         (75, 128, lambda u: c_div(u, 4) + 88, 8), (128, 10**9, lambda u: 127, 127)):
        if lo <= u < hi:
            return y(u), g
    raise AssertionError


def test_faithful_update_matches_a_python_int_reference():
    """784 -> 4 -> 3 -> 10 is too big to write out; a 6-pixel, 4-3-10 net with hand-set weights runs the same code."""
    torch.manual_seed(0)
    model = PocketMLP((6, 4, 3, 10), variant="faithful")
    g = torch.Generator().manual_seed(3)
    for lin in model.linears:
        lin.weight.copy_(torch.randint(-400, 401, lin.weight.shape, generator=g))
        lin.bias.copy_(torch.randint(-900, 901, lin.bias.shape, generator=g))
    x = torch.randint(0, 256, (5, 1, 2, 3), generator=g, dtype=torch.uint8)
    y = torch.tensor([3, 0, 9, 3, 7])
    rule = create_rule("dfa_faithful", model, seed=11, lr_inv=7)
    opt = rule.configure_optimizer()
    W = [lin.weight.tolist() for lin in model.linears]
    b = [lin.bias.tolist() for lin in model.linears]
    B = [rule.feedback(k).tolist() for k in range(2)]
    # r_k = isqrt(393204 // (n_{k-1} + n_k)) from the hidden layer's own fan-in and fan-out
    assert [max(abs(v) for row in Bk for v in row) for Bk in B] <= [math.isqrt(393204 // 10), math.isqrt(393204 // 7)]

    # forward, per sample, in Python ints
    acts, gs = [[list(map(int, img.flatten())) for img in x]], []
    for k in range(3):
        fan_in = len(W[k][0])
        out, gk = [], []
        for a in acts[-1]:
            pairs = [ref_tanh(c_div(sum(w * v for w, v in zip(W[k][j], a)) + b[k][j], 256 * fan_in)) for j in range(len(W[k]))]
            out.append([p[0] for p in pairs])
            gk.append([p[1] for p in pairs])
        acts.append(out)
        gs.append(gk)
    e = [[acts[3][n][c] - (TARGET if c == int(y[n]) else 0) for c in range(10)] for n in range(5)]
    deltas = [None, None, [[c_div(e[n][c], gs[2][n][c]) for c in range(10)] for n in range(5)]]
    for k in range(2):
        deltas[k] = [[c_div(sum(e[n][c] * B[k][c][j] for c in range(10)), gs[k][n][j]) for j in range(len(W[k]))]
                     for n in range(5)]
    new_W, new_b = [], []
    for k in range(3):
        new_W.append([[max(-32767, min(32767, W[k][j][i] - c_div(sum(deltas[k][n][j] * acts[k][n][i] for n in range(5)), 7)))
                       for i in range(len(W[k][0]))] for j in range(len(W[k]))])
        new_b.append([max(-32767, min(32767, b[k][j] - c_div(sum(deltas[k][n][j] for n in range(5)), 7)))
                      for j in range(len(W[k]))])
    loss = sum(c_div(v * v, 2) for row in e for v in row)

    stats = rule.step(x, y, opt)
    opt.step()
    assert int(stats["loss"]) == loss
    assert [lin.weight.tolist() for lin in model.linears] == new_W
    assert [lin.bias.tolist() for lin in model.linears] == new_b
    assert any(W[k] != new_W[k] for k in range(3))  # the update is not trivially zero


def test_improved_softmax_error_matches_float_softmax():
    model = create_model("pocketnn_mlp_mnist")
    rule = create_rule("dfa", model)
    scores = torch.tensor([[0, 16, 32, -40, 5, 0, 0, 0, 0, 300], [7] * 10], dtype=torch.int16)
    y = torch.tensor([2, 4])
    e, loss = rule._error(scores, y)
    p = torch.softmax(scores.double() / 16, 1)  # logits are 16 per nat
    ref = (p - torch.nn.functional.one_hot(y, 10)) * E_ONE
    assert (e.double() - ref).abs().max() <= 1.0
    nll = -torch.log(p[torch.arange(2), y]) * 16
    assert abs(int(loss) - float(nll.sum())) <= 2
    smooth = create_rule("dfa", model, label_smoothing=10)  # targets 10/1024 per class, 934/1024 on the true one
    e_smooth, _ = smooth._error(scores, y)
    assert torch.equal(e_smooth, e - 10 + 100 * torch.nn.functional.one_hot(y, 10))


def test_augmentation_translates_by_at_most_the_shift():
    model = create_model("pocketnn_mlp_mnist")
    rule = create_rule("dfa", model, augment_shift=1)
    x = torch.zeros(50, 1, 28, 28, dtype=torch.uint8)
    x[:, 0, 10, 20] = 200
    out = rule._augment(x, rule._draw_augment(len(x)))
    pos = out.view(50, -1).argmax(1)
    dy, dx = pos // 28 - 10, pos % 28 - 20
    assert torch.equal(out.view(50, -1).sum(1), torch.full((50,), 200))
    assert int(dy.abs().max()) == 1 and int(dx.abs().max()) == 1 and len(set((dy * 3 + dx).tolist())) > 5


def test_plain_pytorch_loop_learns_a_toy_task():
    """The README's loop without Lightning, on images whose class is a bright 4x4 block at one of 10 places."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (200,), generator=g)
    x = torch.randint(0, 60, (200, 1, 28, 28), generator=g, dtype=torch.uint8)
    for c in range(10):
        x[y == c, 0, 2 + 2 * c : 6 + 2 * c, 4 + 2 * c : 8 + 2 * c] = 250
    model = create_model("pocketnn_mlp_mnist", seed=0)
    model.fit_input(x)
    rule = create_rule("dfa", model, seed=0, lr_inv=64, lr_milestones=[1])
    opt = rule.configure_optimizer()
    for epoch in range(2):
        rule.on_train_epoch_start(epoch, opt)
        for idx in torch.randperm(len(y), generator=g).split(20):
            rule.step(x[idx], y[idx], opt)
            opt.step()
    model.eval()
    assert int((rule.predict(x).argmax(1) == y).sum()) >= 190  # an untrained model gets about 20


# ---- the compiled step ---------------------------------------------------------------------------------------

def _run_steps(rule, opt, steps=18, n=20, compiled=False):
    """Steps on fresh batches; 18 steps pass a weight-decay step (every 16th) with DFA."""
    out = []
    for i in range(steps):
        x, y = _batch(n, seed=100 + i)
        stats = rule.train_step(x, y, opt) if compiled else (rule.step(x, y, opt), opt.step())[0]
        out.append({k: int(v) for k, v in stats.items()})
    return out


def _state(model, opt):
    return [t.clone() for t in model.state_dict().values()] + \
        [s["residual"].clone() for s in opt.state.values() if "residual" in s]


def _assert_compiled_matches_eager(mode, backend, steps):
    extra = {} if mode == "faithful" else {"augment_shift": 1, "augment_flip": True, "decay_shift": 11}
    model_a, rule_a, opt_a, *_ = _setup("pocketnn_mlp_mnist", mode, **extra)
    model_b, rule_b, opt_b, *_ = _setup("pocketnn_mlp_mnist", mode, **extra)
    rule_b.compile_step(backend=backend)
    for epoch in range(2):  # a schedule change between the epochs must not matter to the compiled graph
        rule_a.on_train_epoch_start(epoch * 30, opt_a)
        rule_b.on_train_epoch_start(epoch * 30, opt_b)
        assert _run_steps(rule_a, opt_a, steps) == _run_steps(rule_b, opt_b, steps, compiled=True)
    a, b = _state(model_a, opt_a), _state(model_b, opt_b)
    assert len(a) == len(b) and all(torch.equal(u, v) for u, v in zip(a, b))
    assert torch.equal(opt_a.saturated, opt_b.saturated)  # per parameter
    assert not torch.equal(model_a.linears[0].weight, _setup("pocketnn_mlp_mnist", mode, **extra)[0].linears[0].weight)


@pytest.mark.parametrize("mode", ["faithful", "improved"])
def test_compiled_step_traces_as_one_graph_and_matches_the_eager_step(mode):
    """Dynamo with the eager backend: the step traces with fullgraph=True and gives the eager pair's results."""
    _assert_compiled_matches_eager(mode, "eager", steps=17)


@pytest.mark.parametrize("mode", ["faithful", "improved"])
def test_compiled_step_is_integer_only(mode, gemm_op):
    """The ATen graph Inductor compiles (forward, gradients, update) has no floating-point value."""
    extra = {} if mode == "faithful" else {"augment_shift": 1, "decay_shift": 11}
    model, rule, opt, x, y = _setup("pocketnn_mlp_mnist", mode, **extra)
    ops = []
    rule.compile_step(backend=integer_only_backend(ops))
    rule.train_step(x, y, opt)
    assert gemm_op in ops and len(ops) > 50
    # and the check can fail: a float op in a compiled function is caught
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed, match="FloatOpError.*float32"):
        torch.compile(lambda t: (t.float() * 2).to(torch.int32), backend=integer_only_backend())(x[:, 0, 0])


def test_strict_optimizer_takes_the_eager_step_which_refuses_before_writing():
    model, rule, opt, x, y = _setup("pocketnn_mlp_mnist", "improved")
    rule.compile_step(backend="eager")
    opt.strict = True
    opt.name_parameters(model)
    model.linears[0].weight.fill_(32767)  # any step that raises a weight leaves the 16-bit range
    before = _state(model, opt)
    with pytest.raises(OverflowError, match="linears.0.weight"):
        rule.train_step(x, y, opt)
    assert all(torch.equal(u, v) for u, v in zip(before, _state(model, opt)))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["faithful", "improved"])
def test_inductor_compiled_step_is_bit_identical_to_eager(mode):
    _assert_compiled_matches_eager(mode, "inductor", steps=20)


def test_without_a_cxx_compiler_the_step_stays_eager_with_a_warning(monkeypatch):
    import torch_intnn.learning.base as base

    monkeypatch.setattr(base, "_have_cxx", lambda: False)
    model, rule, opt, x, y = _setup("pocketnn_mlp_mnist", "improved")
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        rule.compile_step()
    assert rule._compiled is None
    assert int(rule.train_step(x, y, opt)["loss"]) > 0


def test_each_compiled_rule_has_its_own_graphs():
    """Rules whose settings differ only in a constant of the step (label smoothing), compiled one after the
    other, many times over: each follows its own eager twin, and no recompile limit is hit."""
    for _ in range(5):
        for extra in ({}, {"label_smoothing": 50}):
            model_a, rule_a, opt_a, *_ = _setup("pocketnn_mlp_mnist", "improved", **extra)
            model_b, rule_b, opt_b, *_ = _setup("pocketnn_mlp_mnist", "improved", **extra)
            rule_b.compile_step(backend="eager")
            assert _run_steps(rule_a, opt_a, 3) == _run_steps(rule_b, opt_b, 3, compiled=True)
            assert torch.equal(model_a.linears[0].weight, model_b.linears[0].weight)


def test_a_plain_sequential_of_the_packages_layers_trains_as_the_model_it_is_made_of():
    """FaithfulDFA finds the IntLinear layers and their activations in an nn.Sequential itself: a Sequential
    of a faithful PocketMLP's own modules trains bit for bit as the PocketMLP does."""
    from torch import nn

    from torch_intnn.nn import IntFlatten

    def pair(seed):
        model = create_model("pocketnn_mlp_mnist", variant="faithful", seed=seed)
        layers = [m for lin, act in zip(model.linears, model.acts) for m in (lin, act)]
        return model, nn.Sequential(model.input, IntFlatten(), *layers)

    x, y = _batch()
    reference, _ = pair(0)
    model, seq = pair(1)
    seq.load_state_dict(nn.Sequential(reference.input, IntFlatten(),
                                      *[m for p in zip(reference.linears, reference.acts) for m in p]).state_dict())
    for net in (reference, seq):
        rule = create_rule("dfa_faithful", net, seed=7)
        opt = rule.configure_optimizer()
        for _ in range(3):
            rule.train_step(x, y, opt)
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(reference.linears, model.linears))
    assert int(model.linears[0].weight.abs().sum()) > 0


def test_dfa_names_what_it_cannot_train_through():
    from torch import nn

    from torch_intnn.nn import IntConv2d, IntFlatten, IntLinear, NitroReLU, NitroScaling
    from torch_intnn.nn.activations import PocketTanh

    # NITRO-ReLU is an integer activation (it has the derivative protocol), but takes NITRO-Scaling's int8 output,
    # which DFA cannot train through
    with pytest.raises(TypeError, match="cannot train through NitroScaling '2'"):
        create_rule("dfa_faithful", nn.Sequential(IntFlatten(), IntLinear(784, 10), NitroScaling(256 * 784),
                                                  NitroReLU()))
    with pytest.raises(TypeError, match="cannot train through IntConv2d '0'"):
        create_rule("dfa_faithful", nn.Sequential(IntConv2d(1, 4, 3), IntFlatten(), IntLinear(2704, 10), PocketTanh(2704)))
    with pytest.raises(TypeError, match="output layer '3' needs an activation"):
        create_rule("dfa_faithful", nn.Sequential(IntFlatten(), IntLinear(784, 10), PocketTanh(784), IntLinear(10, 10)))
    with pytest.raises(ValueError, match="fixed-point units.*FaithfulDFA"):
        create_rule("dfa", nn.Sequential(IntFlatten(), IntLinear(784, 10), PocketTanh(784), IntLinear(10, 10),
                                         PocketTanh(10)))
