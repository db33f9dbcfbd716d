"""The integer similarity-matching loss against a float64 evaluation of the same formula, and its integer tools."""

import math

import pytest
import torch

from torch_intnn.audit import IntegerOnly
from torch_intnn.learning.similarity import GRAD_SHIFT, SIM_ONE, sim_loss
from torch_intnn.ops.rounding import bit_length, isqrt


def reference(p: torch.Tensor, y: torch.Tensor, classes: int) -> tuple[torch.Tensor, float]:
    """Nokland and Eidnes' sim loss in float64, its gradient by autograd."""
    x = p.double().requires_grad_()
    c = x - x.mean(1, keepdim=True)
    unit = c / c.norm(dim=1, keepdim=True)
    onehot = torch.nn.functional.one_hot(y, classes).double()
    oc = onehot - onehot.mean(1, keepdim=True)
    target = (oc / oc.norm(dim=1, keepdim=True)) @ (oc / oc.norm(dim=1, keepdim=True)).T
    loss = ((unit @ unit.T - target) ** 2).sum()
    loss.backward()
    return x.grad, loss.item()


@pytest.mark.parametrize("n, d, lo, hi, dtype", [
    (8, 16, -67, 91, torch.int8), (64, 256, -67, 91, torch.int8), (64, 4096, -67, 91, torch.int8),
    (5, 3, -128, 127, torch.int8), (32, 1000, 0, 5, torch.int8), (16, 8192, -256, 255, torch.int16),
    (7, 13, -1, 1, torch.int8),
])
def test_sim_gradient_matches_float64_within_the_stated_rounding(n, d, lo, hi, dtype):
    g = torch.Generator().manual_seed(n * d)
    p = torch.randint(lo, hi + 1, (n, d), generator=g).to(dtype)
    y = torch.randint(0, 10, (n,), generator=g)
    grad, loss = sim_loss(p, y, 10)
    ref_grad, ref_loss = reference(p, y, 10)
    ref_grad = ref_grad * 2**GRAD_SHIFT
    assert grad.dtype == loss.dtype == torch.int64 and grad.shape == p.shape
    assert abs(int(loss) / SIM_ONE**2 - ref_loss) <= 1e-3 * ref_loss + 1e-2
    assert (grad.double() - ref_grad).abs().max() <= 0.01 * ref_grad.abs().max() + 2


def test_sim_loss_by_hand_and_its_edge_cases():
    # two samples of one class with parallel centred features: R = T everywhere, no loss, no gradient
    p = torch.tensor([[1, 2, 3], [2, 4, 6]], dtype=torch.int8)
    grad, loss = sim_loss(p, torch.tensor([3, 3]), 10)
    assert int(loss) <= 4 and grad.abs().max() <= 1
    # a constant row has no direction: its gradient is 0, the others are finite
    p = torch.tensor([[5, 5, 5], [1, -2, 3], [0, 4, -4]], dtype=torch.int8)
    grad, _ = sim_loss(p, torch.tensor([0, 1, 1]), 10)
    assert grad[0].tolist() == [0, 0, 0] and grad[1:].abs().sum() > 0
    with pytest.raises(ValueError, match="declared 9-bit"):
        sim_loss(torch.full((2, 3), 300, dtype=torch.int16), torch.tensor([0, 1]), 10)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        sim_loss(p, torch.tensor([0, 0, 0]), 1)


def test_isqrt_and_bit_length_are_exact():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.arange(0, 3000), torch.randint(0, 2**62, (3000,), generator=g),
                   torch.tensor([2**62 - 1, 4**30, 4**30 - 1, (2**31 - 1) ** 2])])
    assert isqrt(x).tolist() == [math.isqrt(int(v)) for v in x]
    assert bit_length(x).tolist() == [int(v).bit_length() for v in x]
    with pytest.raises(ValueError, match=r"\[0, 2\*\*62\)"):
        isqrt(torch.tensor([-1]))


def test_sim_loss_is_integer_only():
    p = torch.randint(-67, 92, (16, 64), generator=torch.Generator().manual_seed(1)).to(torch.int8)
    with IntegerOnly():
        sim_loss(p, torch.arange(16) % 10, 10)


def test_scale_like_takes_the_direction_of_one_and_the_size_of_the_other():
    from torch_intnn.learning.similarity import scale_like

    g = torch.tensor([[3, -1], [0, 4]])
    ref = torch.tensor([[100, -300], [50, 350]])  # sum |ref| = 800 = 100 x sum |g|
    assert scale_like(g, ref, 1, 1).tolist() == [[300, -100], [0, 400]]
    assert scale_like(g, ref, 1, 4).tolist() == [[75, -25], [0, 100]]
    assert scale_like(torch.zeros(2, 2, dtype=torch.int64), ref, 1, 1).abs().sum() == 0
    with pytest.raises(ValueError, match="num"):
        scale_like(g, ref, 0, 1)


@pytest.mark.parametrize("local_loss", ["sim", "predsim"])
def test_nitro_rule_with_similarity_losses_trains_in_integers_and_compiles_bit_identically(local_loss):
    from torch_intnn.learning import create_rule
    from torch_intnn.models import create_model

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (16,), generator=g)
    states, rules = [], []
    for compiled in (False, True):
        model = create_model("nitro_small_cnn", seed=0, width_div=8)
        model.fit_input(x)
        rule = create_rule("nitro", model, seed=1, lr_inv=64, local_loss=local_loss, sim_weight=(1, 2))
        opt = rule.configure_optimizer()
        if compiled:
            rule.compile_step(backend="eager")
        stats = [rule.train_step(x, y, opt) for _ in range(3)]
        rules.append((rule, opt))
        states.append(({k: v.clone() for k, v in model.state_dict().items()}, [int(s["sim_loss"]) for s in stats]))
    (eager, sims_e), (comp, sims_c) = states
    assert sims_e == sims_c and sims_e[0] > 0
    assert all(torch.equal(eager[k], comp[k]) for k in eager)
    plain = create_model("nitro_small_cnn", seed=0, width_div=8)
    plain.fit_input(x)
    pred_rule = create_rule("nitro", plain, seed=1, lr_inv=64)
    pred_opt = pred_rule.configure_optimizer()
    for _ in range(3):
        pred_rule.train_step(x, y, pred_opt)
    # the similarity loss changed what the forward layers learned (the heads learn from their RSS either way)
    assert not torch.equal(plain.state_dict()["stages.1.layer.weight"], eager["stages.1.layer.weight"])
    rule, opt = rules[0]  # the eager one: the audit records every op that runs
    with IntegerOnly():
        rule.train_step(x, y, opt)
    with pytest.raises(ValueError, match="local_loss"):
        create_rule("nitro", model, local_loss="simpred")
