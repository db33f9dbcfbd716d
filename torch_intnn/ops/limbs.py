"""Int8 limbs: how :func:`torch_intnn.ops.int_matmul` feeds wide integers to ``torch._int_mm`` (int8 x int8).

A value ``x`` declared to fit ``bits`` signed bits takes ``n = ceil(bits / 8)`` limbs:

    x = sum_{i < n} 256**i * L_i + c,    L_i in [-128, 127],    c = 128 * sum_{i < n-1} 256**i

The lower limbs are the base-256 digits minus 128 and the top limb is ``floor(x / 256**(n-1))``. An int8 value
(or any value declared within 8 bits) is its own single limb with ``c = 0``; a uint8 value (raw pixels 0..255)
takes one limb ``x - 128`` with ``c = 128``.

A matrix is split once into a :class:`Limbs`: its limbs laid side by side along the free dimension (rows of a
left operand, columns of a right one) so that a single ``_int_mm`` computes every limb product. When ``c != 0`` a
row (left) or column (right) of ones is appended: the same ``_int_mm`` then also returns the *other* operand's
limb sums, which the offset correction needs (:mod:`torch_intnn.ops.matmul`). A weight that does not change
between calls can be split once and reused (the modules cache it, keyed by the buffer's version).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from torch_intnn.ops import fused
from torch_intnn.ops._checks import check_fits, check_integer, check_rank, dtype_bits

__all__ = ["Limbs", "split_int8", "split_lhs", "split_rhs", "declared_bits", "effective_bits"]


class Limbs(NamedTuple):
    """A matrix split into int8 limbs for ``_int_mm``: ``x == sum_i 256**i * limb_i + offset`` exactly.

    Fields:
        stack: int8. Left operand (M, K) -> (count * M [+ 1], K); right operand (K, N) -> (K, count * N [+ 1]);
            the ``+ 1`` is a row / column of ones, present exactly when ``offset != 0``.
        count: number of limbs.
        offset: the constant ``c`` of the module docstring.
        bits: the declared signed width of the values (for :func:`torch_intnn.ops.result_dtype`).
        side: ``"lhs"`` or ``"rhs"``.
        rows, cols: shape of the original matrix.
    """

    stack: torch.Tensor
    count: int
    offset: int
    bits: int
    side: str
    rows: int
    cols: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    @property
    def device(self) -> torch.device:
        return self.stack.device

    def limb(self, i: int) -> torch.Tensor:
        """The ``i``-th limb, shaped as the original matrix (a view into ``stack``)."""
        if self.side == "lhs":
            return self.stack[i * self.rows : (i + 1) * self.rows]
        return self.stack[:, i * self.cols : (i + 1) * self.cols]

    def to_int64(self) -> torch.Tensor:
        """The original matrix, rebuilt in int64 (for the plain backend and for tests)."""
        return self._rebuild(torch.int64)

    def to_int32(self) -> torch.Tensor:
        """The original matrix, rebuilt in int32 (for the int32 backend; ``bits`` must be at most 32)."""
        if self.bits > 32:
            raise ValueError(f"Limbs.to_int32: values of {self.bits} bits do not fit int32")
        return self._rebuild(torch.int32)

    def _rebuild(self, dtype: torch.dtype) -> torch.Tensor:
        x = self.limb(0).to(dtype)  # the sum is exact modulo 2**width, and the true value fits
        for i in range(1, self.count):
            x = x + (self.limb(i).to(dtype) << (8 * i))
        return x + self.offset if self.offset else x


def effective_bits(dtype: torch.dtype, bits: int | None) -> int:
    """The signed width a ``dtype`` tensor declared to fit ``bits`` is multiplied at (uint8 always takes 9)."""
    natural = dtype_bits(dtype)
    if bits is None or dtype == torch.uint8:
        return natural  # uint8 always takes one offset limb
    return min(bits, natural)


def declared_bits(t: torch.Tensor, bits: int | None, what: str) -> int:
    """:func:`effective_bits` of ``t``, checked in eager mode (``ValueError`` if a value does not fit)."""
    if bits is not None and not 2 <= bits <= 64:
        raise ValueError(f"{what}: bit width must be in 2..64, got {bits}")
    width = effective_bits(t.dtype, bits)
    check_fits(t, width, what)
    return width


def _limb_count(dtype: torch.dtype, bits: int) -> int:
    return 1 if dtype in (torch.int8, torch.uint8) else math.ceil(bits / 8)


def _write_limbs(x: torch.Tensor, bits: int, limbs: list[torch.Tensor]) -> int:
    """Write the int8 limbs of ``x`` into the given tensors (``x``'s shape); returns the offset ``c``.

    Each limb is computed in ``x``'s dtype (int16 for two limbs, which halves the traffic) and stored with a
    conversion to int8 whose values are always in range.
    """
    n = len(limbs)
    if torch.compiler.is_compiling():  # Dynamo takes no out= into views; Inductor fuses the copies anyway
        def sub(a, b, out): out.copy_(a - b)
        def shift(a, b, out): out.copy_(torch.bitwise_right_shift(a, b))
    else:
        sub, shift = torch.sub, torch.bitwise_right_shift
    if x.dtype == torch.uint8:
        sub(x.to(torch.int16), 128, out=limbs[0])
        return 128
    if n == 1:
        limbs[0].copy_(x)  # int8, or declared within 8 bits
        return 0
    if n == 2 and x.dtype != torch.int16:
        x = x.to(torch.int16)  # exact: the values fit 16 bits
    offset = 0
    for i in range(n - 1):
        digit = torch.bitwise_and(torch.bitwise_right_shift(x, 8 * i) if i else x, 255)  # base-256 digit
        sub(digit, 128, out=limbs[i])
        offset += 128 << (8 * i)
    shift(x, 8 * (n - 1), out=limbs[-1])  # floor(x / 256**(n-1)), in [-128, 127]
    return offset


def split_int8(x: torch.Tensor, bits: int) -> tuple[list[torch.Tensor], int]:
    """Split ``x`` (values within ``bits`` signed bits) into int8 limbs and an offset ``c`` (module docstring).

    Returns ``(limbs, c)`` with ``x == sum(256**i * limbs[i]) + c`` exactly; each limb has ``x``'s shape and
    memory layout. An int8 ``x`` is returned as is (no copy).
    """
    if x.dtype == torch.int8:
        return [x], 0
    limbs = [torch.empty_like(x, dtype=torch.int8) for _ in range(_limb_count(x.dtype, bits))]
    return limbs, _write_limbs(x, bits, limbs)


_RHS_LINES = 16  # a right stack with a ones column is padded to this many columns (AMX tiles are 16 wide)


def _split(x: torch.Tensor, width: int, side: str) -> Limbs:
    """Split a 2-D ``x`` whose values are known to fit ``width`` bits; ``side`` is ``"lhs"`` or ``"rhs"``.

    The limbs are written straight into their places in the stack, which is laid out in ``x``'s memory order
    (a column-major right operand, such as a module's ``weight.T``, gets a column-major stack), so that every
    pass reads and writes memory in order; ``_int_mm`` takes either layout.
    """
    rows, cols = x.shape
    if x.dtype == torch.int8:  # already a single limb, no offset: no copy at all
        return Limbs(x, 1, 0, width, side, rows, cols)
    n = _limb_count(x.dtype, width)
    has_offset = x.dtype == torch.uint8 or n > 1
    stack_dim = 0 if side == "lhs" else 1  # limbs stacked along rows (lhs) or columns (rhs)
    column_major = not x.is_contiguous() and x.mT.is_contiguous()
    if column_major:  # work on the transposed, contiguous view and transpose the stack back
        x, stack_dim = x.mT, 1 - stack_dim
    lines = n * x.shape[stack_dim] + has_offset
    if side == "rhs" and has_offset:
        lines = -(-lines // _RHS_LINES) * _RHS_LINES  # zero columns up to a multiple: _int_mm is faster there
    if n == 2 and x.dtype in (torch.int16, torch.int32) and fused.runs_on(x) and x.is_contiguous():
        stack, offset = fused.split16(x.to(torch.int16), stack_dim, lines), 128  # one pass, the same stack
    else:
        size = list(x.shape)
        size[stack_dim] = lines
        stack = torch.empty(size, dtype=torch.int8, device=x.device)
        step = x.shape[stack_dim]
        limbs = [stack.narrow(stack_dim, i * step, step) for i in range(n)]
        offset = _write_limbs(x, width, limbs)
        if has_offset:
            stack.narrow(stack_dim, n * step, 1).fill_(1)  # the row / column of ones (module docstring)
        if lines > n * step + has_offset:
            stack.narrow(stack_dim, n * step + 1, lines - n * step - 1).zero_()
    return Limbs(stack.mT if column_major else stack, n, offset, width, side, rows, cols)


def _checked_split(x: torch.Tensor, bits: int | None, side: str) -> Limbs:
    what = f"int_matmul {side}"
    check_integer(x, what)
    check_rank(x, 2, what, "(M, K)" if side == "lhs" else "(K, N)")
    return _split(x, declared_bits(x, bits, what), side)


def split_lhs(a: torch.Tensor, bits: int | None = None) -> Limbs:
    """Split a left operand ``a`` (M, K), declared to fit ``bits`` signed bits, for :func:`int_matmul`."""
    return _checked_split(a, bits, "lhs")


def split_rhs(b: torch.Tensor, bits: int | None = None) -> Limbs:
    """Split a right operand ``b`` (K, N), declared to fit ``bits`` signed bits, for :func:`int_matmul`.

    Splitting a weight once and passing the :class:`Limbs` to every :func:`int_matmul` skips the split (and
    the range check) on each call.
    """
    return _checked_split(b, bits, "rhs")


def wrap(value: int, dtype: torch.dtype) -> int:
    """``value`` reduced to ``dtype``'s two's-complement range (the sum it joins is exact modulo 2**width)."""
    width = 32 if dtype == torch.int32 else 64
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value
