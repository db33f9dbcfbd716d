"""IntConv2d: exact against an int64 reference, buffers only, weight gradient, device moves, state_dict."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torch_intnn.nn import IntConv2d


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ints(shape, lo, hi, dtype=torch.int8, seed=1):
    return torch.randint(lo, hi + 1, shape, generator=gen(seed), dtype=torch.int64).to(dtype)


def reference(layer: IntConv2d, x: torch.Tensor) -> torch.Tensor:
    """float64 F.conv2d is exact here: every sum stays far below 2**53."""
    bias = layer.bias.double() if layer.bias is not None else None
    return F.conv2d(x.double(), layer.weight.double(), bias, padding=layer.padding).to(torch.int64)


@pytest.mark.parametrize("c_in,c_out,k,p,hw", [(1, 1, 1, 0, (1, 1)), (3, 4, 3, 1, (5, 7)), (2, 5, 3, 0, (4, 4)),
                                               (4, 3, 5, 2, (6, 3)), (64, 128, 3, 1, (4, 4))])
@pytest.mark.parametrize("bias", [False, True])
def test_forward_matches_reference(c_in, c_out, k, p, hw, bias):
    layer = IntConv2d(c_in, c_out, k, p, bias=bias, generator=gen())
    layer.weight.copy_(ints(layer.weight.shape, -32767, 32767, torch.int32, seed=2))
    if bias:
        layer.bias.copy_(ints((c_out,), -32767, 32767, torch.int32, seed=3))
    x = ints((2, c_in, *hw), -128, 127)
    z = layer(x)
    assert torch.equal(z.to(torch.int64), reference(layer, x))
    assert z.is_contiguous(memory_format=torch.channels_last)
    k_total = c_in * k * k + bias
    assert z.dtype == (torch.int32 if k_total * 2**22 < 2**31 else torch.int64)


def test_weight_grad_matches_reference_and_needs_training_input():
    layer = IntConv2d(3, 4, 3, 1, generator=gen())
    x = ints((2, 3, 5, 6), -128, 127)
    with pytest.raises(RuntimeError, match="training-mode forward"):
        layer.weight_grad(torch.zeros(2, 4, 5, 6, dtype=torch.int8))
    layer.train()
    z = layer(x)
    g = ints(z.shape, -128, 127, seed=4)
    gw = layer.weight_grad(g)
    # the weight gradient of sum(g * conv(x, w)) is exactly what autograd computes in float64
    w = layer.weight.double().requires_grad_()
    (F.conv2d(x.double(), w, padding=1) * g.double()).sum().backward()
    assert gw.shape == layer.weight.shape and torch.equal(gw.to(torch.int64), w.grad.to(torch.int64))
    layer.eval()
    layer(x)
    assert layer.input is None


def test_buffers_state_dict_and_meta():
    layer = IntConv2d(3, 6, 3, 1, bias=True, generator=gen(1))
    assert list(layer.parameters()) == [] and not any(b.requires_grad for b in layer.buffers())
    assert {n: b.dtype for n, b in layer.named_buffers()} == {"weight": torch.int32, "bias": torch.int32}
    x = ints((2, 3, 4, 4), -128, 127)
    other = IntConv2d(3, 6, 3, 1, bias=True, generator=gen(2))
    other(x)
    other.load_state_dict(layer.state_dict())
    assert torch.equal(other(x), layer(x))
    meta = IntConv2d(3, 6, 3, 1, generator=gen()).to("meta")
    z = meta(x.to("meta"))
    assert z.is_meta and z.shape == (2, 6, 4, 4)


def test_cached_weight_split_follows_updates():
    layer = IntConv2d(2, 3, 3, 1, generator=gen())
    x = ints((1, 2, 5, 5), -128, 127)
    first = layer(x)
    assert layer.weight_limbs() is layer.weight_limbs()
    layer.weight.mul_(-1)
    assert torch.equal(layer(x), -first)


def test_repr_shows_the_arithmetic():
    text = repr(IntConv2d(64, 128, 3, 1))
    assert "int8 x int16" in text and "int64" in text and "kernel_size=3" in text
    assert "int32" in repr(IntConv2d(3, 8, 3, 1, weight_bits=8))


def test_bad_input():
    layer = IntConv2d(3, 4, 3, 1, generator=gen())
    with pytest.raises(TypeError, match="torch.float32"):
        layer(torch.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match="4-D"):
        layer(torch.zeros(3, 5, 5, dtype=torch.int8))
    with pytest.raises(ValueError, match="expected 3 input channels, got 2"):
        layer(torch.zeros(1, 2, 5, 5, dtype=torch.int8))
    with pytest.raises(ValueError, match="8-bit"):
        layer(torch.full((1, 3, 5, 5), 1000, dtype=torch.int16))
    with pytest.raises(ValueError, match="positive channels"):
        IntConv2d(0, 4, 3)
    with pytest.raises(ValueError, match="init"):
        IntConv2d(3, 4, 3, init="orthogonal")


def test_constructor_defaults_mirror_torch_nn_conv2d():
    """``IntConv2d(c_in, c_out, k)`` means what ``nn.Conv2d(c_in, c_out, k)`` means: no padding, a bias."""
    x = torch.randint(-128, 128, (2, 3, 9, 7), dtype=torch.int8)
    layer, ref = IntConv2d(3, 4, 3, generator=gen()), torch.nn.Conv2d(3, 4, 3)
    assert layer.padding == ref.padding[0] == 0 and layer.bias is not None and ref.bias is not None
    assert layer(x).shape == ref(x.float()).shape == (2, 4, 7, 5)


def test_training_forward_keeps_its_columns_for_the_weight_gradient():
    from torch_intnn.ops.conv import im2col

    layer = IntConv2d(3, 4, 3, 1, bias=False, generator=gen(), narrow=True).train()
    x = ints((2, 3, 5, 6), -128, 127)
    layer(x)
    assert layer.input is x and torch.equal(layer.columns, im2col(x, 3, 1))
    g = ints((2, 4, 5, 6), -128, 127, seed=4)
    w = layer.weight.double().requires_grad_()
    (F.conv2d(x.double(), w, padding=1) * g.double()).sum().backward()
    assert torch.equal(layer.weight_grad(g, 8).to(torch.int64), w.grad.to(torch.int64))
    layer.clear_kept()
    assert layer.input is None and layer.columns is None
    layer.eval()
    layer(x)
    assert layer.columns is None
