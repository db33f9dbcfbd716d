"""Exact integer matrix multiply on ``torch._int_mm`` (int8 x int8 -> int32).

Wider operands are split into int8 *limbs*. A value ``x`` declared to fit ``bits`` signed bits (``n =
ceil(bits / 8)`` limbs) is written as

    x = sum_{i < n} 256**i * L_i + c,    L_i in [-128, 127],  c = 128 * sum_{i < n-1} 256**i

where the lower limbs are the base-256 digits minus 128 and the top limb is ``floor(x / 256**(n-1))``. The
constant ``c`` comes back as a rank-one correction, so for ``a = A + c`` and ``b = B + d``

    a @ b = A @ B + c * colsum(b) + d * rowsum(a) - c * d * K.

All limbs of ``a`` are stacked along M and all limbs of ``b`` along N, so one ``_int_mm`` call computes every
limb product. Each partial sum is bounded by ``K * 128 * 128``, exact in int32 while ``K < 2**17``; longer
reductions are cut into chunks. ``uint8`` operands (raw pixels 0..255) take one limb with ``c = 128``.

Result dtype: int32 when the declared widths prove ``K * 2**(a_bits-1) * 2**(b_bits-1) < 2**31``, else int64.
The recombination then runs in that dtype; two's-complement sums are exact modulo 2**32 (or 2**64), and the
bound guarantees the true result lies in range, so the result equals int64 arithmetic bit for bit.
"""

from __future__ import annotations

import math

import torch

from torch_intnn.ops._checks import check_fits, check_integer, check_rank, dtype_bits

__all__ = ["int_matmul", "split_int8", "result_dtype"]

_MAX_K = (1 << 17) - 1  # K * 128 * 128 must stay below 2**31 in each _int_mm partial sum


def _declared_bits(t: torch.Tensor, bits: int | None, what: str) -> int:
    natural = dtype_bits(t.dtype)
    if bits is None:
        return natural
    if not 2 <= bits <= 64:
        raise ValueError(f"{what}: bit width must be in 2..64, got {bits}")
    if t.dtype == torch.uint8:
        return natural  # uint8 always takes one offset limb
    check_fits(t, bits, what)
    return min(bits, natural)


def _limb_count(dtype: torch.dtype, bits: int) -> int:
    return 1 if dtype == torch.uint8 else math.ceil(bits / 8)


def split_int8(x: torch.Tensor, bits: int) -> tuple[list[torch.Tensor], int]:
    """Split ``x`` (values within ``bits`` signed bits) into int8 limbs and an offset ``c`` (module docstring).

    Returns ``(limbs, c)`` with ``x == sum(256**i * limbs[i]) + c`` exactly.
    """
    if x.dtype == torch.int8:
        return [x], 0
    if x.dtype == torch.uint8:
        return [(x.to(torch.int16) - 128).to(torch.int8)], 128
    n = math.ceil(bits / 8)
    if n == 1:
        return [x.to(torch.int8)], 0
    limbs, offset, rest = [], 0, x
    for i in range(n - 1):
        limbs.append((torch.bitwise_and(rest, 255) - 128).to(torch.int8))
        rest = torch.bitwise_right_shift(rest, 8)  # exact floor division by 256
        offset += 128 << (8 * i)
    limbs.append(rest.to(torch.int8))
    return limbs, offset


def result_dtype(k: int, a_bits: int, b_bits: int) -> torch.dtype:
    """int32 if ``k`` products of an ``a_bits`` and a ``b_bits`` value provably fit it, else int64."""
    bound = k * (1 << (a_bits - 1)) * (1 << (b_bits - 1))
    return torch.int32 if bound < (1 << 31) else torch.int64


def _pad_for_device(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CUDA's ``_int_mm`` needs M > 16 and K, N multiples of 8: pad with zeros, which add nothing."""
    if a.device.type != "cuda":
        return a, b  # the CPU kernel (oneDNN) takes any shape
    m, k = a.shape
    n = b.shape[1]
    pm, pk, pn = max(0, 17 - m), (-k) % 8, (-n) % 8
    if pm or pk:
        a = torch.nn.functional.pad(a, (0, pk, 0, pm))
    if pk or pn:
        b = torch.nn.functional.pad(b, (0, pn, 0, pk))
    return a, b


def _limb_products(a_limbs: list[torch.Tensor], b_limbs: list[torch.Tensor], out: torch.dtype) -> torch.Tensor:
    """One ``_int_mm`` over all limbs: returns (len(a_limbs), M, len(b_limbs), N) in ``out``."""
    m, k = a_limbs[0].shape
    n = b_limbs[0].shape[1]
    a_stack = torch.cat(a_limbs, 0) if len(a_limbs) > 1 else a_limbs[0].contiguous()
    b_stack = torch.cat(b_limbs, 1) if len(b_limbs) > 1 else b_limbs[0].contiguous()
    total = None
    for start in range(0, k, _MAX_K):
        a_c, b_c = a_stack[:, start:start + _MAX_K], b_stack[start:start + _MAX_K]
        a_c, b_c = _pad_for_device(a_c.contiguous(), b_c.contiguous())
        part = torch._int_mm(a_c, b_c)[: a_stack.shape[0], : b_stack.shape[1]].to(out)
        total = part if total is None else total + part
    return total.view(len(a_limbs), m, len(b_limbs), n)


def int_matmul(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    a_bits: int | None = None,
    b_bits: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Exact ``a @ b`` for integer matrices, equal to int64 arithmetic bit for bit.

    Args:
        a: (M, K) int8, uint8, int16, int32 or int64.
        b: (K, N) same choice of dtypes.
        a_bits, b_bits: signed width the values are declared to fit (default: the dtype's). An int32 tensor
            holding int16 values should say ``bits=16``: it then takes 2 limbs instead of 4. Values outside the
            declared width raise ``ValueError`` (checked in eager mode).
        backend: ``"int_mm"`` (int8 limbs on ``torch._int_mm``), ``"plain"`` (int64 ``torch.mm``, CPU only,
            slow but obviously correct) or ``"auto"`` (``int_mm`` on CPU and CUDA, else plain).

    Returns:
        (M, N) int32 when the declared widths prove the result fits (see :func:`result_dtype`), else int64.
    """
    check_integer(a, "int_matmul lhs")
    check_integer(b, "int_matmul rhs")
    check_rank(a, 2, "int_matmul lhs", "(M, K)")
    check_rank(b, 2, "int_matmul rhs", "(K, N)")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"int_matmul: inner sizes differ, lhs {tuple(a.shape)} and rhs {tuple(b.shape)}")
    ab = _declared_bits(a, a_bits, "int_matmul lhs")
    bb = _declared_bits(b, b_bits, "int_matmul rhs")
    m, k = a.shape
    n = b.shape[1]
    out = result_dtype(k, ab, bb)
    if backend == "auto":
        backend = "int_mm" if a.device.type in ("cpu", "cuda") else "plain"
    if backend == "plain":
        return torch.mm(a.to(torch.int64), b.to(torch.int64)).to(out)
    if backend != "int_mm":
        raise ValueError(f"unknown backend {backend!r}; use 'auto', 'int_mm' or 'plain'")
    if m == 0 or n == 0 or k == 0:
        return torch.zeros(m, n, dtype=out, device=a.device)

    a_limbs, c = split_int8(a, ab)
    b_limbs, d = split_int8(b, bb)
    prods = _limb_products(a_limbs, b_limbs, out)  # (na, M, nb, N)
    result = None
    for i in range(len(a_limbs)):
        for j in range(len(b_limbs)):
            term = prods[i, :, j]
            if i + j:
                term = term * (1 << (8 * (i + j)))
            result = term if result is None else result + term
    if d:
        result = result + d * a.sum(1, dtype=torch.int64).to(out)[:, None]
    if c:
        result = result + c * b.sum(0, dtype=torch.int64).to(out)[None, :]
    if c and d:
        result = result - _wrap(c * d * k, out)
    return result


def _wrap(value: int, dtype: torch.dtype) -> int:
    """``value`` reduced to ``dtype``'s two's-complement range (the sum it joins is exact modulo 2**width)."""
    width = 32 if dtype == torch.int32 else 64
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value
