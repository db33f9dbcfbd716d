"""The named rounding rules against Python's exact integer arithmetic, on negatives and dtype extremes."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torch_intnn.ops import div_floor, div_pow2, div_round, div_trunc, int_range, saturate, shift_round

SIGNED = [torch.int8, torch.int16, torch.int32, torch.int64]


def py_trunc(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def py_round_half_away(a: int, b: int) -> int:
    x = Fraction(a, b)
    mag = int(abs(x) + Fraction(1, 2))  # floor(|x| + 1/2): halves go away from zero
    return mag if x >= 0 else -mag


def py_shift_round(a: int, s: int) -> int:
    return (a + (1 << (s - 1))) >> s if s else a  # Python ints: exact, no overflow


def extremes_and_small(dtype: torch.dtype) -> torch.Tensor:
    info = torch.iinfo(dtype)
    vals = list(range(-9, 10)) + [info.min, info.min + 1, info.max, info.max - 1, info.max // 2, info.min // 2]
    return torch.tensor(vals, dtype=torch.int64).clamp(info.min, info.max).to(dtype)


def test_trunc_and_floor_differ_on_negatives():
    a = torch.tensor([-7, 7, -8, 0], dtype=torch.int32)
    assert div_trunc(a, 2).tolist() == [-3, 3, -4, 0]
    assert div_floor(a, 2).tolist() == [-4, 3, -4, 0]
    assert div_trunc(a, -2).tolist() == [3, -3, 4, 0]
    assert div_floor(a, -2).tolist() == [3, -4, 4, 0]


@pytest.mark.parametrize("dtype", SIGNED)
@pytest.mark.parametrize("b", [1, 2, 3, 4, 7, 64, 100])
def test_divisions_match_python_at_the_extremes(dtype, b):
    if b > torch.iinfo(dtype).max:
        pytest.skip("divisor outside the dtype")
    a = extremes_and_small(dtype)
    for fn, rule in ((div_trunc, py_trunc), (div_floor, lambda x, y: x // y), (div_round, py_round_half_away)):
        out = fn(a, b)
        assert out.dtype == dtype, fn.__name__
        assert out.tolist() == [rule(v, b) for v in a.tolist()], fn.__name__


def test_tensor_divisors():
    a = torch.tensor([-7, 7, -9, 9])
    b = torch.tensor([2, -2, 4, 4])
    assert div_trunc(a, b).tolist() == [py_trunc(x, y) for x, y in zip(a.tolist(), b.tolist())]
    assert div_floor(a, b).tolist() == [x // y for x, y in zip(a.tolist(), b.tolist())]


def test_div_round_is_symmetric_with_halves_away_from_zero():
    a = torch.arange(-50, 51, dtype=torch.int32)
    for b in (1, 2, 3, 4, 10):
        assert torch.equal(div_round(-a, b), -div_round(a, b))
    assert div_round(torch.tensor([5, -5, 3, -3, 1, -1]), 2).tolist() == [3, -3, 2, -2, 1, -1]
    assert div_round(torch.tensor([7, -7]), 4).tolist() == [2, -2]  # 1.75 -> 2
    assert div_round(torch.tensor([6, -6, 5, -5]), 4).tolist() == [2, -2, 1, -1]  # 1.5 -> 2, 1.25 -> 1


def test_shift_round_halves_go_up():
    a = torch.tensor([3, -3, 1, -1, 2, -2, 5, -5])
    assert shift_round(a, 1).tolist() == [2, -1, 1, 0, 1, -1, 3, -2]
    assert torch.equal(shift_round(a, 0), a)


@pytest.mark.parametrize("dtype", SIGNED + [torch.uint8])
@pytest.mark.parametrize("shift", [1, 2, 7, 8, 15, 31, 40])
def test_shift_round_matches_python_at_the_extremes(dtype, shift):
    a = extremes_and_small(dtype) if dtype != torch.uint8 else torch.tensor([0, 1, 2, 127, 128, 254, 255],
                                                                             dtype=torch.uint8)
    expected = [py_shift_round(v, shift) for v in a.tolist()]
    info = torch.iinfo(dtype)
    keep = [i for i, e in enumerate(expected) if info.min <= e <= info.max]  # max + 1/2 may round past the max
    out = shift_round(a, shift)
    assert out.dtype == dtype
    assert [out.tolist()[i] for i in keep] == [expected[i] for i in keep]


def test_saturate_and_int_range():
    assert int_range(8) == (-127, 127) and int_range(16) == (-32767, 32767) and int_range(2) == (-1, 1)
    a = torch.tensor([-200, -128, -127, 0, 127, 128, 300], dtype=torch.int32)
    out = saturate(a, 8)
    assert out.dtype == torch.int32 and out.tolist() == [-127, -127, -127, 0, 127, 127, 127]
    big = torch.tensor([torch.iinfo(torch.int64).min, torch.iinfo(torch.int64).max])
    assert saturate(big, 63).tolist() == [-(2**62 - 1), 2**62 - 1]
    with pytest.raises(ValueError, match="2..63"):
        int_range(1)
    with pytest.raises(ValueError, match="2..63"):
        saturate(a, 64)


@settings(max_examples=60, deadline=None)
@given(a=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=20), b=st.integers(1, 2**20),
       shift=st.integers(0, 45))
def test_property_against_python(a, b, shift):
    t = torch.tensor(a, dtype=torch.int64)
    assert div_trunc(t, b).tolist() == [py_trunc(v, b) for v in a]
    assert div_trunc(t, -b).tolist() == [py_trunc(v, -b) for v in a]
    assert div_floor(t, b).tolist() == [v // b for v in a]
    assert div_round(t, b).tolist() == [py_round_half_away(v, b) for v in a]
    assert shift_round(t, shift).tolist() == [py_shift_round(v, shift) for v in a]


@pytest.mark.parametrize("fn,args", [(div_trunc, (2,)), (div_floor, (2,)), (div_round, (2,)), (shift_round, (1,)),
                                     (saturate, (8,))])
def test_float_input_is_refused(fn, args):
    with pytest.raises(TypeError, match="torch.float32"):
        fn(torch.ones(3), *args)


def test_bad_arguments():
    a = torch.ones(3, dtype=torch.int32)
    with pytest.raises(ValueError, match="positive divisor"):
        div_round(a, 0)
    with pytest.raises(ValueError, match="shift must be >= 0"):
        shift_round(a, -1)
    with pytest.raises(TypeError, match="torch.float32"):
        div_trunc(a, torch.ones(3))


@pytest.mark.parametrize("rounding", ["trunc", "floor", "round"])
def test_power_of_two_divisors_by_shifts_equal_the_division(rounding):
    """div_pow2 (used by the compiled update step) must equal the named rounding exactly."""
    rule = {"trunc": div_trunc, "floor": div_floor, "round": div_round}[rounding]
    g = torch.cat([torch.arange(-70, 71), torch.tensor([-(2**40) - 3, 2**40 + 5, -(2**62), 2**62 - 1])])
    for k in (0, 1, 3, 6, 19):
        assert torch.equal(div_pow2(g, torch.tensor(k), rounding), rule(g, 2**k)), (rounding, k)
    with pytest.raises(ValueError, match="rounding"):
        div_pow2(g, torch.tensor(1), "nearest")
