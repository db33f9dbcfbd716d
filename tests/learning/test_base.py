"""What every rule's step promises, eager and compiled: a bad batch or bad optimizer settings are refused with
a clear error before any state changes, so the next good step is exactly the step it would have been."""

import pytest
import torch

from torch_intnn.learning import create_rule
from torch_intnn.models import create_model

RULES = [("pocketnn_mlp_mnist", "dfa", {"augment_shift": 1}), ("nitro_mlp1", "nitro", {})]
X = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
BAD = [
    (torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.int64), TypeError, "float32"),
    (X[:0], torch.zeros(0, dtype=torch.int64), ValueError, "empty"),
    (X, torch.tensor([0, 1, 2, 10]), ValueError, r"\[0, 10\)"),
    (X, torch.tensor([0, -1, 2, 3]), ValueError, r"\[-1, 3\]"),
    (X, torch.zeros(3, dtype=torch.int64), ValueError, "4 images"),
    (X, torch.zeros(4, dtype=torch.int32), TypeError, "int64"),
]


def _setup(name, rule_name, rule_args, compiled):
    model = create_model(name, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 1, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (8,), generator=g)
    if hasattr(model, "fit_input"):
        model.fit_input(x)
    rule = create_rule(rule_name, model, seed=0, **rule_args)
    opt = rule.configure_optimizer()
    if compiled:
        rule.compile_step(backend="eager")
    return model, rule, opt, x, y


def _state(model, rule, opt):
    tensors = {**model.state_dict(), **{f"rule.{k}": v for k, v in rule.state_dict().items()}}
    for i, state in enumerate(opt.state.values()):
        tensors.update({f"opt.{i}.{k}": v for k, v in state.items()})
    return {k: v.clone() for k, v in tensors.items()}


@pytest.mark.parametrize("name,rule_name,rule_args", RULES)
@pytest.mark.parametrize("call", ["step", "train_step", "compiled"])
def test_bad_batches_are_refused_before_any_state_changes(name, rule_name, rule_args, call):
    model, rule, opt, x, y = _setup(name, rule_name, rule_args, call == "compiled")
    run = rule.step if call == "step" else rule.train_step
    rule.train_step(x, y, opt)
    before = _state(model, rule, opt)
    for bad_x, bad_y, error, match in BAD:
        with pytest.raises(error, match=match):
            run(bad_x, bad_y, opt)
    after = _state(model, rule, opt)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    rule.train_step(x, y, opt)  # the step the failed calls must not have shifted
    twin, twin_rule, twin_opt, _, _ = _setup(name, rule_name, rule_args, call == "compiled")
    twin_rule.train_step(x, y, twin_opt)
    twin_rule.train_step(x, y, twin_opt)
    assert all(torch.equal(v, twin.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name,rule_name,rule_args", RULES)
@pytest.mark.parametrize("setting,value", [("lr_inv", 0), ("lr_inv", True), ("amp", -1), ("decay_inv", 1.5)])
def test_a_param_group_changed_to_a_bad_value_is_refused_before_the_update(name, rule_name, rule_args, setting, value):
    model, rule, opt, x, y = _setup(name, rule_name, rule_args, False)
    rule.train_step(x, y, opt)
    before = _state(model, rule, opt)
    opt.param_groups[-1][setting] = value
    for run in (rule.step, rule.train_step):
        with pytest.raises(ValueError, match=setting):
            run(x, y, opt)
    after = _state(model, rule, opt)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_step_that_fails_inside_the_rule_leaves_the_step_counter_and_no_pending_gradient():
    model, rule, opt, x, y = _setup("pocketnn_mlp_mnist", "dfa", {}, False)
    steps = int(rule.steps)
    with pytest.raises(ValueError, match="784 input features"):
        rule.step(torch.zeros(4, 1, 32, 32, dtype=torch.uint8), y[:4], opt)  # a CIFAR-sized image
    assert int(rule.steps) == steps and not opt._grads
