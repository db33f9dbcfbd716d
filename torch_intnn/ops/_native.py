"""Building and loading this package's C kernels (``madd16.c``, ``fused.c``, beside this file).

Each is compiled once per machine with the system C compiler into ``<tmp>/torch_intnn_<uid>/`` (a folder of the
user's own), keyed by the source, the compiler (path, size, time: no process is started on a cached load), the
flags and the CPU (``-march=native`` code runs only on the CPU it was built for), and loaded with ``ctypes``.
Where there is no compiler or the build fails, :func:`load` warns once and returns ``None``; the callers then
compute the same results with PyTorch operations.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

from torch_intnn.ops._cpu import cpu_flags, cpu_name

__all__ = ["compiler", "build", "load"]


def compiler() -> str | None:
    """The system C compiler (``cc``, ``gcc`` or ``clang`` on the ``PATH``), or ``None``."""
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def build(source: Path, flags: list[str], cc: str) -> Path:
    """The shared library of ``source``, compiled with ``cc`` and ``flags`` unless built before; raises
    ``RuntimeError`` with the compiler's message if the build fails."""
    real = os.path.realpath(cc)
    stat = os.stat(real)
    identity = f"{real} {stat.st_size} {stat.st_mtime_ns} {' '.join(flags)} {cpu_name()} {sorted(cpu_flags())}"
    key = hashlib.sha256(source.read_bytes() + identity.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"torch_intnn_{os.getuid()}"
    library = folder / f"{source.stem}-{key}.so"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # the user's own: nobody else's library gets loaded
    if folder.stat().st_uid != os.getuid():
        raise RuntimeError(f"{folder} belongs to another user")
    if library.exists():
        return library
    partial = folder / f"{source.stem}-{key}.{os.getpid()}.tmp"
    done = subprocess.run([cc, *flags, str(source), "-o", str(partial)], capture_output=True, text=True)
    if done.returncode:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"compiling {source.name} failed:\n{done.stderr.strip()}")
    os.replace(partial, library)  # atomic: a concurrent build of the same key writes the same bytes
    return library


def load(source: Path, flags: list[str], fallback: str) -> ctypes.CDLL | None:
    """``source`` built (:func:`build`) and loaded, or ``None`` with a ``RuntimeWarning`` that names what is
    unavailable and says ``fallback`` (what runs instead)."""
    cc = compiler()
    if cc is None:
        warnings.warn(f"torch_intnn: no C compiler found, so {source.name} is unavailable; {fallback}",
                      RuntimeWarning, stacklevel=3)
        return None
    try:
        return ctypes.CDLL(str(build(source, flags, cc)))
    except (OSError, RuntimeError) as error:
        warnings.warn(f"torch_intnn: {source.name} is unavailable ({error}); {fallback}", RuntimeWarning,
                      stacklevel=3)
        return None
