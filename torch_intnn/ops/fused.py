"""Fused element-wise kernels for CPU: one pass over memory each, no integer division.

PyTorch computes NITRO-Scaling's ``clamp(T(z / SF), -127, 127)`` with a scalar integer division (tens of cycles
an element) and three more passes, NITRO-ReLU in four passes, and a max pooling that tracks where its maxima lie
in a pass per window cell; together they took about half of the small CIFAR-10 CNN's training step (2-core Xeon
with AMX, one thread). ``fused.c`` (beside this file) computes each in one pass of plain C that the compiler
vectorises for the CPU it runs on (built once per machine, :mod:`torch_intnn.ops._native`). The kernels are
custom ops (``torch_intnn::div_sat8``, ``lookup8``, ``max_pool8``, ``max_pool8_values``, ``im2col``,
``nitro_relu_grad``, ``split16``, ``count_sat8``) with fake kernels, so ``torch.compile`` keeps them in its
graph; :func:`combine_into` (the limb products' sum, writing into its caller's tensor) runs in eager mode only.

Each op equals a PyTorch formula bit for bit (the tests compare them); the callers in ``ops/rounding.py``,
``ops/pool.py``, ``ops/conv.py``, ``ops/limbs.py``, ``ops/matmul.py`` and ``nn/nitro.py`` use the op where
:func:`runs_on` says it runs and the formula elsewhere (CUDA, a machine without a C compiler), so every device
gets the same numbers.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

from torch_intnn.ops import _native
from torch_intnn.ops._checks import memory_order

__all__ = ["available", "runs_on", "div_sat8", "lookup8", "max_pool8", "max_pool8_values", "split16", "count_sat8",
           "im2col", "nitro_relu_grad", "combine_into", "DIVISOR_MAX"]

_SOURCE = Path(__file__).with_name("fused.c")
_FLAGS = ["-O3", "-march=native", "-std=c11", "-shared", "-fPIC"]
DIVISOR_MAX = ((1 << 32) - 1) // 127  # the division kernel needs 127 * d < 2**32


@functools.cache
def _library():
    """The loaded kernels, or None where they cannot be built (warned once)."""
    library = _native.load(_SOURCE, _FLAGS, "its element-wise steps run as several PyTorch operations")
    if library is None:
        return None
    i64, u32, ptr = ctypes.c_int64, ctypes.c_uint32, ctypes.c_void_p
    for name in ("intnn_div_sat8_i32", "intnn_div_sat8_i64"):
        getattr(library, name).argtypes = [ptr, ptr, i64, u32]
    library.intnn_lookup8.argtypes = [ptr, ptr, i64, ptr]
    library.intnn_max_pool8.argtypes = [ptr, i64, i64, i64, i64, i64, i64, ptr, ptr]
    library.intnn_split16.argtypes = [ptr, i64, i64, ptr, i64, i64, i64]
    library.intnn_count_sat8.argtypes = [ptr, i64]
    library.intnn_count_sat8.restype = i64
    library.intnn_im2col.argtypes = [ptr, i64, i64, i64, i64, i64, i64, i64, i64, i64, ptr]
    library.intnn_nitro_relu_grad.argtypes = [ptr, ptr, ptr, i64, ctypes.c_int32]
    library.intnn_combine.argtypes = [ptr, i64, i64, i64, ctypes.c_int, ctypes.c_int, ptr, ptr, ptr, ctypes.c_int]
    for name in ("intnn_div_sat8_i32", "intnn_div_sat8_i64", "intnn_lookup8", "intnn_max_pool8", "intnn_split16",
                 "intnn_im2col", "intnn_nitro_relu_grad", "intnn_combine"):
        getattr(library, name).restype = None
    return library


def available() -> bool:
    """Whether the fused kernels run on this machine's CPU (built and loaded)."""
    return _library() is not None


_RUNS = available()  # read once at import, so that tracing a compiled step reads a constant


def runs_on(t: torch.Tensor) -> bool:
    """Whether the fused kernels take ``t``: a CPU tensor on a machine where they built."""
    return _RUNS and t.device.type == "cpu"


def _dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if its elements fill its memory without gaps (any dimension order), else a contiguous copy:
    the kernels read flat memory, and an ``empty_like`` output then has the same strides."""
    if t.is_contiguous():  # the common case, without memory_order's sort and permute (10 us a call)
        return t
    return t if t.dim() >= 2 and memory_order(t).dim() == 1 else t.contiguous()


def _div_sat8(z: torch.Tensor, d: int) -> torch.Tensor:
    if z.dtype not in (torch.int32, torch.int64) or z.device.type != "cpu":
        raise ValueError(f"div_sat8: a CPU int32 or int64 tensor, got {z.dtype} on {z.device}")
    if not 0 < d <= DIVISOR_MAX:
        raise ValueError(f"div_sat8: the divisor must be in 1..{DIVISOR_MAX}, got {d}")
    z = _dense(z)
    out = torch.empty_like(z, dtype=torch.int8)
    kernel = _library().intnn_div_sat8_i32 if z.dtype == torch.int32 else _library().intnn_div_sat8_i64
    kernel(z.data_ptr(), out.data_ptr(), z.numel(), d)
    return out


def _lookup8(s: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    if s.dtype != torch.int8 or table.dtype != torch.int8 or table.shape != (256,) or not table.is_contiguous():
        raise ValueError(f"lookup8: an int8 tensor and a contiguous (256,) int8 table, got {s.dtype} and "
                         f"{table.dtype} {tuple(table.shape)}")
    s = _dense(s)
    out = torch.empty_like(s)
    _library().intnn_lookup8(s.data_ptr(), out.data_ptr(), s.numel(), table.data_ptr())
    return out


def _pooled_shape(x: torch.Tensor, kh: int, kw: int) -> tuple[int, int, int, int]:
    n, c, h, w = x.shape
    return n, c, -(-h // kh), -(-w // kw)


def _pool(x: torch.Tensor, kh: int, kw: int, track: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if x.dtype != torch.int8 or x.dim() != 4 or not (1 <= kh and 1 <= kw and kh * kw <= 256):
        raise ValueError(f"max_pool8: an (N, C, H, W) int8 tensor and a kernel of 1 to 256 cells, got {x.dtype} "
                         f"{tuple(x.shape)} and ({kh}, {kw})")
    n, c, h, w = x.shape
    if kh * w * c >= 2**31:
        raise ValueError(f"max_pool8: a window spans {kh * w * c} elements, more than int32 offsets hold")
    xn = x.permute(0, 2, 3, 1).contiguous()  # a view, no copy, for channels_last memory
    shape = _pooled_shape(x, kh, kw)
    values = torch.empty(shape, dtype=torch.int8, device=x.device, memory_format=torch.channels_last)
    positions = torch.empty(shape, dtype=torch.int64, device=x.device, memory_format=torch.channels_last) if track \
        else None
    _library().intnn_max_pool8(xn.data_ptr(), n, h, w, c, kh, kw, values.data_ptr(),
                               positions.data_ptr() if track else None)
    return values, positions


def _max_pool8(x: torch.Tensor, kh: int, kw: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _pool(x, kh, kw, True)


def _max_pool8_values(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    return _pool(x, kh, kw, False)[0]


def _im2col_shape(x: torch.Tensor, kh: int, kw: int, ph: int, pw: int) -> tuple[int, int]:
    n, c, h, w = x.shape
    return n * (h + 2 * ph - kh + 1) * (w + 2 * pw - kw + 1), kh * kw * c


def _im2col(x: torch.Tensor, kh: int, kw: int, ph: int, pw: int) -> torch.Tensor:
    n, c, h, w = x.shape
    if x.is_floating_point() or x.is_complex() or h + 2 * ph < kh or w + 2 * pw < kw or min(ph, pw) < 0:
        raise ValueError(f"im2col: an integer (N, C, H, W) tensor and a kernel within its padded size, got {x.dtype} "
                         f"{tuple(x.shape)}, kernel ({kh}, {kw}), padding ({ph}, {pw})")
    xn = x.permute(0, 2, 3, 1).contiguous()
    out = torch.empty(_im2col_shape(x, kh, kw, ph, pw), dtype=x.dtype, device=x.device)
    _library().intnn_im2col(xn.data_ptr(), n, h, w, c, x.element_size(), kh, kw, ph, pw, out.data_ptr())
    return out


def _nitro_relu_grad(g: torch.Tensor, s: torch.Tensor, k: int) -> torch.Tensor:
    if g.dtype != torch.int32 or s.dtype != torch.int8 or g.shape != s.shape or k < 1:
        raise ValueError(f"nitro_relu_grad: int32 g and int8 s of one shape and k >= 1, got {g.dtype} "
                         f"{tuple(g.shape)}, {s.dtype} {tuple(s.shape)}, k={k}")
    g, s = g.contiguous(), s.contiguous()
    out = torch.empty_like(g)
    _library().intnn_nitro_relu_grad(g.data_ptr(), s.data_ptr(), out.data_ptr(), g.numel(), k)
    return out


def _max_pool8_fake(x: torch.Tensor, kh: int, kw: int) -> tuple[torch.Tensor, torch.Tensor]:
    shape = _pooled_shape(x, kh, kw)
    return (x.new_empty(shape, dtype=torch.int8).contiguous(memory_format=torch.channels_last),
            x.new_empty(shape, dtype=torch.int64).contiguous(memory_format=torch.channels_last))


def _split16(x: torch.Tensor, dim: int, lines: int) -> torch.Tensor:
    if x.dtype != torch.int16 or x.dim() != 2 or not x.is_contiguous() or dim not in (0, 1) or \
            lines <= 2 * x.shape[dim]:
        raise ValueError(f"split16: a contiguous 2-D int16 tensor, dim 0 or 1 and more than twice its size there, "
                         f"got {x.dtype} {tuple(x.shape)} (contiguous: {x.is_contiguous()}), dim {dim}, {lines} lines")
    rows, cols = x.shape
    stack = torch.empty((lines, cols) if dim == 0 else (rows, lines), dtype=torch.int8, device=x.device)
    if dim == 1:  # limbs side by side in each row, then a column of ones and zeros
        _library().intnn_split16(x.data_ptr(), rows, cols, stack.data_ptr(), lines, cols, lines - 2 * cols)
    else:  # limb planes one under the other, then a row of ones and rows of zeros
        _library().intnn_split16(x.data_ptr(), rows, cols, stack.data_ptr(), cols, rows * cols, 0)
        stack[2 * rows].fill_(1)
        stack[2 * rows + 1:].zero_()
    return stack


def _count_sat8(s: torch.Tensor) -> torch.Tensor:
    if s.dtype != torch.int8:
        raise ValueError(f"count_sat8: an int8 tensor, got {s.dtype}")
    s = _dense(s)
    return torch.full((), _library().intnn_count_sat8(s.data_ptr(), s.numel()), dtype=torch.int64, device=s.device)


def combine_into(result: torch.Tensor, p: torch.Tensor, counts: tuple[int, int], row: torch.Tensor | None,
                 col: torch.Tensor | None) -> torch.Tensor:
    """Eager only: write the limb products' sum of :mod:`torch_intnn.ops.matmul` into ``result`` (M, N), int32 or
    int64 with contiguous rows: ``row[r] + col[c] + sum_ij 256**(i+j) p[i*M + r, j*N + c]`` over the
    ``counts = (na, nb)`` limbs, modulo ``result``'s width, from the int32 limb products ``p`` (rows contiguous);
    ``row`` (M,) and ``col`` (N,) are int64 or ``None``. One pass, where the PyTorch sum takes one per term."""
    m, n = result.shape
    if p.dtype != torch.int32 or p.stride(1) != 1 or result.stride(1) != 1 or result.stride(0) != n or \
            result.dtype not in (torch.int32, torch.int64):
        raise ValueError("combine_into: int32 products and an int32 or int64 result, both with contiguous rows")
    vectors = [v if v is None else v.reshape(-1).to(torch.int64).contiguous() for v in (row, col)]
    _library().intnn_combine(p.data_ptr(), p.stride(0), m, n, counts[0], counts[1],
                             *(None if v is None else v.data_ptr() for v in vectors), result.data_ptr(),
                             int(result.dtype == torch.int64))
    return result


# Low-level torch.library registration, as madd16_mm's: a few microseconds of dispatch a call.
_LIBRARY = torch.library.Library("torch_intnn", "FRAGMENT")
_LIBRARY.define("div_sat8(Tensor z, int d) -> Tensor")
_LIBRARY.define("lookup8(Tensor s, Tensor table) -> Tensor")
_LIBRARY.define("max_pool8(Tensor x, int kh, int kw) -> (Tensor, Tensor)")
_LIBRARY.define("max_pool8_values(Tensor x, int kh, int kw) -> Tensor")
_LIBRARY.define("im2col(Tensor x, int kh, int kw, int ph, int pw) -> Tensor")
_LIBRARY.define("nitro_relu_grad(Tensor g, Tensor s, int k) -> Tensor")
_LIBRARY.define("split16(Tensor x, int dim, int lines) -> Tensor")
_LIBRARY.define("count_sat8(Tensor s) -> Tensor")
_LIBRARY.impl("div_sat8", _div_sat8, "CPU")
_LIBRARY.impl("max_pool8_values", _max_pool8_values, "CPU")
_LIBRARY.impl("im2col", _im2col, "CPU")
_LIBRARY.impl("nitro_relu_grad", _nitro_relu_grad, "CPU")
_LIBRARY.impl("split16", _split16, "CPU")
_LIBRARY.impl("count_sat8", _count_sat8, "CPU")
_LIBRARY.impl("lookup8", _lookup8, "CPU")
_LIBRARY.impl("max_pool8", _max_pool8, "CPU")
torch.library.register_fake("torch_intnn::div_sat8", lambda z, d: torch.empty_like(z, dtype=torch.int8),
                            lib=_LIBRARY)
torch.library.register_fake("torch_intnn::lookup8", lambda s, table: torch.empty_like(s), lib=_LIBRARY)
torch.library.register_fake("torch_intnn::max_pool8", _max_pool8_fake, lib=_LIBRARY)
torch.library.register_fake("torch_intnn::max_pool8_values", lambda x, kh, kw: _max_pool8_fake(x, kh, kw)[0],
                            lib=_LIBRARY)
torch.library.register_fake("torch_intnn::im2col", lambda x, kh, kw, ph, pw: x.new_empty(
    _im2col_shape(x, kh, kw, ph, pw)), lib=_LIBRARY)
torch.library.register_fake("torch_intnn::nitro_relu_grad", lambda g, s, k: torch.empty_like(g.contiguous()),
                            lib=_LIBRARY)
torch.library.register_fake("torch_intnn::split16", lambda x, dim, lines: x.new_empty(
    (lines, x.shape[1]) if dim == 0 else (x.shape[0], lines), dtype=torch.int8), lib=_LIBRARY)
torch.library.register_fake("torch_intnn::count_sat8", lambda s: s.new_empty((), dtype=torch.int64), lib=_LIBRARY)

div_sat8 = torch.ops.torch_intnn.div_sat8
div_sat8.__doc__ = """``div_sat8(z, d)``: ``clamp(T(z / d), -127, 127)`` as int8, ``T`` truncation toward zero, for a
CPU int32 or int64 ``z`` and ``0 < d <= 33818640``; same shape and strides as a dense ``z``. Exact: the quotient's
magnitude is found by a 7-step binary search in uint32 (``fused.c``)."""
lookup8 = torch.ops.torch_intnn.lookup8
lookup8.__doc__ = """``lookup8(s, table)``: ``table[s + 128]`` for an int8 CPU tensor ``s`` and a (256,) int8 table, the
values of any int8 function tabulated once; same shape and strides as a dense ``s``."""
max_pool8 = torch.ops.torch_intnn.max_pool8
max_pool8.__doc__ = """``max_pool8(x, kh, kw)``: ``max_pool2d(x, (kh, kw), ceil_mode=True, return_positions=True)`` of
:mod:`torch_intnn.ops.pool` for an (N, C, H, W) int8 CPU tensor: the values and their NHWC offsets in ``x``
(int64), both (N, C, ceil(H / kh), ceil(W / kw)) in ``channels_last`` memory."""
max_pool8_values = torch.ops.torch_intnn.max_pool8_values
max_pool8_values.__doc__ = """``max_pool8_values(x, kh, kw)``: the values of :func:`max_pool8` alone."""
im2col = torch.ops.torch_intnn.im2col
im2col.__doc__ = """``im2col(x, kh, kw, ph, pw)``: :func:`torch_intnn.ops.conv.im2col` of an (N, C, H, W) integer CPU
tensor (one pass over NHWC memory, no padded copy): (N * H_out * W_out, kh * kw * C), rows n, i, j and columns
k, l, c."""
nitro_relu_grad = torch.ops.torch_intnn.nitro_relu_grad
nitro_relu_grad.__doc__ = """``nitro_relu_grad(g, s, k)``: NITRO-ReLU's backward for int32 ``g`` and its int8 input
``s``: 0 where ``s >= 127``, ``T(g / k)`` where ``s < 0``, else ``g`` (contiguous, ``g``'s shape)."""
split16 = torch.ops.torch_intnn.split16
split16.__doc__ = """``split16(x, dim, lines)``: the int8 limb stack of :mod:`torch_intnn.ops.limbs` for a contiguous
(R, C) int16 CPU tensor: its low limbs ``(x & 255) - 128`` and high limbs ``x >> 8`` (so ``x = 256 * hi + lo + 128``)
stacked along ``dim``, then a line of ones, then zero lines up to ``lines`` in all (> 2R for ``dim`` 0, > 2C for
``dim`` 1): a (lines, C) or (R, lines) tensor."""
count_sat8 = torch.ops.torch_intnn.count_sat8
count_sat8.__doc__ = """``count_sat8(s)``: how many values of the int8 CPU tensor ``s`` have ``|s| >= 127`` (0-d
int64)."""
