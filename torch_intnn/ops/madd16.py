"""The ``madd16`` GEMM: an exact integer matrix product on AVX2's ``vpmaddwd``, for operands that fit int16.

On x86 CPUs without int8 dot products, PyTorch's integer GEMMs are slow: ``torch._int_mm`` is a scalar loop and
an int32 ``torch.mm`` reaches 6 to 9 GOPS on the products of a CNN step (AVX2 AMD EPYC, one thread), a quarter
of float32. ``vpmaddwd`` multiplies 16 pairs of int16 and adds neighbouring products into 8 int32 lanes, twice
float32 FMA's multiply-adds per instruction. ``madd16.c`` (beside this file) is a blocked GEMM on it; its
docstring says how it packs the operands and why the result is exact. It is compiled once per machine with the
system C compiler (:mod:`torch_intnn.ops._native`) and called through the custom op ``torch_intnn::madd16_mm``,
which ``torch.compile`` keeps in its graph as an opaque call.

:func:`available` says whether this CPU has AVX2 and the kernel builds and loads (the answer is cached).
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

from torch_intnn.ops import _native
from torch_intnn.ops._checks import memory_order
from torch_intnn.ops._cpu import cpu_flags, is_x86
from torch_intnn.ops.limbs import wrap

__all__ = ["available", "madd16_mm", "MAX_BLOCK"]

MAX_BLOCK = 512  # the kernel's longest K block (madd16.c, KC_MAX)
_SOURCE = Path(__file__).with_name("madd16.c")
_FLAGS = ["-O3", "-mavx2", "-std=c11", "-shared", "-fPIC", "-pthread"]
_TYPES = {torch.int8: 1, torch.uint8: 2, torch.int16: 3, torch.int32: 4}
_SMALL = 1 << 22  # multiply-adds below which one thread multiplies (starting a thread costs more)


@functools.cache
def _kernel():
    """The C entry point, or None where this CPU lacks AVX2 or the kernel cannot be built (warned once)."""
    if not is_x86() or "avx2" not in cpu_flags():
        return None
    library = _native.load(_SOURCE, _FLAGS, "integer products run on the slower int32 backend")
    if library is None:
        return None
    function = library.intnn_madd16_gemm
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    function.restype = i32
    function.argtypes = [ptr, i32, i64, i64, ptr, i32, i64, i64, ptr, i32, i64, i64, i64, i64, i32]
    return function


def available() -> bool:
    """Whether the ``madd16`` GEMM runs here: an x86 CPU with AVX2, and the kernel built and loaded."""
    return _kernel() is not None


def _madd16_mm(a: torch.Tensor, b: torch.Tensor, wide: bool) -> torch.Tensor:
    (m, k), n = a.shape, b.shape[1]
    kernel = _kernel()
    if kernel is None:
        raise RuntimeError("madd16_mm: this CPU has no AVX2, or the kernel could not be built (see the warning)")
    if a.device.type != "cpu" or b.device.type != "cpu":
        raise ValueError(f"madd16_mm: CPU tensors only, got {a.device} and {b.device}")
    if a.dtype not in _TYPES or b.dtype not in _TYPES:
        raise ValueError(f"madd16_mm: operands must be int8, uint8, int16 or int32, got {a.dtype} and {b.dtype}")
    if a.dim() != 2 or b.dim() != 2 or b.shape[0] != k:
        raise ValueError(f"madd16_mm: shapes {tuple(a.shape)} and {tuple(b.shape)} do not multiply")
    out = torch.empty((m, n), dtype=torch.int64 if wide else torch.int32, device=a.device)
    if not (m and n):
        return out
    if not k:
        return out.zero_()
    threads = 1 if m * k * n < _SMALL else torch.get_num_threads()
    (lo_a, hi_a), (lo_b, hi_b) = _range(a), _range(b)
    bound_a, bound_b = max(-lo_a, hi_a, 1), max(-lo_b, hi_b, 1)
    split_a, split_b = not _fits16(lo_a, hi_a), not _fits16(lo_b, hi_b)
    if not (split_a or split_b) and _INT32 // (bound_a * bound_b) < _MIN_BLOCK:
        split_a, split_b = bound_a >= bound_b, bound_a < bound_b  # short K blocks: cut the larger into digits
    if split_a and split_b:
        a_digits, b_digits = _digits(a, 12), _digits(b, 12)  # 2**24 a product: blocks of 128
    elif split_a:
        a_digits, b_digits = _digits(a, _digit_bits(bound_b)), [(b, 0, bound_b)]
    elif split_b:
        a_digits, b_digits = [(a, 0, bound_a)], _digits(b, _digit_bits(bound_a))
    else:
        a_digits, b_digits = [(a, 0, bound_a)], [(b, 0, bound_b)]
    for i, (da, sa, ba) in enumerate(a_digits):
        for j, (db, sb, bb) in enumerate(b_digits):
            terms = _INT32 // max(ba * bb, 1)  # at least 64 by the choice of digits above
            part = out if i == j == 0 else torch.empty_like(out)
            status = kernel(da.data_ptr(), _TYPES[da.dtype], da.stride(0), da.stride(1),
                            db.data_ptr(), _TYPES[db.dtype], db.stride(0), db.stride(1),
                            part.data_ptr(), int(wide), m, k, n, min(MAX_BLOCK, terms - terms % 2), threads)
            if status:
                raise MemoryError("madd16_mm: the kernel could not allocate its packing buffers or start its threads")
            if part is not out:
                out.add_(part, alpha=wrap(1 << (sa + sb), out.dtype))
    return out


_INT16, _INT32 = 1 << 15, (1 << 31) - 1
_MIN_BLOCK = 64  # shorter K blocks cost more in packing than they multiply


def _range(x: torch.Tensor) -> tuple[int, int]:
    """The smallest and largest value ``x`` can hold: its dtype's for 8-bit operands, its values' otherwise
    (one pass)."""
    if x.dtype == torch.int8:
        return -128, 127
    if x.dtype == torch.uint8:
        return 0, 255
    lo, hi = torch.aminmax(memory_order(x))  # in memory order: a strided reduction is several times slower
    return int(lo), int(hi)


def _fits16(lo: int, hi: int) -> bool:
    return -_INT16 <= lo and hi < _INT16


def _digit_bits(other: int) -> int:
    """Digit width for an operand multiplied by values up to ``other``: a product at most 2**25, so that a K block
    holds at least 64 terms (each block costs a packing pass), and at most 15 bits, so that digits fit int16."""
    return max(1, min(15, 25 - other.bit_length()))


def _digits(x: torch.Tensor, bits: int) -> list[tuple[torch.Tensor, int, int]]:
    """``x`` (values within int32) as ``(digit, shift, bound)`` triples, ``x == sum digit << shift`` with
    ``|digit| <= bound < 2**bits``: unsigned ``bits``-bit digits from the bottom, the signed rest on top."""
    rest, digits, shift, mask = x.to(torch.int32), [], 0, (1 << bits) - 1
    while True:
        lo, hi = _range(rest)
        if -(1 << bits) < lo and hi < (1 << bits):  # the rest is the top digit
            digits.append((rest.to(torch.int16), shift, max(-lo, hi)))
            return digits
        digits.append((torch.bitwise_and(rest, mask).to(torch.int16), shift, mask))
        rest, shift = torch.bitwise_right_shift(rest, bits), shift + bits


def _fake(a: torch.Tensor, b: torch.Tensor, wide: bool) -> torch.Tensor:
    return a.new_empty((a.shape[0], b.shape[1]), dtype=torch.int64 if wide else torch.int32)


# Registered through torch.library's low-level API (a CPU kernel and a fake one): a call costs a few
# microseconds of dispatch where torch.library.custom_op's wrapper costs about 50.
_LIBRARY = torch.library.Library("torch_intnn", "DEF")
_LIBRARY.define("madd16_mm(Tensor a, Tensor b, bool wide) -> Tensor")
_LIBRARY.impl("madd16_mm", _madd16_mm, "CPU")
torch.library.register_fake("torch_intnn::madd16_mm", _fake, lib=_LIBRARY)
madd16_mm = torch.ops.torch_intnn.madd16_mm
madd16_mm.__doc__ = """``madd16_mm(a, b, wide)``: ``a @ b`` exactly, for (M, K) and (K, N) CPU tensors of int8,
uint8, int16 or int32, any strides; a contiguous (M, N) int64 tensor if ``wide``, else int32, which the caller
proves holds the result.

The kernel multiplies int16 values whose products fit int32 at least two at a time. This op measures the
operands' values (one pass over each operand wider than 8 bits), so a step compiled with declared widths
multiplies at the widths the values have, as an eager one does: an operand beyond 16 bits is cut into base-2**15
digits (unsigned digits of up to 15 bits, the signed rest on top), and so is the larger of two operands whose
products would leave K blocks shorter than 64 terms (two full-range int16 operands: one is cut into 9-bit
digits); then ``a @ b = sum_ij (A_i @ B_j) << (s_i + t_j)``, each digit product in K blocks of as
many terms as provably fit int32 (up to ``MAX_BLOCK``), the sum modulo 2**64 or 2**32, exact because the true
result fits."""
