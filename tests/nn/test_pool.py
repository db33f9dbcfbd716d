"""IntMaxPool2d, IntAvgPool2d and IntFlatten as modules, alone and inside nn.Sequential with the integer layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torch_intnn.nn import IntAvgPool2d, IntConv2d, IntFlatten, IntLinear, IntMaxPool2d


def ints(shape, lo, hi, dtype=torch.int8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, shape, generator=g, dtype=torch.int64).to(dtype)


def test_modules_match_their_float64_twins():
    x = ints((2, 3, 6, 7), -1000, 1000, torch.int32)
    assert torch.equal(IntMaxPool2d(2)(x), F.max_pool2d(x.double(), 2).to(torch.int32))
    floor = torch.div(F.avg_pool2d(x.double(), 2, divisor_override=1).to(torch.int64), 4, rounding_mode="floor")
    assert torch.equal(IntAvgPool2d(2)(x).to(torch.int64), floor)
    trunc = torch.div(F.avg_pool2d(x.double(), 3, divisor_override=1).to(torch.int64), 9, rounding_mode="trunc")
    assert torch.equal(IntAvgPool2d(3, rounding="trunc")(x).to(torch.int64), trunc)
    assert torch.equal(IntFlatten()(x), x.flatten(1))


def test_sequential_cnn_matches_reference():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(
        IntConv2d(3, 8, 3, 1, generator=g), IntMaxPool2d(2), IntAvgPool2d(2, rounding="round"), IntFlatten(),
        IntLinear(8 * 2 * 2, 10, input_bits=32, generator=g),
    ).eval()
    x = ints((4, 3, 9, 8), -128, 127)
    h = F.conv2d(x.double(), model[0].weight.double(), padding=1)
    h = F.max_pool2d(h, 2)
    s = F.avg_pool2d(h, 2, divisor_override=1).to(torch.int64)  # window sums; then s / 4, halves away from 0
    h = torch.div(s.abs() * 2 + 4, 8, rounding_mode="floor") * s.sign()
    expected = h.flatten(1) @ model[4].weight.to(torch.int64).T + model[4].bias
    out = model(x)
    assert out.shape == (4, 10) and torch.equal(out.to(torch.int64), expected)
    assert list(model.parameters()) == [] and all(b.dtype == torch.int32 for b in model.buffers())


def test_state_dict_of_a_sequential_round_trips():
    def make(seed):
        g = torch.Generator().manual_seed(seed)
        return nn.Sequential(IntConv2d(1, 4, 3, 1, generator=g), IntMaxPool2d(2), IntFlatten(),
                             IntLinear(4 * 3 * 3, 5, input_bits=32, generator=g))
    a, b = make(1), make(2)
    x = ints((2, 1, 6, 6), -128, 127)
    assert not torch.equal(a(x), b(x))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))


def test_repr_and_bad_input():
    assert "divide by 4 rounding floor" in repr(IntAvgPool2d(2))
    assert "kernel_size=3" in repr(IntMaxPool2d(3))
    with pytest.raises(TypeError, match="torch.float32"):
        IntFlatten()(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="torch.float32"):
        IntMaxPool2d(2)(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="rounding"):
        IntAvgPool2d(2, rounding="up")
