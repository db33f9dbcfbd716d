"""Integer pooling against loop references: window maxima, unpool routing, window sums with named rounding."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_intnn.ops import avg_pool2d, max_pool2d, max_unpool2d


def py_trunc(a: int, b: int) -> int:
    return abs(a) // b if a >= 0 else -(abs(a) // b)


def py_round_half_away(a: int, b: int) -> int:
    mag = int(abs(Fraction(a, b)) + Fraction(1, 2))
    return mag if a >= 0 else -mag


def rand(shape, lo, hi, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi + 1, shape, generator=g, dtype=torch.int64).to(dtype)


def max_pool_ref(x: torch.Tensor, kh: int, kw: int, ceil_mode: bool):
    """Loop over windows; partial windows (ceil_mode) take the max of what they cover. Returns values, indices
    (row-major position inside the kh x kw window, first maximum)."""
    n, c, h, w = x.shape
    rnd = math.ceil if ceil_mode else math.floor
    ho, wo = rnd(h / kh), rnd(w / kw)
    vals = torch.zeros(n, c, ho, wo, dtype=x.dtype)
    idx = torch.zeros(n, c, ho, wo, dtype=torch.int64)
    for b in range(n):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    best, best_pos = None, None
                    for u in range(kh):
                        for v in range(kw):
                            r, s = i * kh + u, j * kw + v
                            if r < h and s < w and (best is None or int(x[b, ch, r, s]) > best):
                                best, best_pos = int(x[b, ch, r, s]), u * kw + v
                    vals[b, ch, i, j], idx[b, ch, i, j] = best, best_pos
    return vals, idx


@pytest.mark.parametrize("shape", [(1, 1, 4, 4), (2, 3, 5, 7), (1, 2, 3, 3), (2, 1, 7, 2)], ids=str)
@pytest.mark.parametrize("kernel", [2, 3, (2, 3), (4, 1)], ids=str)
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("dtype,lo,hi", [(torch.int8, -128, 127), (torch.uint8, 0, 255), (torch.int32, -5, 5)])
def test_max_pool_matches_loops(shape, kernel, ceil_mode, dtype, lo, hi):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    if not ceil_mode and (shape[2] < kh or shape[3] < kw):
        pytest.skip("no full window")
    x = rand(shape, lo, hi, dtype, seed=sum(shape))
    x.view(-1)[0] = lo  # a window holding the dtype minimum must still return it, not padding
    vals, idx = max_pool2d(x, kernel, ceil_mode=ceil_mode, return_indices=True)
    ref_vals, ref_idx = max_pool_ref(x, kh, kw, ceil_mode)
    assert vals.dtype == dtype and torch.equal(vals, ref_vals)
    assert torch.equal(max_pool2d(x, kernel, ceil_mode=ceil_mode), ref_vals)
    # ties may pick any maximal position; the value found there must be the maximum
    picked = x_at(x, idx, kh, kw)
    assert torch.equal(picked, ref_vals)


def x_at(x: torch.Tensor, idx: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """The input value at each window index (inside the input; positions in the padding never hold a max)."""
    n, c, ho, wo = idx.shape
    rows = torch.arange(ho).view(1, 1, -1, 1) * kh + idx // kw
    cols = torch.arange(wo).view(1, 1, 1, -1) * kw + idx % kw
    assert bool((rows < x.shape[2]).all() and (cols < x.shape[3]).all()), "a maximum was routed to padding"
    return x[torch.arange(n).view(-1, 1, 1, 1), torch.arange(c).view(1, -1, 1, 1), rows, cols]


@pytest.mark.parametrize("shape,kernel,ceil_mode", [((2, 3, 5, 7), 2, True), ((2, 3, 5, 7), 2, False),
                                                    ((1, 2, 6, 6), (2, 3), False), ((1, 1, 7, 5), (4, 2), True)])
def test_unpool_routes_each_gradient_to_its_maximum(shape, kernel, ceil_mode):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = torch.randperm(math.prod(shape), generator=torch.Generator().manual_seed(1)).view(shape).to(torch.int32)
    vals, idx = max_pool2d(x, kernel, ceil_mode=ceil_mode, return_indices=True)  # distinct values: no ties
    grad = rand(vals.shape, -1000, 1000, torch.int32, seed=2)
    out = max_unpool2d(grad, idx, kernel, shape[2:])
    assert out.shape == shape and out.dtype == torch.int32
    expected = torch.zeros(shape, dtype=torch.int32)
    n, c, ho, wo = vals.shape
    for b in range(n):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    r, s = i * kh + int(idx[b, ch, i, j]) // kw, j * kw + int(idx[b, ch, i, j]) % kw
                    assert int(x[b, ch, r, s]) == int(vals[b, ch, i, j])
                    expected[b, ch, r, s] = grad[b, ch, i, j]
    assert torch.equal(out, expected)
    assert int(out.sum()) == int(grad.sum())  # nothing lost, nothing routed into padding or dropped borders


@pytest.mark.parametrize("rounding,rule", [("floor", lambda s, d: s // d), ("trunc", py_trunc),
                                           ("round", py_round_half_away)])
@pytest.mark.parametrize("kernel", [2, 3, (1, 2)], ids=str)
def test_avg_pool_rounding_on_negatives(rounding, rule, kernel):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = rand((2, 3, 7, 8), -100, 100, torch.int32, seed=3)
    out = avg_pool2d(x, kernel, rounding=rounding)
    ho, wo = 7 // kh, 8 // kw
    assert out.shape == (2, 3, ho, wo) and out.dtype == torch.int32
    sums = x[:, :, : ho * kh, : wo * kw].reshape(2, 3, ho, kh, wo, kw).sum((3, 5))
    assert out.flatten().tolist() == [rule(s, kh * kw) for s in sums.flatten().tolist()]


def test_avg_pool_rules_differ_where_they_should():
    x = torch.tensor([[[[-3, -2], [-2, -2]]]], dtype=torch.int16)  # sum -9, mean -2.25
    assert avg_pool2d(x, 2, rounding="floor").item() == -3
    assert avg_pool2d(x, 2, rounding="trunc").item() == -2
    assert avg_pool2d(x, 2, rounding="round").item() == -2
    half = torch.tensor([[[[-3, -3], [-2, -2]]]], dtype=torch.int16)  # -2.5: halves away from zero
    assert avg_pool2d(half, 2, rounding="round").item() == -3
    u8 = torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)
    assert avg_pool2d(u8, 2).dtype == torch.int64 and avg_pool2d(u8, 2).item() == 255


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), kh=st.integers(1, 4), kw=st.integers(1, 4),
       seed=st.integers(0, 2**31 - 1))
def test_property_ceil_mode_max_pool(h, w, kh, kw, seed):
    x = rand((1, 2, h, w), -128, 127, torch.int8, seed)
    vals, idx = max_pool2d(x, (kh, kw), ceil_mode=True, return_indices=True)
    assert torch.equal(vals, max_pool_ref(x, kh, kw, True)[0])
    grad = torch.ones_like(vals, dtype=torch.int32)
    assert int(max_unpool2d(grad, idx, (kh, kw), (h, w)).sum()) == vals.numel()


def test_bad_input():
    x = torch.zeros(1, 1, 4, 4, dtype=torch.int8)
    for fn in (max_pool2d, avg_pool2d):
        with pytest.raises(TypeError, match="torch.float32"):
            fn(x.float(), 2)
        with pytest.raises(ValueError, match="4-D"):
            fn(x[0], 2)
    with pytest.raises(ValueError, match="rounding"):
        avg_pool2d(x, 2, rounding="nearest")
    with pytest.raises(TypeError, match="torch.float32"):
        max_unpool2d(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.int64), 2, (4, 4))


@pytest.mark.parametrize("kernel,ceil", [((2, 2), False), ((4, 2), True), ((2, 1), True), ((3, 3), True),
                                         ((3, 3), False), ((1, 1), False)])
def test_max_pool_positions_and_channels_last_input(kernel, ceil):
    """Many ties; the same result from NCHW and channels_last memory; positions are offsets in NHWC memory."""
    from torch_intnn.audit import IntegerOnly

    x = rand((3, 5, 7, 9), -2, 2, torch.int8, seed=0)
    ref, ref_idx = max_pool_ref(x, *kernel, ceil)
    for xin in (x, x.contiguous(memory_format=torch.channels_last)):
        with IntegerOnly():
            values, idx, pos = max_pool2d(xin, kernel, ceil_mode=ceil, return_indices=True, return_positions=True)
        assert torch.equal(values, ref) and torch.equal(idx, ref_idx)
        if xin.is_contiguous(memory_format=torch.channels_last):
            assert values.is_contiguous(memory_format=torch.channels_last)
        kh, kw = kernel
        n, c, ho, wo = ref.shape
        row = torch.arange(ho).view(1, 1, ho, 1) * kh + ref_idx // kw
        col = torch.arange(wo).view(1, 1, 1, wo) * kw + ref_idx % kw
        expected = ((torch.arange(n).view(n, 1, 1, 1) * 7 + row) * 9 + col) * 5 + torch.arange(c).view(1, c, 1, 1)
        assert torch.equal(pos, expected)
