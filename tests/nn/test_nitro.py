"""NITRO-Scaling, NITRO-ReLU and integer dropout against hand-computed integer examples (nitro_d.md secs. 2, 3, 7).

The examples include negative values where truncation toward zero and floor differ; the comment beside each
expected value gives the floor result that a wrong implementation would produce.
"""

import pytest
import torch

from torch_intnn.nn import IntDropout, NitroReLU, NitroScaling

I8, I32 = torch.int8, torch.int32


def test_scaling_truncates_toward_zero_and_saturates():
    z = torch.tensor([-100_000, -1000, -257, -256, -255, 0, 255, 256, 1000, 100_000], dtype=I32)
    s = NitroScaling(256)(z)
    #                  sat   floor -4  -2  -1  floor -1
    expected = [-127, -3, -1, -1, 0, 0, 0, 1, 3, 127]
    assert s.dtype == I8
    assert s.tolist() == expected


def test_scaling_backward_is_identity_and_checks_its_factor():
    g = torch.tensor([-5, 7], dtype=I32)
    assert torch.equal(NitroScaling(6912).backward(g), g)
    with pytest.raises(ValueError, match="positive int"):
        NitroScaling(0)


def test_relu_forward_by_hand():
    s = torch.tensor([-127, -5, -4, -3, -1, 0, 1, 126, 127], dtype=I8)
    y = NitroReLU(4)(s)
    # clamp(s, 0, 127) + T(clamp(s, -127, 0) / 4) - 36
    expected = [-67, -37, -37, -36, -36, -36, -35, 90, 91]  # floor would give -38 at -5 and -37 at -3 and -1
    assert y.dtype == I8
    assert y.tolist() == expected


def test_relu_shift_table_and_range():
    relu = NitroReLU(8)
    assert relu.shift == 42
    all_s = torch.arange(-127, 128, dtype=torch.int16).to(I8)
    y = relu(all_s)
    assert int(y.min()) == -(127 // 8) - 42 and int(y.max()) == 127 - 42
    with pytest.raises(ValueError, match="no tabulated shift"):
        NitroReLU(6)


def test_relu_backward_by_hand():
    relu = NitroReLU(4).train()
    s = torch.tensor([-127, -5, -3, 0, 1, 126, 127, -1], dtype=I8)
    relu(s)
    g = torch.tensor([-7, -7, 7, 9, -9, 3, 100, -3], dtype=I32)
    # q = 4 below 0 (also at -127), 1 on [0, 127), gradient 0 at 127
    expected = [-1, -1, 1, 9, -9, 3, 0, 0]  # floor would give -2, -2, 1, ..., -1
    assert relu.backward(g).tolist() == expected
    # the same rule on a subset of positions, as the pooled heads call it
    assert relu.backward(g[:3], s[:3]).tolist() == expected[:3]


def test_relu_backward_needs_training_forward():
    relu = NitroReLU(4).eval()
    relu(torch.zeros(3, dtype=I8))
    with pytest.raises(RuntimeError, match="training-mode forward"):
        relu.backward(torch.zeros(3, dtype=I32))


def test_dropout_scale_by_hand_when_everything_is_kept():
    drop = IntDropout(15, in_max=91).train()
    assert drop.factor == 1176 and drop.out_bits == 8
    x = torch.tensor([-67, -1, 0, 1, 50, 91], dtype=I8)
    drop.p_pct = 0  # keep every element: only the scale T(x * 1176 / 1000) acts
    drop.mask = torch.ones(6, dtype=torch.bool)
    y = drop._scale(x)
    assert y.tolist() == [-78, -1, 0, 1, 58, 107]  # floor would give -79 and -2


def test_dropout_masks_come_from_the_generator():
    drop = IntDropout(30, in_max=91).train()
    x = torch.full((64, 100), 10, dtype=I8)
    y1 = drop(x, torch.Generator().manual_seed(3))
    mask = drop.mask.clone()
    y2 = drop(x, torch.Generator().manual_seed(3))
    assert torch.equal(y1, y2)
    assert set(y1.unique().tolist()) <= {0, 14}  # T(10 * 1428 / 1000) = 14
    assert torch.equal(y1 == 0, ~mask)
    dropped = int((~mask).sum())
    assert 0.25 * x.numel() < dropped < 0.35 * x.numel()
    g = torch.full((64, 100), -10, dtype=I32)
    assert torch.equal(drop.backward(g), torch.where(mask, -14, 0).to(I32))


def test_dropout_eval_is_identity_and_training_needs_a_generator():
    drop = IntDropout(10, in_max=91)
    x = torch.tensor([[-67, 91]], dtype=I8)
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ValueError, match="generator"):
        drop.train()(x)
    assert IntDropout(50, in_max=91).out_bits == 16
