"""The fused CPU kernels equal the PyTorch formulas they replace, bit for bit, and so does a training step."""

from __future__ import annotations

import pytest
import torch

from torch_intnn.data import dataset_info
from torch_intnn.learning import create_rule
from torch_intnn.models import create_model, model_info
from torch_intnn.nn.nitro import NITRO_RELU_SHIFT, NitroReLU
from torch_intnn.ops import fused, limbs
from torch_intnn.ops.pool import max_pool2d
from torch_intnn.ops.rounding import count_saturated8, div_trunc, div_trunc_sat8

pytestmark = pytest.mark.skipif(not fused.available(), reason="the fused kernels do not build here")


@pytest.fixture
def formulas(monkeypatch):
    """Run the callers' PyTorch formulas instead of the kernels (as on CUDA, or without a C compiler)."""

    def run(f, *args, **kwargs):
        with monkeypatch.context() as m:
            m.setattr(fused, "_RUNS", False)
            return f(*args, **kwargs)

    return run


def _extremes(d: int, dtype: torch.dtype) -> torch.Tensor:
    info = torch.iinfo(dtype)
    edges = [0, 1, -1, d - 1, d, d + 1, 127 * d - 1, 127 * d, 128 * d - 1, 128 * d, info.max, info.min, info.max - 1,
             info.min + 1]
    return torch.tensor([min(max(v, info.min), info.max) for e in edges for v in (e, -e)], dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("d", [1, 3, 9, 256, 6912, 73728, 294912, fused.DIVISOR_MAX])
def test_div_sat8_equals_the_truncated_division_clamped(dtype, d, formulas):
    g = torch.Generator().manual_seed(d)
    z = torch.cat([torch.randint(-130 * d, 130 * d, (5000,), generator=g).to(dtype), _extremes(d, dtype)])
    expected = div_trunc(z, d).clamp(-127, 127).to(torch.int8)
    assert torch.equal(fused.div_sat8(z, d), expected)
    assert torch.equal(formulas(div_trunc_sat8, z, d), expected)


def test_div_sat8_keeps_a_dense_layout_and_copies_a_strided_one():
    z = torch.randint(-10**6, 10**6, (2, 5, 3, 7), dtype=torch.int32).contiguous(memory_format=torch.channels_last)
    assert fused.div_sat8(z, 1000).stride() == z.stride()
    strided = z[:, ::2]
    assert torch.equal(fused.div_sat8(strided, 1000), div_trunc(strided, 1000).clamp(-127, 127).to(torch.int8))


def test_div_sat8_refuses_what_it_cannot_divide():
    with pytest.raises(ValueError, match="divisor"):
        fused.div_sat8(torch.zeros(3, dtype=torch.int32), 0)
    with pytest.raises(ValueError, match="divisor"):
        fused.div_sat8(torch.zeros(3, dtype=torch.int32), fused.DIVISOR_MAX + 1)
    with pytest.raises(ValueError, match="int32 or int64"):
        fused.div_sat8(torch.zeros(3, dtype=torch.int16), 5)


@pytest.mark.parametrize("k", sorted(NITRO_RELU_SHIFT))
def test_nitro_relu_table_equals_its_formula_on_every_int8(k, formulas):
    act = NitroReLU(k)
    s = torch.arange(-128, 128, dtype=torch.int16).to(torch.int8).view(4, 64)
    assert torch.equal(act(s), act._formula(s))
    assert torch.equal(formulas(act, s), act._formula(s))


SHAPES = [((2, 3, 8, 8), (2, 2)), ((3, 37, 7, 9), (2, 4)), ((2, 64, 5, 5), (8, 8)), ((1, 33, 4, 4), (1, 1)),
          ((2, 96, 6, 10), (4, 2))]


@pytest.mark.parametrize("shape,kernel", SHAPES)
@pytest.mark.parametrize("channels_last", [True, False])
def test_max_pool8_equals_the_running_maximum(shape, kernel, channels_last, formulas):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randint(-128, 128, shape, generator=g, dtype=torch.int8)
    x[0, 0] = -128  # a channel of ties at the minimum: the first cell must win
    x[-1, -1] = torch.randint(-2, 2, shape[2:], generator=g, dtype=torch.int8)  # many ties
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    values, positions = max_pool2d(x, kernel, ceil_mode=True, return_positions=True)
    ref_values, ref_positions = formulas(max_pool2d, x, kernel, ceil_mode=True, return_positions=True)
    assert torch.equal(values, ref_values) and torch.equal(positions, ref_positions)
    if channels_last:
        assert values.stride() == ref_values.stride() and positions.stride() == ref_positions.stride()
    assert torch.equal(x.permute(0, 2, 3, 1).reshape(-1)[positions], values)


@pytest.mark.parametrize("shape", [(65, 37), (1, 1), (300, 5), (16, 128)])
@pytest.mark.parametrize("side", ["lhs", "rhs"])
@pytest.mark.parametrize("transposed", [False, True])
def test_split16_equals_the_limb_formulas(shape, side, transposed, formulas):
    g = torch.Generator().manual_seed(shape[0])
    x = torch.randint(-32768, 32768, shape, generator=g, dtype=torch.int16)
    x.view(-1)[0], x.view(-1)[-1] = -32768, 32767
    if transposed:
        x = x.T.contiguous().T  # column-major: the stack is cut along the other dimension
    got, ref = limbs._split(x, 16, side), formulas(limbs._split, x, 16, side)
    assert torch.equal(got.stack, ref.stack) and got.stack.stride() == ref.stack.stride() and got[1:] == ref[1:]
    assert torch.equal(got.to_int64(), x.long())


def test_count_saturated8_counts_both_ends(formulas):
    s = torch.randint(-128, 128, (3, 100_003), dtype=torch.int8)
    expected = int(((s.long() >= 127) | (s.long() <= -127)).sum())
    assert int(count_saturated8(s)) == int(formulas(count_saturated8, s)) == expected
    assert int(count_saturated8(s[:, ::7])) == int(((s[:, ::7].long().abs() >= 127)).sum())


@pytest.mark.parametrize("name", ["nitro_small_cnn", "nitro_mlp1"])
def test_training_steps_are_the_same_with_and_without_the_kernels(name, monkeypatch):
    info = model_info(name)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 8, *dataset_info(info["dataset"]).shape), generator=g, dtype=torch.uint8)
    y = torch.randint(0, info["num_classes"], (3, 8), generator=g)
    states = []
    for runs in (True, False):
        monkeypatch.setattr(fused, "_RUNS", runs)
        model = create_model(name, seed=0)
        if hasattr(model, "fit_input"):
            model.fit_input(x[0])
        rule = create_rule(info["rule"], model)
        opt = rule.configure_optimizer()
        model.train()
        stats = [rule.train_step(xb, yb, opt) for xb, yb in zip(x, y)]
        model.eval()
        states.append(({**model.state_dict(), **opt.state_dict()["state"]}, stats, rule.predict(x[0])))
    (state, stats, scores), (ref_state, ref_stats, ref_scores) = states
    assert state.keys() == ref_state.keys() and torch.equal(scores, ref_scores)
    assert all(torch.equal(torch.as_tensor(state[k]), torch.as_tensor(ref_state[k])) for k in state if k in ref_state)
    assert [{k: int(v) for k, v in s.items()} for s in stats] == [{k: int(v) for k, v in s.items()} for s in ref_stats]


def test_the_c_kernels_have_no_floating_point_type():
    """The integer-only audit sees a custom op as one opaque call: its C source is checked here instead."""
    import re
    from pathlib import Path

    for source in ("fused.c", "madd16.c"):
        text = (Path(fused.__file__).parent / source).read_text()
        code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # comments may say "float32"
        assert not re.search(r"\b(float|double|_Float\d+|__m\d+[dh]?)\b", code), source


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64])
@pytest.mark.parametrize("kernel,padding", [((3, 3), (1, 1)), ((1, 1), (0, 0)), ((2, 3), (0, 2)), ((5, 5), (2, 2))])
@pytest.mark.parametrize("channels_last", [True, False])
def test_im2col_equals_the_unfolded_copy(dtype, kernel, padding, channels_last, formulas):
    from torch_intnn.ops.conv import im2col

    info = torch.iinfo(dtype)
    x = torch.randint(info.min, info.max, (2, 5, 4, 6), dtype=torch.int64).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    got, ref = im2col(x, kernel, padding), formulas(im2col, x, kernel, padding)
    assert torch.equal(got, ref) and got.stride() == ref.stride()


def test_max_pool_without_positions_equals_the_running_maximum(formulas):
    x = torch.randint(-128, 128, (3, 40, 9, 7), dtype=torch.int8).contiguous(memory_format=torch.channels_last)
    for ceil_mode in (True, False):
        got, ref = max_pool2d(x, (2, 2), ceil_mode=ceil_mode), formulas(max_pool2d, x, (2, 2), ceil_mode=ceil_mode)
        assert torch.equal(got, ref)


@pytest.mark.parametrize("k", [3, 4, 16])
def test_nitro_relu_backward_equals_its_formula(k, formulas):
    act = NitroReLU(k)
    s = torch.arange(-128, 128, dtype=torch.int16).to(torch.int8).repeat(5)
    grad = torch.randint(-2**31, 2**31, s.shape, dtype=torch.int64).to(torch.int32)
    grad[:4] = torch.tensor([-2**31, 2**31 - 1, -1, 1], dtype=torch.int32)
    assert torch.equal(act.backward(grad, s), formulas(act.backward, grad, s))
