"""The named integer rounding and saturation rules.

Every division, shift and clamp that a model or a learning rule performs goes through one of these
functions, so that the rounding of each rule is named where it is used. Truncation toward zero and
floor differ on negative operands: ``div_trunc(-7, 2) == -3`` while ``div_floor(-7, 2) == -4``.

All functions take and return integer tensors of the same dtype; a floating-point tensor is refused.
"""

from __future__ import annotations

import torch

from torch_intnn.ops import fused
from torch_intnn.ops._checks import check_integer, memory_order

__all__ = ["div_trunc", "div_trunc_sat8", "div_floor", "div_round", "div_pow2", "shift_round", "saturate",
           "count_saturated8", "int_range"]


def int_range(bits: int) -> tuple[int, int]:
    """The symmetric signed range of a ``bits``-wide integer: ``(-(2**(bits-1) - 1), 2**(bits-1) - 1)``.

    Symmetric (``-127..127`` for 8 bits, ``-32767..32767`` for 16), as PocketNN and NITRO-D clamp, so that
    negation never overflows.
    """
    if not 2 <= bits <= 63:
        raise ValueError(f"bit width must be in 2..63, got {bits}")
    top = (1 << (bits - 1)) - 1
    return -top, top


def div_trunc(a: torch.Tensor, b: torch.Tensor | int) -> torch.Tensor:
    """``a / b`` rounded toward zero (C's integer division; PocketNN's and NITRO-D's ``T(a/b)``)."""
    check_integer(a, "div_trunc dividend")
    if isinstance(b, torch.Tensor):
        check_integer(b, "div_trunc divisor")
    elif b > 1 and b & (b - 1) == 0 and a.dtype != torch.uint8:
        # Power of two on a signed dtype: bias negatives by b - 1, then an arithmetic shift (a floor division).
        # Same result as torch.div(..., "trunc"), whose integer division is not vectorised on CPU (~5x slower).
        sign = torch.bitwise_right_shift(a, torch.iinfo(a.dtype).bits - 1)  # -1 where a < 0, else 0
        return torch.bitwise_right_shift(a + torch.bitwise_and(sign, b - 1), b.bit_length() - 1)
    return torch.div(a, b, rounding_mode="trunc")


def div_trunc_sat8(a: torch.Tensor, b: int) -> torch.Tensor:
    """``clamp(T(a / b), -127, 127)`` as int8, for a positive int ``b``: a truncated division saturated to 8 bits
    (NITRO-Scaling). On CPU one fused pass without a division (:func:`torch_intnn.ops.fused.div_sat8`), where the
    formula takes a scalar integer division and three more passes; the same int8 tensor either way."""
    check_integer(a, "div_trunc_sat8 dividend")
    if not isinstance(b, int) or b <= 0:
        raise ValueError(f"div_trunc_sat8 needs a positive int divisor, got {b!r}")
    if fused.runs_on(a) and a.dtype in (torch.int32, torch.int64) and b <= fused.DIVISOR_MAX:
        return fused.div_sat8(a, b)
    return div_trunc(a, b).clamp_(*int_range(8)).to(torch.int8)  # saturate, in place


def div_floor(a: torch.Tensor, b: torch.Tensor | int) -> torch.Tensor:
    """``a / b`` rounded toward minus infinity (Python's ``//``)."""
    check_integer(a, "div_floor dividend")
    if isinstance(b, torch.Tensor):
        check_integer(b, "div_floor divisor")
    elif b > 1 and b & (b - 1) == 0:
        # Power of two: an arithmetic shift is exactly a floor division, and vectorised (torch.div is not, ~5x).
        return torch.bitwise_right_shift(a, b.bit_length() - 1)
    return torch.div(a, b, rounding_mode="floor")


def div_round(a: torch.Tensor, b: torch.Tensor | int) -> torch.Tensor:
    """``a / b`` rounded to nearest, halves away from zero, for a positive ``b`` (an int or an integer tensor).

    Symmetric, ``div_round(-a, b) == -div_round(a, b)``, so an update rule built on it has no drift toward either
    sign. Computed from the truncated quotient ``q`` and its remainder ``r`` (``|r| < b``, sign of ``a``): step one
    further from zero when ``2|r| >= b``. No intermediate leaves ``a``'s range, so it is exact up to the dtype's
    extremes.
    """
    check_integer(a, "div_round dividend")
    if isinstance(b, torch.Tensor):
        check_integer(b, "div_round divisor")
    elif b <= 0:
        raise ValueError(f"div_round needs a positive divisor, got {b}")
    q = torch.div(a, b, rounding_mode="trunc")
    r = a - q * b
    r_abs = r.abs()
    return torch.where(r_abs >= b - r_abs, q + r.sign(), q)  # 2|r| >= b, written so that it cannot overflow


def div_pow2(a: torch.Tensor, shift: torch.Tensor, rounding: str) -> torch.Tensor:
    """``a / 2**shift`` for a shift held in a 0-d integer tensor, rounded as ``rounding`` names it (``"trunc"``,
    ``"floor"`` or ``"round"``: the same results as :func:`div_trunc`, :func:`div_floor`, :func:`div_round` with
    the int divisor ``2**shift``), by shifts only: no integer division, whose runtime cost is tens of cycles an
    element. A tensor shift lets a compiled graph take any power of two without recompiling."""
    check_integer(a, "div_pow2 dividend")
    check_integer(shift, "div_pow2 shift")
    if rounding not in ("trunc", "floor", "round"):
        raise ValueError(f"div_pow2 rounding must be 'trunc', 'floor' or 'round', got {rounding!r}")
    floor = torch.bitwise_right_shift(a, shift)
    if rounding == "floor":
        return floor
    low = a - torch.bitwise_left_shift(floor, shift)  # in [0, 2**shift)
    trunc = floor + ((a < 0) & (low != 0)).to(a.dtype)  # toward zero
    if rounding == "trunc":
        return trunc
    r = a - torch.bitwise_left_shift(trunc, shift)  # remainder with a's sign, |r| < 2**shift
    r_abs = r.abs()
    b = torch.bitwise_left_shift(torch.ones_like(shift), shift)
    return torch.where(r_abs >= b - r_abs, trunc + r.sign(), trunc)  # 2|r| >= b, as div_round


def shift_round(a: torch.Tensor, shift: int) -> torch.Tensor:
    """``a / 2**shift`` rounded to nearest, halves toward plus infinity: ``floor((a + 2**(shift-1)) / 2**shift)``.

    A floor division plus a half: ``shift_round(-3, 1) == -1`` and ``shift_round(3, 1) == 2``. Computed as
    ``(a >> shift) + bit (shift - 1) of a``, which equals the formula but never overflows near the dtype's
    maximum. ``shift == 0`` returns ``a`` unchanged.
    """
    check_integer(a, "shift_round input")
    if shift < 0:
        raise ValueError(f"shift must be >= 0, got {shift}")
    if shift == 0:
        return a
    half_bit = torch.bitwise_and(torch.bitwise_right_shift(a, shift - 1), 1)
    return torch.bitwise_right_shift(a, shift) + half_bit


def count_saturated8(s: torch.Tensor) -> torch.Tensor:
    """How many values of the int8 tensor ``s`` reached the ends of the symmetric 8-bit range or beyond (``|s| >=
    127``, -128 included), as a 0-d int64 tensor (no host synchronisation). One fused pass on CPU
    (:func:`torch_intnn.ops.fused.count_sat8`)."""
    if s.dtype != torch.int8:
        raise TypeError(f"count_saturated8 counts int8 values, got {s.dtype}")
    if fused.runs_on(s):
        return fused.count_sat8(s)
    flat = memory_order(s)
    return torch.count_nonzero((flat >= 127) | (flat <= -127))


def bit_length(a: torch.Tensor) -> torch.Tensor:
    """The bit length of each value of a non-negative int64 tensor (0 for 0, ``k + 1`` for ``2**k <= a <
    2**(k+1)``), as int64: a binary search of six rounds of compares and shifts."""
    check_integer(a, "bit_length input")
    rest, length = a.to(torch.int64), torch.zeros_like(a, dtype=torch.int64)
    for k in (32, 16, 8, 4, 2, 1):
        high = rest >= (1 << k)
        rest = torch.where(high, torch.bitwise_right_shift(rest, k), rest)
        length = length + high * k
    return length + (rest > 0)


def isqrt(a: torch.Tensor) -> torch.Tensor:
    """``floor(sqrt(a))`` of a non-negative int64 tensor below ``2**62``, element-wise and exact: the digit-by-digit
    method (one result bit per round, 31 rounds of compares, subtractions and shifts; no division, no float).
    Values outside ``[0, 2**62)`` raise (eagerly) as the result would be wrong."""
    check_integer(a, "isqrt input")
    a = a.to(torch.int64)
    if not torch.compiler.is_compiling() and a.numel() and (int(a.min()) < 0 or int(a.max()) >= 1 << 62):
        raise ValueError("isqrt takes values in [0, 2**62)")
    rest, root = a.clone(), torch.zeros_like(a)
    for k in range(30, -1, -1):  # bit = 4**k, from the highest below 2**62 down to 1
        trial = root + (1 << (2 * k))
        fits = rest >= trial
        rest = torch.where(fits, rest - trial, rest)
        root = torch.where(fits, torch.bitwise_right_shift(root, 1) + (1 << (2 * k)),
                           torch.bitwise_right_shift(root, 1))
    return root


def saturate(a: torch.Tensor, bits: int) -> torch.Tensor:
    """Clamp ``a`` to the symmetric signed range of ``bits`` bits (see :func:`int_range`)."""
    check_integer(a, "saturate input")
    lo, hi = int_range(bits)
    return a.clamp(lo, hi)
