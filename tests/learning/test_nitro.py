"""The "nitro" rule: loss, optimiser groups, step statistics, reproducibility, resumption, plateau schedule."""

import pytest
import torch

from torch_intnn.learning import PlateauSchedule, create_rule
from torch_intnn.learning.nitro import nitro_targets, rss_loss
from torch_intnn.models import create_model


def _batch(n=8, shape=(1, 28, 28), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8), torch.randint(0, 10, (n,), generator=g)


def test_targets_and_rss_by_hand():
    t = nitro_targets(torch.tensor([2, 0]), 4)
    assert t.tolist() == [[0, 0, 32, 0], [32, 0, 0, 0]]
    y_hat = torch.tensor([[1, -2, -127, 127], [40, 0, 0, 0]], dtype=torch.int8)
    delta, loss = rss_loss(y_hat, t)
    # -127 - 32 = -159 saturates to -127 (the reference's int8 cast wraps it to +97)
    assert delta.tolist() == [[1, -2, -127, 127], [8, 0, 0, 0]]
    assert int(loss) == 1 + 4 + 159**2 + 127**2 + 64


def test_optimizer_groups_follow_the_paper_and_conv_amp_is_selectable():
    model = create_model("nitro_vgg8b", width_div=16)
    ref = create_rule("nitro", model, fwd_decay_inv=25_000, head_decay_inv=3000).configure_optimizer()
    paper = create_rule("nitro", model, conv_amp="paper").configure_optimizer()
    amps = {g["name"]: g["amp"] for g in ref.param_groups}
    assert amps["block0.forward"] == 640 and amps["block6.forward"] == 640 and amps["block0.head"] == 1
    assert amps["output"] == 1
    decays = {g["name"]: g["decay_inv"] for g in ref.param_groups}
    assert decays["block3.forward"] == 25_000 and decays["block3.head"] == decays["output"] == 3000
    paper_amps = {g["name"]: g["amp"] for g in paper.param_groups}
    # 640 * floor(H * W / (kh * kw)) with the head's pool; the FC block (block6) keeps 640
    for i, block in enumerate(model.blocks[:6]):
        kh, kw = block.head.kernel
        h, w = block.head.in_shape[1:]
        assert paper_amps[f"block{i}.forward"] == 640 * (h * w // (kh * kw))
    assert paper_amps["block6.forward"] == 640 and all(g["lr_inv"] == 512 for g in paper.param_groups)
    with pytest.raises(ValueError, match="conv_amp"):
        create_rule("nitro", model, conv_amp="intended")


def test_step_returns_integer_statistics_and_updates_every_weight():
    model = create_model("nitro_mlp1", seed=0)
    x, y = _batch(16)
    model.fit_input(x)
    rule = create_rule("nitro", model, seed=0)
    opt = rule.configure_optimizer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(3):
        stats = rule.step(x, y, opt)
        opt.step()
    assert {"loss", "correct", "local_loss", "saturated"} <= set(stats)
    assert all(v.dtype == torch.int64 and v.dim() == 0 for v in stats.values())
    assert 0 <= int(stats["correct"]) <= 16
    changed = [k for k, v in model.state_dict().items() if k.endswith("weight") and not torch.equal(v, before[k])]
    assert len(changed) == 2 * len(model.blocks) + 1
    assert int(rule.steps) == 3


def _train(seed, steps, state=None):
    model = create_model("nitro_small_cnn", seed=seed, width_div=8)
    x, y = _batch(6, (3, 32, 32), seed=1)
    model.fit_input(x)
    rule = create_rule("nitro", model, seed=seed)
    opt = rule.configure_optimizer()
    if state is not None:
        model.load_state_dict(state[0])
        rule.load_state_dict(state[1])
        opt.load_state_dict(state[2])
    for _ in range(steps):
        rule.step(x, y, opt)
        opt.step()
    return model, rule, opt


def test_same_seed_same_weights_and_resume_is_exact():
    a, rule_a, opt_a = _train(0, 3)
    b, _, _ = _train(0, 3)
    c, _, _ = _train(1, 3)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())
    mid, rule_mid, opt_mid = _train(0, 2)
    resumed, _, _ = _train(0, 1, (mid.state_dict(), rule_mid.state_dict(), opt_mid.state_dict()))
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in a.state_dict().items())


def test_plateau_schedule_on_integer_counts():
    w = torch.zeros(1, dtype=torch.int32)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    opt.param_groups[0]["lr_inv"] = 512
    sched = PlateauSchedule(factor=3, patience=2, start_epoch=1, min_delta_bp=100, stop_patience=3,
                            stop_start_epoch=2)
    total = 5000  # 1 pp = 50 images
    counts = [4000, 4100, 4150, 4160, 4199, 4199, 4180, 4170]
    lr, stop = [], []
    for c in counts:
        stop.append(sched.step(c, total, opt))
        lr.append(opt.param_groups[0]["lr_inv"])
    # epoch 0 untracked; 1 sets best 4100; 2: +50 is not > 1 pp; 3: +60 improves (best 4160); 4: +39 no;
    # 5: no -> decay (x3); 6: no; 7: no -> decay again
    assert lr == [512, 512, 512, 512, 512, 1536, 1536, 4608]
    # stopping tracks from epoch 2: best 4150; 4160 and 4199 are not 1 pp better; the third stall (epoch 5) stops
    assert stop == [False, False, False, False, False, True, True, True]
    assert int(sched.decays) == 2 and w.tolist() == [0]


def test_rule_state_holds_the_schedule():
    model = create_model("nitro_mlp1")
    rule = create_rule("nitro", model)
    opt = rule.configure_optimizer()
    for _ in range(30):
        rule.on_validation_end(100, 1000, opt)
    assert opt.param_groups[0]["lr_inv"] == 512 * 3  # tracked from epoch 10, a decay after 15 stalled epochs
    assert int(rule.state_dict()["schedule.decays"]) == 1
    assert not rule.should_stop


def test_lr_milestones_are_idempotent_and_combine_with_plateau_decays():
    model = create_model("nitro_mlp1")
    rule = create_rule("nitro", model, lr_milestones=[2, 4], plateau_start=0, plateau_patience=1)
    opt = rule.configure_optimizer()
    seen = []
    for epoch in range(5):
        rule.on_train_epoch_start(epoch, opt)
        rule.on_train_epoch_start(epoch, opt)  # a resumed run calls it again for the same epoch
        seen.append(opt.param_groups[0]["lr_inv"])
    assert seen == [512, 512, 1536, 1536, 4608]
    rule.on_validation_end(10, 100, opt)  # epoch 0 of the plateau rule: sets its best
    rule.on_validation_end(10, 100, opt)  # no improvement, patience 1: one decay
    assert all(g["lr_inv"] == 4608 * 3 for g in opt.param_groups)


# ---- the compiled step ---------------------------------------------------------------------------------------

def _mlp_with_every_random_draw(seed=0):
    """A small NITRO MLP with random crops, flips and dropout: every kind of draw a compiled step must replay."""
    from torch_intnn.models.nitro import build_nitro_mlp

    model = build_nitro_mlp("mnist", [64, 32], seed=seed, dropout_pct=20, augment=True)
    model.augment.flip = True
    return model


def _cnn_with_every_random_draw(seed=0):
    """A small NITRO CNN (two conv blocks, a pool between them, an FC block) with crops, flips and dropout."""
    from torch_intnn.models.nitro import build_nitro_cnn

    model = build_nitro_cnn("mnist", [8, "P", 16, "P"], [32], seed=seed, d_max=256, dropout_pct=20)
    model.augment.flip = True
    return model


def _compare_compiled(backend, steps=6, make=_mlp_with_every_random_draw, residuals=5, milestone=None,
                      **rule_args):
    """Eager and compiled steps on the same batches (the last one smaller): equal statistics, weights, step
    counters and residuals; with ``milestone``, the schedule changes the divisors after that many steps."""
    models, rules, opts = [], [], []
    for _ in range(2):
        model = make()
        model.fit_input(_batch(64)[0])
        rule = create_rule("nitro", model, seed=3, **rule_args)
        models.append(model), rules.append(rule), opts.append(rule.configure_optimizer())
    rules[1].compile_step(backend=backend)
    for i in range(steps):
        if i == milestone:
            for rule, opt in zip(rules, opts):
                rule.apply_schedule(1, opt)
        x, y = _batch(16 if i < steps - 1 else 12, seed=i)  # the last batch is smaller, as an epoch's last
        eager = rules[0].train_step(x, y, opts[0])
        compiled = rules[1].train_step(x, y, opts[1])
        assert {k: int(v) for k, v in eager.items()} == {k: int(v) for k, v in compiled.items()}
    if milestone is not None:
        assert opts[1].param_groups[0]["lr_inv"] == 3 * rules[1].lr_inv  # the schedule did change
    a, b = models[0].state_dict(), models[1].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(rules[0].steps, rules[1].steps)
    ra = [s["residual"] for s in opts[0].state.values() if "residual" in s]
    rb = [s["residual"] for s in opts[1].state.values() if "residual" in s]
    assert len(ra) == len(rb) == (residuals if rule_args.get("residual") else 0)
    assert all(torch.equal(u, v) for u, v in zip(ra, rb))


@pytest.mark.parametrize("rule_args", [{}, {"residual": True, "rounding": "floor"}, {"rounding": "round"}])
def test_compiled_step_matches_eager_with_crops_flips_and_dropout(rule_args):
    """Dynamo (eager backend) traces the whole step, the random draws made ahead in the same order; the
    paper's truncation, floor with carried residual and round-to-nearest, with power-of-two divisors (heads,
    output: shifts in the compiled step) and others (forward layers, 512 * 640)."""
    _compare_compiled("eager", **rule_args)


@pytest.mark.parametrize("make", [_mlp_with_every_random_draw, _cnn_with_every_random_draw], ids=["mlp", "cnn"])
def test_compiled_nitro_step_is_integer_only(gemm_op, make):
    from torch_intnn.audit import integer_only_backend

    model = make()
    rule = create_rule("nitro", model)
    ops = []
    rule.compile_step(backend=integer_only_backend(ops))
    rule.train_step(*_batch(16), rule.configure_optimizer())
    assert gemm_op in ops and "aten.randint.low" not in ops  # draws happen outside the graph


@pytest.mark.slow
def test_inductor_compiled_nitro_step_is_bit_identical_to_eager():
    _compare_compiled("inductor", steps=4, residual=True, rounding="floor")


def test_compiled_cnn_step_matches_eager_across_a_schedule_change():
    """The conv blocks' step (im2col kept for the weight gradient, pooling with its positions, unpooling)
    traced by Dynamo, with crops, flips and dropout, floor rounding with residuals, and a milestone."""
    _compare_compiled("eager", steps=4, make=_cnn_with_every_random_draw, residuals=7, milestone=2,
                      residual=True, rounding="floor", lr_milestones=[1])


@pytest.mark.slow
def test_inductor_compiled_cnn_step_is_bit_identical_to_eager():
    _compare_compiled("inductor", steps=3, make=_cnn_with_every_random_draw, residuals=7, milestone=1,
                      residual=True, rounding="floor", lr_milestones=[1])


def _as_sequential(model):
    """A plain nn.Sequential of ``model``'s modules, in the NitroNet layout."""
    from torch import nn

    return nn.Sequential(model.augment, model.standardize, *model.stages, model.output)


@pytest.mark.parametrize("name, options, shape", [
    ("nitro_mlp2", dict(augment=True, dropout_pct=10), (1, 28, 28)),  # crops, flips, dropout between blocks
    ("nitro_small_cnn", dict(width_div=8, dropout_pct=10, ensemble=False), (3, 32, 32)),  # convs, pools, flatten
])
def test_the_rule_trains_a_plain_sequential_bit_for_bit_as_the_nitronet(name, options, shape):
    x, y = _batch(8, shape, seed=2)
    runs = []
    for as_sequential in (False, True):
        model = create_model(name, seed=1, **options)
        model.fit_input(x)
        net = _as_sequential(model) if as_sequential else model
        rule = create_rule("nitro", net, seed=5, lr_inv=64)
        opt = rule.configure_optimizer()
        stats = [rule.train_step(x, y, opt) for _ in range(3)]
        rule.model.eval()
        runs.append((model, stats, rule.predict(x)))
    (a, stats_a, pred_a), (b, stats_b, pred_b) = runs
    assert [{k: int(v) for k, v in s.items()} for s in stats_a] == [{k: int(v) for k, v in s.items()} for s in stats_b]
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert torch.equal(pred_a, pred_b)
    assert not torch.equal(state_b["output.linear.weight"], create_model(name, seed=1, **options).output.linear.weight)


def test_a_sequential_the_rule_cannot_train_is_refused_naming_the_module():
    from torch import nn

    from torch_intnn.nn import IntLinear, NitroStandardize

    model = create_model("nitro_mlp1", seed=0)
    with pytest.raises(TypeError, match="cannot train through IntLinear '1'"):
        create_rule("nitro", nn.Sequential(model.standardize, IntLinear(784, 10), *model.stages, model.output))
    with pytest.raises(TypeError, match="ends with a NitroHead"):
        create_rule("nitro", nn.Sequential(model.standardize, *model.stages))
    with pytest.raises(TypeError, match="starts with NitroStandardize"):
        create_rule("nitro", nn.Sequential(*model.stages, model.output))
    with pytest.raises(TypeError, match="at least one NitroLinearBlock"):
        create_rule("nitro", nn.Sequential(NitroStandardize(1, flatten=True), model.output))
