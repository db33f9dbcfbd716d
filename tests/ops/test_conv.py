"""conv2d / conv2d_weight / im2col against explicit int64 references (shifted windows and einsum)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_intnn.ops import ConvWeight, conv2d, conv2d_weight, im2col, split_conv_weight


def windows(x: torch.Tensor, kh: int, kw: int, padding: int) -> torch.Tensor:
    """x (N, C, H, W) -> int64 (N, C, kh, kw, H_out, W_out): the padded input seen through each kernel tap."""
    xp = F.pad(x.to(torch.int64), (padding, padding, padding, padding))
    ho, wo = xp.shape[2] - kh + 1, xp.shape[3] - kw + 1
    return torch.stack([torch.stack([xp[:, :, i : i + ho, j : j + wo] for j in range(kw)], 2) for i in range(kh)], 2)


def conv_ref(x: torch.Tensor, w: torch.Tensor, padding: int) -> torch.Tensor:
    """y[n, f, i, j] = sum_{c, k, l} w[f, c, k, l] * x_pad[n, c, i + k, j + l], in int64."""
    return torch.einsum("nckluv,fckl->nfuv", windows(x, w.shape[2], w.shape[3], padding), w.to(torch.int64))


def conv_weight_ref(x: torch.Tensor, g: torch.Tensor, k: int, padding: int) -> torch.Tensor:
    """g_w[f, c, k, l] = sum_{n, i, j} g[n, f, i, j] * x_pad[n, c, i + k, j + l], in int64."""
    return torch.einsum("nckluv,nfuv->fckl", windows(x, k, k, padding), g.to(torch.int64))


def ints(shape, lo, hi, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(lo, hi + 1, shape, generator=g, dtype=torch.int64)
    x.view(-1)[0], x.view(-1)[-1] = lo, hi  # the extremes, always
    return x.to(dtype)


CASES = [  # (N, C, H, W, F, k, padding)
    (1, 1, 1, 1, 1, 1, 0),
    (2, 3, 5, 7, 4, 3, 0),
    (2, 3, 5, 7, 4, 3, 1),
    (1, 5, 6, 3, 3, 3, 2),
    (3, 2, 9, 9, 5, 5, 2),
    (2, 7, 4, 4, 9, 1, 1),
]
DTYPES = [  # (dtype, lo, hi, declared bits)
    (torch.int8, -128, 127, None),
    (torch.uint8, 0, 255, None),
    (torch.int16, -32768, 32767, None),
    (torch.int32, -2047, 2047, 12),
]


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("x_spec", DTYPES, ids=lambda s: str(s[0]))
def test_conv2d_matches_reference(case, x_spec):
    n, c, h, w, f, k, p = case
    dtype, lo, hi, bits = x_spec
    x = ints((n, c, h, w), lo, hi, dtype, seed=1)
    weight = ints((f, c, k, k), -32768, 32767, torch.int32, seed=2)
    y = conv2d(x, weight, p, x_bits=bits, w_bits=16)
    expected = conv_ref(x, weight, p)
    assert y.shape == expected.shape and torch.equal(y.to(torch.int64), expected)
    assert y.is_contiguous(memory_format=torch.channels_last)
    # the float64 F.conv2d agrees too (these sums are far below 2**53, so it is exact here)
    assert torch.equal(expected, F.conv2d(x.double(), weight.double(), padding=p).to(torch.int64))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_conv2d_int8_weights_give_int32_and_split_weight_agrees(case):
    n, c, h, w, f, k, p = case
    x = ints((n, c, h, w), -128, 127, torch.int8, seed=3).contiguous(memory_format=torch.channels_last)
    weight = ints((f, c, k, k), -128, 127, torch.int8, seed=4)
    y = conv2d(x, weight, p)
    assert y.dtype == torch.int32 and torch.equal(y.to(torch.int64), conv_ref(x, weight, p))
    split = split_conv_weight(weight.to(torch.int32), 8)
    assert isinstance(split, ConvWeight) and split.kernel_size == (k, k) and split.in_channels == c
    assert torch.equal(conv2d(x, split, p), y)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("grad_bits", [8, 16, None])
def test_conv2d_weight_matches_reference(case, grad_bits):
    n, c, h, w, f, k, p = case
    x = ints((n, c, h, w), -128, 127, torch.int8, seed=5)
    y_shape = conv_ref(x, torch.zeros(f, c, k, k, dtype=torch.int32), p).shape
    lim = 2 ** ((grad_bits or 20) - 1)
    g = ints(y_shape, -lim, lim - 1, torch.int32, seed=6)
    gw = conv2d_weight(x, g, k, p, grad_bits=grad_bits)
    assert gw.shape == (f, c, k, k)
    assert torch.equal(gw.to(torch.int64), conv_weight_ref(x, g, k, p))


def test_im2col_layout():
    """Rows ordered (n, i, j); columns (k, l, c): the column order of the weight matrix conv2d builds."""
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.int32).view(2, 3, 4, 5)
    cols = im2col(x, 3, 1)
    win = windows(x, 3, 3, 1)  # (N, C, kh, kw, Ho, Wo)
    expected = win.permute(0, 4, 5, 2, 3, 1).reshape(2 * 4 * 5, 3 * 3 * 3)
    assert cols.dtype == x.dtype and torch.equal(cols.to(torch.int64), expected)
    assert torch.equal(im2col(x.contiguous(memory_format=torch.channels_last), 3, 1), cols)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_kept_columns_give_the_same_results(case):
    """conv2d and conv2d_weight given the forward's im2col (a conv block keeps it) equal the calls without it."""
    n, c, h, w, f, k, p = case
    x = ints((n, c, h, w), -128, 127, torch.int8, seed=7).contiguous(memory_format=torch.channels_last)
    weight = ints((f, c, k, k), -32768, 32767, torch.int32, seed=8)
    cols = im2col(x, k, p)
    y = conv2d(x, weight, p, w_bits=16, columns=cols)
    assert torch.equal(y, conv2d(x, weight, p, w_bits=16))
    g = ints(tuple(y.shape), -2047, 2047, torch.int32, seed=9)
    assert torch.equal(conv2d_weight(x, g, k, p, grad_bits=12, columns=cols), conv2d_weight(x, g, k, p, grad_bits=12))


def test_columns_of_another_input_are_refused():
    x = torch.zeros(2, 3, 5, 5, dtype=torch.int8)
    w = torch.zeros(4, 3, 3, 3, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"columns \(50, 18\) .* not im2col of the input \(2, 3, 5, 5\)"):
        conv2d(x, w, 1, columns=im2col(x[:, :2], 3, 1))
    with pytest.raises(ValueError, match="not im2col"):
        conv2d_weight(x, torch.zeros(2, 4, 5, 5, dtype=torch.int32), 3, 1, columns=im2col(x.to(torch.int16), 3, 1))
    with pytest.raises(TypeError, match="conv2d columns"):
        conv2d(x, w, 1, columns=im2col(x, 3, 1).float())


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(1, 7), w=st.integers(1, 7), f=st.integers(1, 5),
    k=st.sampled_from([1, 2, 3]), p=st.integers(0, 2), seed=st.integers(0, 2**31 - 1),
)
def test_property_conv2d_and_weight_gradient(n, c, h, w, f, k, p, seed):
    if h + 2 * p < k or w + 2 * p < k:
        return
    x = ints((n, c, h, w), -128, 127, torch.int8, seed)
    weight = ints((f, c, k, k), -32768, 32767, torch.int32, seed + 1)
    y = conv2d(x, weight, p, w_bits=16)
    assert torch.equal(y.to(torch.int64), conv_ref(x, weight, p))
    g = ints(tuple(y.shape), -128, 127, torch.int8, seed + 2)
    assert torch.equal(conv2d_weight(x, g, k, p).to(torch.int64), conv_weight_ref(x, g, k, p))


# --- bad input -----------------------------------------------------------------------------------------------


def test_bad_input():
    x = torch.zeros(1, 3, 5, 5, dtype=torch.int8)
    w = torch.zeros(2, 3, 3, 3, dtype=torch.int32)
    with pytest.raises(TypeError, match="torch.float32"):
        conv2d(x.float(), w)
    with pytest.raises(TypeError, match="torch.float64"):
        conv2d(x, w.double())
    with pytest.raises(ValueError, match="4-D"):
        conv2d(x[0], w)
    with pytest.raises(ValueError, match="4-D"):
        conv2d(x, w[0])
    with pytest.raises(ValueError, match="3 channels, weight expects 4"):
        conv2d(x, torch.zeros(2, 4, 3, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv2d(x, torch.zeros(2, 3, 7, 7, dtype=torch.int32))
    with pytest.raises(ValueError, match="conv2d weight: values span .* 16-bit"):
        conv2d(x, torch.full((2, 3, 3, 3), 1 << 20, dtype=torch.int64), w_bits=16)
    with pytest.raises(ValueError, match="conv2d input: values span .* 8-bit"):
        conv2d(torch.full((1, 3, 5, 5), 300, dtype=torch.int16), w, x_bits=8)
    with pytest.raises(TypeError, match="torch.float32"):
        conv2d_weight(x, torch.zeros(1, 2, 3, 3), 3)
    with pytest.raises(ValueError, match="does not match"):
        conv2d_weight(x, torch.zeros(1, 2, 4, 4, dtype=torch.int8), 3)
    with pytest.raises(ValueError, match="does not match"):
        conv2d_weight(x, torch.zeros(3, 2, 3, 3, dtype=torch.int8), 3)
