"""The ``madd16`` GEMM: an exact integer matrix product on AVX2's ``vpmaddwd``, for operands that fit int16.

On x86 CPUs without int8 dot products, PyTorch's integer GEMMs are slow: ``torch._int_mm`` is a scalar loop and
an int32 ``torch.mm`` reaches 6 to 9 GOPS on the products of a CNN step (AVX2 AMD EPYC, one thread), a quarter
of float32. ``vpmaddwd`` multiplies 16 pairs of int16 and adds neighbouring products into 8 int32 lanes, twice
float32 FMA's multiply-adds per instruction. ``madd16.c`` (beside this file) is a blocked GEMM on it; its
docstring says how it packs the operands and why the result is exact. It is compiled once per machine with the
system C compiler into ``<tmp>/torch_intnn_<user>/`` (keyed by the source's and the compiler's hash), loaded
with ``ctypes`` and called through the custom op ``torch_intnn::madd16_mm``, which ``torch.compile`` keeps
in its graph as an opaque call.

:func:`available` says whether this CPU has AVX2 and the kernel builds and loads (the answer is cached).
"""

from __future__ import annotations

import ctypes
import functools
import getpass
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

from torch_intnn.ops._cpu import cpu_flags

__all__ = ["available", "madd16_mm", "MAX_BLOCK"]

MAX_BLOCK = 512  # the kernel's longest K block (madd16.c, KC_MAX)
_SOURCE = Path(__file__).with_name("madd16.c")
_FLAGS = ["-O3", "-mavx2", "-std=c11", "-shared", "-fPIC", "-pthread"]
_TYPES = {torch.int8: 1, torch.uint8: 2, torch.int16: 3, torch.int32: 4}
_SMALL = 1 << 22  # multiply-adds below which one thread multiplies (starting a thread costs more)


def _compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _build(compiler: str) -> Path:
    """The kernel's shared library, compiled unless this source and compiler built it before."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(_SOURCE.read_bytes() + version.encode() + " ".join(_FLAGS).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"torch_intnn_{getpass.getuser()}"
    library = folder / f"madd16-{key}.so"
    if library.exists():
        return library
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"madd16-{key}.{os.getpid()}.tmp"
    done = subprocess.run([compiler, *_FLAGS, str(_SOURCE), "-o", str(partial)], capture_output=True, text=True)
    if done.returncode:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"compiling {_SOURCE.name} failed:\n{done.stderr.strip()}")
    os.replace(partial, library)  # atomic: a concurrent build of the same key writes the same bytes
    return library


@functools.cache
def _kernel():
    """The C entry point, or None where this CPU lacks AVX2 or the kernel cannot be built (warned once)."""
    if platform.machine() not in ("x86_64", "AMD64") or "avx2" not in cpu_flags():
        return None
    compiler = _compiler()
    if compiler is None:
        warnings.warn("torch_intnn: no C compiler found, so the madd16 GEMM is unavailable; integer products "
                      "run on the slower int32 backend", RuntimeWarning, stacklevel=2)
        return None
    try:
        function = ctypes.CDLL(str(_build(compiler))).intnn_madd16_gemm
    except (OSError, RuntimeError) as error:
        warnings.warn(f"torch_intnn: the madd16 GEMM is unavailable ({error}); integer products run on the "
                      "slower int32 backend", RuntimeWarning, stacklevel=2)
        return None
    i64, i32, ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    function.restype = i32
    function.argtypes = [ptr, i32, i64, i64, ptr, i32, i64, i64, ptr, i32, i64, i64, i64, i64, i32]
    return function


def available() -> bool:
    """Whether the ``madd16`` GEMM runs here: an x86 CPU with AVX2, and the kernel built and loaded."""
    return _kernel() is not None


def _madd16_mm(a: torch.Tensor, b: torch.Tensor, block: int, wide: bool) -> torch.Tensor:
    (m, k), n = a.shape, b.shape[1]
    kernel = _kernel()
    if kernel is None:
        raise RuntimeError("madd16_mm: this CPU has no AVX2, or the kernel could not be built (see the warning)")
    if a.device.type != "cpu" or b.device.type != "cpu":
        raise ValueError(f"madd16_mm: CPU tensors only, got {a.device} and {b.device}")
    if a.dtype not in _TYPES or b.dtype not in _TYPES:
        raise ValueError(f"madd16_mm: operands must be int8, uint8, int16 or int32, got {a.dtype} and {b.dtype}")
    if block < 2 or block % 2 or block > MAX_BLOCK:
        raise ValueError(f"madd16_mm: block must be even and in 2..{MAX_BLOCK}, got {block}")
    if a.dim() != 2 or b.dim() != 2 or b.shape[0] != k:
        raise ValueError(f"madd16_mm: shapes {tuple(a.shape)} and {tuple(b.shape)} do not multiply")
    out = torch.empty((m, n), dtype=torch.int64 if wide else torch.int32, device=a.device)
    if m and n:
        if not k:
            return out.zero_()
        threads = 1 if m * k * n < _SMALL else torch.get_num_threads()
        status = kernel(a.data_ptr(), _TYPES[a.dtype], a.stride(0), a.stride(1),
                        b.data_ptr(), _TYPES[b.dtype], b.stride(0), b.stride(1),
                        out.data_ptr(), int(wide), m, k, n, block, threads)
        if status:
            raise MemoryError("madd16_mm: the kernel could not allocate its packing buffers or start its threads")
    return out


def _fake(a: torch.Tensor, b: torch.Tensor, block: int, wide: bool) -> torch.Tensor:
    return a.new_empty((a.shape[0], b.shape[1]), dtype=torch.int64 if wide else torch.int32)


# Registered through torch.library's low-level API (a CPU kernel and a fake one): a call costs a few
# microseconds of dispatch where torch.library.custom_op's wrapper costs about 50.
_LIBRARY = torch.library.Library("torch_intnn", "DEF")
_LIBRARY.define("madd16_mm(Tensor a, Tensor b, int block, bool wide) -> Tensor")
_LIBRARY.impl("madd16_mm", _madd16_mm, "CPU")
torch.library.register_fake("torch_intnn::madd16_mm", _fake, lib=_LIBRARY)
madd16_mm = torch.ops.torch_intnn.madd16_mm
madd16_mm.__doc__ = """``madd16_mm(a, b, block, wide)``: ``a @ b`` exactly, for (M, K) and (K, N) CPU tensors of int8, uint8,
int16 or int32 whose values fit int16.

``block`` (even, 2 to ``MAX_BLOCK``) is how many terms each int32 partial sum holds: the caller proves that
``block`` products fit int32 (so at least two do). The blocks are added in int64 if ``wide``, else in int32,
which the caller proves holds the whole sum. Any strides; returns a contiguous (M, N) int64 or int32 tensor."""
