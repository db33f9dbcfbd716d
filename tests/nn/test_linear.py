"""IntLinear: exact against int64, integer buffers only, device moves, state_dict, training-mode input, caching."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_intnn.nn import IntLinear


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ints(shape, lo, hi, dtype=torch.int8, seed=1):
    return torch.randint(lo, hi + 1, shape, generator=gen(seed), dtype=torch.int64).to(dtype)


def reference(layer: IntLinear, x: torch.Tensor) -> torch.Tensor:
    z = x.to(torch.int64) @ layer.weight.to(torch.int64).T
    return z + layer.bias if layer.bias is not None else z


@pytest.mark.parametrize("in_f,out_f", [(1, 1), (13, 7), (784, 100), (100, 50)])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_matches_int64(in_f, out_f, bias):
    layer = IntLinear(in_f, out_f, bias=bias, generator=gen())
    if bias:
        layer.bias.copy_(ints((out_f,), -32767, 32767, torch.int32, seed=2))
    layer.weight.copy_(ints((out_f, in_f), -32767, 32767, torch.int32, seed=3))  # the full 16-bit range
    x = ints((5, in_f), -128, 127)
    z = layer(x)
    assert z.shape == (5, out_f) and torch.equal(z.to(torch.int64), reference(layer, x))
    assert z.dtype == (torch.int32 if in_f < 512 else torch.int64)  # K * 2**7 * 2**15 < 2**31 iff K < 512


def test_uint8_pixels_and_wider_declared_inputs():
    layer = IntLinear(784, 10, generator=gen(), input_bits=16)
    pixels = ints((3, 784), 0, 255, torch.uint8)
    assert torch.equal(layer(pixels).to(torch.int64), reference(layer, pixels))
    wide = ints((3, 784), -32768, 32767, torch.int32)
    assert torch.equal(layer(wide).to(torch.int64), reference(layer, wide))


def test_bias_at_the_int32_boundary_widens_the_result():
    # 8-bit x 8-bit over K = 131071 products fits int32 exactly; one more term (the bias) does not.
    layer = IntLinear(131071, 1, bias=True, weight_bits=8, input_bits=8, init="zeros")
    layer.weight.fill_(-128)
    layer.bias.fill_(127)
    x = torch.full((1, 131071), -128, dtype=torch.int8)
    z = layer(x)
    assert z.dtype == torch.int64 and int(z) == 131071 * 128 * 128 + 127


def test_buffers_only_no_autograd():
    layer = IntLinear(8, 4, generator=gen())
    assert list(layer.parameters()) == []
    assert {name: b.dtype for name, b in layer.named_buffers()} == {"weight": torch.int32, "bias": torch.int32}
    assert not any(b.requires_grad for b in layer.buffers())
    z = layer(ints((2, 8), -128, 127))
    assert not z.requires_grad and z.grad_fn is None


def test_seeded_init_is_reproducible_and_bounded():
    a, b = IntLinear(784, 100, generator=gen(7)), IntLinear(784, 100, generator=gen(7))
    assert torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight, IntLinear(784, 100, generator=gen(8)).weight)
    assert int(a.weight.abs().max()) <= 10  # NITRO-D's integer Kaiming bound for fan-in 784
    assert int(a.bias.abs().max()) == 0


def test_input_is_kept_only_in_training_mode():
    layer = IntLinear(6, 3, generator=gen())
    x = ints((2, 6), -128, 127)
    layer.train()
    layer(x)
    assert layer.input is x
    layer.eval()
    layer(x)
    assert layer.input is None


def test_state_dict_round_trip():
    src = IntLinear(30, 9, generator=gen(1))
    dst = IntLinear(30, 9, generator=gen(2))
    x = ints((4, 30), -128, 127)
    dst(x)  # fills dst's weight cache, which loading must invalidate
    dst.load_state_dict(src.state_dict())
    assert set(src.state_dict()) == {"weight", "bias"}
    assert all(v.dtype == torch.int32 for v in dst.state_dict().values())
    assert torch.equal(dst(x), src(x))


def test_to_meta_and_back():
    layer = IntLinear(12, 5, generator=gen())
    x = ints((3, 12), -128, 127)
    expected = layer(x)
    meta = IntLinear(12, 5, generator=gen()).to("meta")
    assert meta.weight.is_meta and meta.weight.dtype == torch.int32
    z = meta(x.to("meta"))
    assert z.is_meta and z.shape == (3, 5) and z.dtype == expected.dtype
    cpu = meta.to_empty(device="cpu")
    cpu.load_state_dict(layer.state_dict())
    assert torch.equal(cpu(x), expected)


def test_weight_changes_are_seen_through_the_cache():
    layer = IntLinear(16, 4, generator=gen())
    x = ints((3, 16), -128, 127)
    layer(x)
    layer.weight.add_(5)  # in place: bumps the version counter
    assert torch.equal(layer(x).to(torch.int64), reference(layer, x))
    layer.weight[0, 0] = -300  # indexing assignment
    assert torch.equal(layer(x).to(torch.int64), reference(layer, x))
    layer.weight = torch.zeros_like(layer.weight)  # a new buffer object
    assert torch.equal(layer(x).to(torch.int64), reference(layer, x))
    layer.weight.data.fill_(3)  # .data bypasses the version counter: the documented escape hatch
    layer.invalidate_weight_split()
    assert torch.equal(layer(x).to(torch.int64), reference(layer, x))
    assert layer.weight_limbs() is layer.weight_limbs()  # unchanged weight: one split


def test_sequential_and_repr():
    model = nn.Sequential(IntLinear(20, 10, generator=gen(1)), IntLinear(10, 3, input_bits=32, generator=gen(2)))
    x = ints((4, 20), -128, 127)
    expected = reference(model[1], reference(model[0], x))
    assert torch.equal(model(x).to(torch.int64), expected)
    text = repr(IntLinear(784, 100))
    assert "int8 x int16" in text and "int64" in text and "784, 100" in text


def test_bad_input():
    layer = IntLinear(8, 4, generator=gen())
    with pytest.raises(TypeError, match="torch.float32"):
        layer(torch.zeros(2, 8))
    with pytest.raises(ValueError, match="2-D"):
        layer(torch.zeros(2, 2, 8, dtype=torch.int8))
    with pytest.raises(ValueError, match="expected 8 input features, got 9"):
        layer(torch.zeros(2, 9, dtype=torch.int8))
    with pytest.raises(ValueError, match="8-bit"):
        layer(torch.full((2, 8), 200, dtype=torch.int16))  # declared int8 inputs
    layer.weight[0, 0] = 1 << 20
    with pytest.raises(ValueError, match="16-bit"):
        layer(torch.zeros(2, 8, dtype=torch.int8))
    with pytest.raises(ValueError, match="positive sizes"):
        IntLinear(0, 4)
    with pytest.raises(ValueError, match="init"):
        IntLinear(4, 4, init="xavier")


def test_inference_mode_weights_are_never_cached():
    """A layer built under inference_mode holds inference tensors, which have no version counter."""
    x = ints((2, 10), -128, 127)
    with torch.inference_mode():
        layer = IntLinear(10, 4, generator=gen())
        layer(x)
        layer.weight.add_(1)
        assert torch.equal(layer(x).to(torch.int64), reference(layer, x))


@pytest.mark.parametrize("backend", ["eager", "aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_inference_refuses_what_eager_refuses(backend):
    """A weight outside the declared width would make the limb split, and so the result, wrong."""
    torch._dynamo.reset()
    layer = IntLinear(16, 4, weight_bits=16).eval()
    x = torch.randint(-128, 128, (8, 16), dtype=torch.int8)
    compiled = torch.compile(layer, backend=backend, fullgraph=True)
    assert torch.equal(compiled(x), layer(x))
    with torch.no_grad():
        layer.weight[1, 3] = 40000
    layer.invalidate_weight_split()
    with pytest.raises(ValueError, match="16-bit"):
        layer(x)
    with pytest.raises(RuntimeError, match="16-bit"):
        compiled(x)
    with pytest.raises(RuntimeError, match="input.*8-bit"):
        torch.compile(IntLinear(16, 4).eval(), backend=backend, fullgraph=True)(x.to(torch.int16) * 2)


def test_weight_and_input_gradients_match_int64():
    layer = IntLinear(37, 11, bias=False, generator=gen())
    layer.weight.copy_(ints((11, 37), -32767, 32767, torch.int32, seed=3))
    x = ints((6, 37), -128, 127)
    g = ints((6, 11), -2**20, 2**20, torch.int32, seed=4)
    with pytest.raises(RuntimeError, match="weight_grad needs a training-mode forward"):
        layer.weight_grad(g)
    layer.train()
    layer(x)
    assert torch.equal(layer.weight_grad(g, 22).to(torch.int64), g.to(torch.int64).T @ x.to(torch.int64))
    assert torch.equal(layer.input_grad(g, 22).to(torch.int64), g.to(torch.int64) @ layer.weight.to(torch.int64))
    layer.clear_kept()
    assert layer.input is None


@pytest.mark.parametrize("backend", ["int_mm", "madd16", "int32", "plain"])
def test_narrow_declares_the_width_of_the_current_values(backend):
    from torch_intnn.ops.backend import Backend, _check_runs

    try:
        _check_runs(Backend(backend), "cpu", "test")
    except ValueError as err:
        pytest.skip(str(err))
    wide, narrow = (IntLinear(600, 9, bias=False, generator=gen(), backend=backend, narrow=n) for n in (False, True))
    wide.weight.copy_(ints((9, 600), -128, 100, torch.int32, seed=3))
    narrow.weight.copy_(wide.weight)
    x = ints((4, 600), -128, 127)
    assert wide.product_bits() == 16 and narrow.product_bits() == 8
    za, zb = wide(x), narrow(x)
    assert torch.equal(za.to(torch.int64), zb.to(torch.int64)) and torch.equal(za.to(torch.int64), reference(wide, x))
    # 600 products of 8 x 16 bits may overflow int32; of 8 x 8 bits they cannot
    assert za.dtype == torch.int64 and zb.dtype == torch.int32
    narrow.weight[0, 0] = 20_000  # an in-place write: a new version, measured again
    assert narrow.product_bits() == 16
    assert narrow(x).dtype == torch.int64
    assert torch.equal(narrow(x).to(torch.int64), reference(narrow, x))
    assert "narrower while" in repr(narrow) and "narrower" not in repr(wide)
