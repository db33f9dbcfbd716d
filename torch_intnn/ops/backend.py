"""Which exact GEMM runs an integer product: the :class:`Backend` choices, the CPU's int8 capability, and the
process-wide default of each device type.

Every backend returns the same tensor, bit for bit; they differ only in speed, which depends on the hardware.
``Backend.AUTO`` (the default of every kernel, module and rule argument) resolves per call, by
:func:`resolve_backend`, to the device's default (:func:`default_backend`; :func:`set_default_backend` changes
it), except that a small product (at most ``SMALL_PRODUCT`` multiply-adds) runs as ``PLAIN`` on CPU, where
splitting or converting its operands costs more than multiplying them (the DFA rule's ``e @ B`` and output-layer
gradients); the ``MADD16`` kernel needs neither, and beat ``PLAIN`` at every size measured (a 64 x 100 x 10
product: 111 against 166 us per call, 100 x 784 x 10: 234 against 1640 us; AVX2 EPYC, one thread). The
``intnn`` command reads the environment variable ``TORCH_INTNN_GEMM`` into :func:`set_default_backend`; library
code reads no environment variable.
"""

from __future__ import annotations

import enum

import torch

from torch_intnn.ops import madd16
from torch_intnn.ops._cpu import has_int8_dot

__all__ = ["Backend", "SMALL_PRODUCT", "default_backend", "resolve_backend", "set_default_backend"]

SMALL_PRODUCT = 1 << 18  # multiply-adds (M * K * N) up to which "auto" multiplies in int64 on CPU


class Backend(str, enum.Enum):
    """How :func:`~torch_intnn.ops.matmul.int_matmul` multiplies. A ``str`` enum: ``"int32"`` and
    ``Backend.INT32`` are the same argument."""

    def __new__(cls, value: str, doc: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.__doc__ = doc
        return member

    AUTO = "auto", "The device's default (default_backend), or PLAIN for a small product on CPU."
    INT_MM = "int_mm", ("Both operands split into int8 limbs, every limb product in one torch._int_mm (int8 x int8 "
                        "-> int32). Fast on CUDA and on CPUs with int8 dot products (AVX512-VNNI, AVX-VNNI, AMX); "
                        "a scalar loop on other CPUs.")
    MADD16 = "madd16", ("This package's C kernel on AVX2's vpmaddwd (int16 products added in pairs into int32 "
                        "lanes; ops/madd16.py), K in blocks whose sums fit int32; operands of up to 32 bits cut "
                        "into digits that fit int16, wider ones as INT32. For x86 CPUs with AVX2 but no int8 dot "
                        "products; CPU only, and only where the kernel builds (a C compiler).")
    INT32 = "int32", ("The values multiplied by an int32 torch.mm, K cut into chunks whose sums provably fit "
                      "int32, the chunks added in the result dtype (16 x 16-bit operands: the int8 limbs on int32 "
                      "GEMMs). For CPUs without int8 dot products; CPU only.")
    PLAIN = "plain", "An int64 torch.mm: obviously exact, slow for large products; CPU only."

    def __str__(self) -> str:
        return self.value


# The default of each device type. A compiled step reads it while tracing and guards on it, so a change
# recompiles rather than running a stale choice. The CPU's capability is read once, at import.
_DEFAULTS: dict[str, Backend] = {}
_MADD16_RUNS = madd16.available()  # builds the kernel once per machine (cached), so that tracing reads a constant
_DETECTED = {"cpu": Backend.INT_MM if has_int8_dot() else Backend.MADD16 if _MADD16_RUNS else Backend.INT32,
             "cuda": Backend.INT_MM}
_CPU_ONLY = (Backend.MADD16, Backend.INT32, Backend.PLAIN)
_BY_NAME = {b.value: b for b in Backend}


def default_backend(device: torch.device | str) -> Backend:
    """The backend ``AUTO`` means for a large product on ``device``: set by :func:`set_default_backend`, else
    ``INT_MM`` on CUDA and on CPUs with int8 dot products, ``MADD16`` on other x86 CPUs with AVX2 (where its
    kernel builds), ``INT32`` on other CPUs, ``PLAIN`` elsewhere."""
    kind = device.type if isinstance(device, torch.device) else torch.device(device).type
    return _DEFAULTS.get(kind) or _DETECTED.get(kind, Backend.PLAIN)


def set_default_backend(backend: Backend | str | None, device_type: str = "cpu") -> None:
    """Make ``backend`` what ``AUTO`` means on ``device_type`` (``None``: back to the detected choice).

    Raises ``ValueError`` for an unknown name, ``AUTO`` itself, a CPU-only backend for CUDA, or ``MADD16``
    where it does not run.
    """
    if backend is None:
        _DEFAULTS.pop(device_type, None)
        return
    chosen = _parse(backend)
    if chosen is Backend.AUTO:
        raise ValueError("set_default_backend: name a backend (int_mm, madd16, int32 or plain); None restores the "
                         "default")
    _check_runs(chosen, device_type, "set_default_backend")
    _DEFAULTS[device_type] = chosen


def _check_runs(chosen: Backend, device_type: str, what: str) -> None:
    """Raises ``ValueError`` if ``chosen`` cannot multiply on ``device_type`` here."""
    if device_type == "cuda" and chosen in _CPU_ONLY:
        raise ValueError(f"{what}: backend {chosen.value!r} runs on CPU only (CUDA has no int32 or int64 matmul, "
                         "and madd16 is an x86 kernel)")
    if chosen is Backend.MADD16 and not _MADD16_RUNS:
        raise ValueError(f"{what}: backend 'madd16' needs an x86 CPU with AVX2 and a C compiler to build its kernel")


def _parse(backend: Backend | str) -> Backend:
    """The member named ``backend`` (a dict look-up rather than ``Backend(...)``, which Dynamo traces through)."""
    chosen = backend if isinstance(backend, Backend) else _BY_NAME.get(backend)
    if chosen is None:
        names = ", ".join(repr(name) for name in _BY_NAME)
        raise ValueError(f"unknown backend {backend!r}; use one of {names}")
    return chosen


def resolve_backend(backend: Backend | str, device: torch.device, work: int) -> Backend:
    """The backend that multiplies a product of ``work`` multiply-adds on ``device`` (module docstring).

    Raises ``ValueError`` for an unknown name or a CPU-only backend asked for on CUDA.
    """
    chosen = _parse(backend)
    if chosen is Backend.AUTO:
        default = default_backend(device)
        if device.type == "cpu" and work <= SMALL_PRODUCT and default is not Backend.MADD16:
            return Backend.PLAIN
        return default
    _check_runs(chosen, device.type, "int_matmul")
    return chosen
