"""Exact integer matrix multiply on ``torch._int_mm`` (int8 x int8 -> int32).

Both operands are split into int8 limbs (:mod:`torch_intnn.ops.limbs`): ``a = A + c`` and ``b = B + d`` with
``A = sum_i 256**i A_i`` and ``B = sum_j 256**j B_j``. Then

    a @ b = sum_{i,j} 256**(i+j) A_i @ B_j  +  c * colsum(B)  +  d * rowsum(A)  +  c * d * K

All limbs of ``a`` are stacked along M and all limbs of ``b`` along N, so a single ``_int_mm`` computes every
limb product ``A_i @ B_j``; the row of ones stacked under an offset ``a`` yields ``colsum(B_j)`` and the column
of ones beside an offset ``b`` yields ``rowsum(A_i)`` in the same call. Each partial sum is bounded by
``K * 128 * 128``, exact in int32 while ``K < 2**17``; longer reductions are cut into chunks.

Result dtype: int32 when the declared widths prove ``K * 2**(a_bits-1) * 2**(b_bits-1) < 2**31``, else int64.
The recombination runs in that dtype; two's-complement sums and products by constants are exact modulo 2**32
(or 2**64), and the bound guarantees the true result lies in range, so the result equals int64 arithmetic bit
for bit.

Backends (:mod:`torch_intnn.ops.backend`). ``_int_mm`` is fast only where the CPU has int8 dot-product
instructions (x86 VNNI or AMX: about 1 TOPS on one core of such a machine); without them PyTorch runs it in a
scalar loop (0.7 GOPS measured on an AVX2-only AMD EPYC), 20 times slower than an int32 ``torch.mm``. The
``int32`` backend is for such CPUs: it multiplies the values themselves as int32, cutting K into chunks short
enough that every chunk's partial sum provably fits int32 (``chunk * 2**(a_bits-1) * 2**(b_bits-1) < 2**31``)
and adding the chunks in the result dtype; when that chunk would be shorter than ``_INT32_MIN_CHUNK`` (16-bit by
16-bit operands) it multiplies the int8 limbs with int32 GEMMs instead. The ``madd16`` backend, this package's
AVX2 kernel (:mod:`torch_intnn.ops.madd16`), multiplies 4 to 5 times faster than the int32 one, as fast as
float32 (25-37 GOPS on the same EPYC), cutting operands of up to 32 bits into int16 digits, and leaves wider
ones to it. One table (``_PRODUCTS``) maps each backend to the function that multiplies. Every backend returns
the same tensor, bit for bit.
"""

from __future__ import annotations

from typing import Callable

import torch

from torch_intnn.ops import fused, madd16
from torch_intnn.ops._checks import check_integer, check_rank
from torch_intnn.ops.backend import Backend, resolve_backend
from torch_intnn.ops.limbs import Limbs, _split, declared_bits, split_int8, wrap

__all__ = ["int_matmul", "split_int8", "result_dtype", "cuda_padding", "with_bias_dtype"]

_MAX_K = (1 << 17) - 1  # K * 128 * 128 must stay below 2**31 in each _int_mm partial sum
_COMBINE_CHUNK = 1 << 18  # result elements summed per eager pass (2 MiB of int64)
_INT32_MIN_CHUNK = 64  # int32 backend: shorter K chunks (16 x 16 bits) cost more than the int8 limbs' GEMMs
_INT32_LONG_K = 8192  # int32 backend: from this K chunk on, both operands row-major (see _int32_products)


def _int32_terms(a_bits: int, b_bits: int) -> int:
    """How many products of an ``a_bits`` and a ``b_bits`` value a sum can hold and provably fit int32."""
    return ((1 << 31) - 1) // ((1 << (a_bits - 1)) * (1 << (b_bits - 1)))


def result_dtype(k: int, a_bits: int, b_bits: int) -> torch.dtype:
    """int32 if ``k`` products of an ``a_bits`` and a ``b_bits`` value provably fit it, else int64."""
    return torch.int32 if k <= _int32_terms(a_bits, b_bits) else torch.int64


def with_bias_dtype(z: torch.Tensor, k: int, a_bits: int, b_bits: int) -> torch.Tensor:
    """``z``, a product over ``k`` terms, widened to int64 unless the sum plus a bias within ``b_bits`` provably
    fits int32 (the bias counts as a (k+1)-th product, with an input of 1). For layers with a bias."""
    if z.dtype == torch.int32 and result_dtype(k + 1, a_bits, b_bits) == torch.int64:
        return z.to(torch.int64)
    return z


def cuda_padding(m: int, k: int, n: int) -> tuple[int, int, int]:
    """Zero rows / inner columns / columns to add so CUDA's ``_int_mm`` takes an (m, k) x (k, n) product.

    Its rules: M > 16, and K and N multiples of 8. Zero padding adds nothing to the product.
    """
    return max(0, 17 - m), (-k) % 8, (-n) % 8


def _pad_for_device(
    a: torch.Tensor, b: torch.Tensor, device_type: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``a`` (M, K) and ``b`` (K, N) by :func:`cuda_padding` on CUDA; the CPU kernel (oneDNN) takes any shape.

    ``device_type`` overrides ``a.device.type`` (the tests exercise the CUDA rule on CPU and meta tensors).
    """
    if (device_type or a.device.type) != "cuda":
        return a, b
    pm, pk, pn = cuda_padding(a.shape[0], a.shape[1], b.shape[1])
    if pm or pk:
        a = torch.nn.functional.pad(a, (0, pk, 0, pm))
    if pk or pn:
        b = torch.nn.functional.pad(b, (0, pn, 0, pk))
    return a, b


def _gemm_ready(x: torch.Tensor) -> torch.Tensor:
    """``x`` (2-D) itself if its strides form a valid row- or column-major layout, else a contiguous copy.

    ``_int_mm`` on CPU takes the leading dimension from the strides even along a dimension of size 1, where
    PyTorch leaves the stride arbitrary (the transpose of an (N, 1) tensor has strides (1, 1)); with such an
    operand it returns garbage (seen with torch 2.14). A fresh contiguous tensor has canonical strides.
    """
    rows, cols = x.shape
    if x.stride(1) == 1:  # read as row-major whenever the last stride is 1
        return x if x.stride(0) >= max(cols, 1) else x.clone(memory_format=torch.contiguous_format)
    if x.stride(0) == 1 and x.stride(1) >= max(rows, 1):
        return x
    return x.clone(memory_format=torch.contiguous_format)


def _limb_products(a: Limbs, b: Limbs, out: torch.dtype, backend: Backend = Backend.INT_MM) -> torch.Tensor:
    """``a.stack @ b.stack`` exactly: int32 for one K chunk, else the chunks summed in ``out`` (modular).
    ``Backend.INT32`` multiplies the int8 limbs with an int32 ``torch.mm`` instead of ``_int_mm``."""
    rows, k = a.stack.shape
    cols = b.stack.shape[1]
    total = None
    for start in range(0, k, _MAX_K):
        a_c, b_c = a.stack[:, start : start + _MAX_K], b.stack[start : start + _MAX_K]
        if backend is Backend.INT32:
            part = torch.mm(a_c.to(torch.int32), b_c.to(torch.int32))
        else:
            a_c, b_c = _pad_for_device(a_c, b_c)
            part = torch._int_mm(_gemm_ready(a_c), _gemm_ready(b_c))
        if part.shape != (rows, cols):
            part = part[:rows, :cols]
        total = part if total is None else total.to(out).add_(part)
    return total


def _combine(p: torch.Tensor, a: Limbs, b: Limbs, out: torch.dtype, result: torch.Tensor | None = None):
    """The module docstring's sum, from the limb products ``p`` (a.stack @ b.stack), in ``out``; written into
    ``result`` (M, N) if given."""
    m, n, k = a.rows, b.cols, a.cols
    na, nb = a.count, b.count

    def block(i: int, j: int) -> torch.Tensor:  # A_i @ B_j, or a limb sum when i == na or j == nb
        return p[i * m : (i + 1) * m if i < na else i * m + 1, j * n : (j + 1) * n if j < nb else j * n + 1]

    if not _needs_combining(a, b):
        product = block(0, 0)  # int8 x int8: the product itself
        return result.copy_(product) if result is not None else product.to(out).contiguous()

    # The offset corrections are an (M, 1) and a (1, N) vector: cheap, computed in `out` directly.
    row_term = col_term = None
    if b.offset:  # d * rowsum(A) + c * d * K
        rowsum = sum(block(i, nb).to(out) * wrap(256**i, out) for i in range(na))
        row_term = rowsum * wrap(b.offset, out) + wrap(a.offset * b.offset * k, out)
    if a.offset:  # c * colsum(B)
        colsum = sum(block(na, j).to(out) * wrap(256**j, out) for j in range(nb))
        col_term = colsum * wrap(a.offset, out)

    if result is None:
        result = torch.empty((m, n), dtype=out, device=p.device)
    if fused.runs_on(p) and p.dtype == torch.int32 and p.stride(1) == 1 and not torch.compiler.is_compiling():
        return fused.combine_into(result, p, (na, nb), row_term, col_term)  # one pass

    # Eager mode sums chunk by chunk of rows, so that the int64 temporaries of the type promotions stay in
    # cache (3-5x faster on tall products such as a conv's im2col GEMM); Inductor fuses the whole sum instead.
    step = m if torch.compiler.is_compiling() else max(1, _COMBINE_CHUNK // n)
    for r in range(0, m, step):
        rows = slice(r, r + step)
        chunk = result[rows]
        if row_term is None:
            chunk.copy_(block(0, 0)[rows])
        else:
            torch.add(block(0, 0)[rows], row_term[rows], out=chunk)
        if col_term is not None:
            chunk.add_(col_term)
        for i in range(na):
            for j in range(nb):
                if i or j:
                    chunk.add_(block(i, j)[rows], alpha=wrap(256 ** (i + j), out))
    return result


def int_matmul(
    a: torch.Tensor | Limbs,
    b: torch.Tensor | Limbs,
    *,
    a_bits: int | None = None,
    b_bits: int | None = None,
    backend: Backend | str = Backend.AUTO,
) -> torch.Tensor:
    """Exact ``a @ b`` for integer matrices, equal to int64 arithmetic bit for bit.

    Args:
        a: (M, K) int8, uint8, int16, int32 or int64, or a :class:`~torch_intnn.ops.limbs.Limbs` from
            :func:`~torch_intnn.ops.limbs.split_lhs`.
        b: (K, N) same choice of dtypes, or a :class:`Limbs` from :func:`~torch_intnn.ops.limbs.split_rhs`
            (a weight split once and reused).
        a_bits, b_bits: signed width the values are declared to fit (default: the dtype's). An int32 tensor
            holding int16 values should say ``bits=16``: it then takes 2 limbs instead of 4. Values outside the
            declared width raise (``ValueError`` eagerly, ``RuntimeError`` from compiled code). Ignored for a
            :class:`Limbs` operand, which carries its own width.
        backend: a :class:`~torch_intnn.ops.backend.Backend` or its name: ``"auto"`` (the device's default,
            :func:`~torch_intnn.ops.backend.resolve_backend`), ``"int_mm"``, ``"madd16"``, ``"int32"`` or
            ``"plain"``.

    Returns:
        (M, N) contiguous, int32 when the declared widths prove the result fits (see :func:`result_dtype`),
        else int64.
    """
    if not isinstance(a, Limbs):
        check_integer(a, "int_matmul lhs")
        check_rank(a, 2, "int_matmul lhs", "(M, K)")
    if not isinstance(b, Limbs):
        check_integer(b, "int_matmul rhs")
        check_rank(b, 2, "int_matmul rhs", "(K, N)")
    if isinstance(a, Limbs) and a.side != "lhs" or isinstance(b, Limbs) and b.side != "rhs":
        raise ValueError("int_matmul: split the left operand with split_lhs and the right one with split_rhs")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"int_matmul: inner sizes differ, lhs {tuple(a.shape)} and rhs {tuple(b.shape)}")
    (m, k), n = a.shape, b.shape[1]
    backend = resolve_backend(backend, a.device, m * k * n)
    a_width = a.bits if isinstance(a, Limbs) else declared_bits(a, a_bits, "int_matmul lhs")
    b_width = b.bits if isinstance(b, Limbs) else declared_bits(b, b_bits, "int_matmul rhs")
    out = result_dtype(k, a_width, b_width)
    if m == 0 or n == 0 or k == 0:
        return torch.zeros(m, n, dtype=out, device=a.device)
    return _PRODUCTS[backend](a, b, a_width, b_width, out)


def _plain_product(a, b, a_width: int, b_width: int, out: torch.dtype) -> torch.Tensor:
    """``Backend.PLAIN``: one int64 ``torch.mm``."""
    return torch.mm(_to_int64(a), _to_int64(b)).to(out)


def _int32_product(a, b, a_width: int, b_width: int, out: torch.dtype) -> torch.Tensor:
    """``Backend.INT32``: int32 GEMMs on K chunks whose sums fit int32 (the int8 limbs where chunks would be
    shorter than ``_INT32_MIN_CHUNK``), in the layouts :func:`_int32_products` explains."""
    (m, k), n = a.shape, b.shape[1]
    chunk = _int32_terms(a_width, b_width)
    if chunk < min(k, _INT32_MIN_CHUNK):
        return _limbs_product(a, b, a_width, b_width, out, Backend.INT32)
    chunk = _equal_chunk(k, chunk)
    rhs_column_major = chunk < _INT32_LONG_K  # row-major for long reductions: see _int32_products
    if m <= n:
        return _int32_products(_to_int32(a, column_major=False), _to_int32(b, column_major=rhs_column_major),
                               chunk, out)
    # a tall product as (b^T a^T)^T: row-major b^T on the left, a^T laid out as a right operand
    bt, at = _to_int32(b, column_major=True).T, _to_int32(a, column_major=not rhs_column_major).T
    return _int32_products(bt, at, chunk, out).T.contiguous()


def _limbs_product(a, b, a_width: int, b_width: int, out: torch.dtype,
                   gemm: Backend = Backend.INT_MM) -> torch.Tensor:
    """``Backend.INT_MM``: every limb product in one ``gemm`` call, then the module docstring's sum."""
    m, n = a.shape[0], b.shape[1]
    a = a if isinstance(a, Limbs) else _split(a, a_width, "lhs")
    b = b if isinstance(b, Limbs) else _split(b, b_width, "rhs")
    rows = max(1, _COMBINE_CHUNK // b.stack.shape[1])
    if a.count == 1 and not a.offset and m > rows and _needs_combining(a, b) and not torch.compiler.is_compiling():
        # A tall product (a conv's im2col GEMM) runs in blocks of rows, so that each block's int32 limb products
        # are still in cache when they are recombined: ~25% faster than one _int_mm and one pass over its output.
        result = torch.empty((m, n), dtype=out, device=a.device)
        for r in range(0, m, rows):
            block = a._replace(stack=a.stack[r : r + rows], rows=min(rows, m - r))
            _combine(_limb_products(block, b, out, gemm), block, b, out, result[r : r + rows])
        return result
    return _combine(_limb_products(a, b, out, gemm), a, b, out)


def _madd16_product(a, b, a_width: int, b_width: int, out: torch.dtype) -> torch.Tensor:
    """``Backend.MADD16``: the AVX2 kernel (:func:`torch_intnn.ops.madd16.madd16_mm`, which cuts operands beyond
    16 bits into digits) for operands within 32 bits, others as ``Backend.INT32``."""
    if a_width > 32 or b_width > 32:
        return _int32_product(a, b, a_width, b_width, out)
    return madd16.madd16_mm(_values(a), _values(b), out == torch.int64)


_PRODUCTS: dict[Backend, Callable[..., torch.Tensor]] = {
    Backend.PLAIN: _plain_product,
    Backend.INT32: _int32_product,
    Backend.MADD16: _madd16_product,
    Backend.INT_MM: _limbs_product,
}


def _int32_products(a: torch.Tensor, b: torch.Tensor, chunk: int, out: torch.dtype) -> torch.Tensor:
    """``a @ b`` for int32 operands, K cut into chunks of ``chunk`` whose sums fit int32, added in ``out``.

    PyTorch's int32 GEMM is a plain loop whose speed depends on the operands' layouts and shape (GOPS measured
    on an AVX2 EPYC, one thread): both column-major 0.3-5, the worst everywhere; for M <= N (a linear layer's
    batch times weight) row-major ``a`` with column-major ``b`` was best (20-33 against 9-19 for both
    row-major). A tall product (a conv's im2col GEMM, 16384 x 576 x 128) ran at 6-11 GOPS in every layout, and
    at 24-30 as ``(b^T a^T)^T``, which is again the fast case. ``int_matmul`` therefore multiplies a product
    with M > N transposed (the smaller outer dimension as rows), its left operand row-major and its right one
    column-major int32. Long reductions are the exception: from K chunks of about 8192 on (a row of 32 KiB),
    that layout slows down (a conv weight gradient, 256 x 32768 x 1152: 6.7 GOPS), while a row-major right
    operand ran at 20 (and 21 against 14 at 128 x 16384 x 576), layout copies included.
    """
    k = a.shape[1]
    total = torch.mm(a[:, :chunk], b[:chunk])
    if k <= chunk:
        return total if out == torch.int32 else total.to(out)
    total = total.to(out)
    for start in range(chunk, k, chunk):
        total.add_(torch.mm(a[:, start : start + chunk], b[start : start + chunk]))
    return total


def _equal_chunk(k: int, chunk: int) -> int:
    """The longest of equal chunks of ``k`` no longer than ``chunk``: a thin last chunk (K = 1024 at 511 leaves 2)
    would cost a whole GEMM."""
    return -(-k // -(-k // chunk))


def _needs_combining(a: Limbs, b: Limbs) -> bool:
    """False for int8 x int8 (one limb each, no offsets): the product is the result."""
    return a.count * b.count > 1 or bool(a.offset or b.offset)


def _values(x: torch.Tensor | Limbs) -> torch.Tensor:
    """``x``'s values in a dtype the madd16 kernel reads (int8, uint8, int16 or int32), without a copy where
    they already are: a one-limb :class:`Limbs` without offset is its own stack."""
    if isinstance(x, Limbs):
        return x.stack if x.count == 1 and not x.offset else x.to_int32()
    return x.to(torch.int32) if x.dtype == torch.int64 else x


def _to_int64(x: torch.Tensor | Limbs) -> torch.Tensor:
    return x.to_int64() if isinstance(x, Limbs) else x.to(torch.int64)


def _to_int32(x: torch.Tensor | Limbs, column_major: bool) -> torch.Tensor:
    """``x`` as int32 in the given layout, converted in one pass; a :class:`Limbs` (at most 32 bits here) is
    rebuilt from its limbs (exact modulo 2**32)."""
    if isinstance(x, Limbs):
        x = x.to_int32()
    if x.dtype == torch.int32 and (x.mT.is_contiguous() if column_major else x.is_contiguous()):
        return x
    rows, cols = x.shape
    strides = (1, max(rows, 1)) if column_major else (max(cols, 1), 1)
    return torch.empty_strided((rows, cols), strides, dtype=torch.int32, device=x.device).copy_(x)
