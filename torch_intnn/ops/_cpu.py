"""What this CPU offers the integer kernels, read once from ``/proc/cpuinfo`` (Linux; elsewhere nothing is known)."""

from __future__ import annotations

import functools
import platform

__all__ = ["INT8_DOT_FLAGS", "cpu_name", "cpu_flags", "is_x86", "int8_dot_flags", "has_int8_dot"]

INT8_DOT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")  # x86 int8 dot-product instructions, fastest first


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo``; empty where the file is missing or unreadable."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def is_x86() -> bool:
    """Whether this is an x86 machine (64 or 32 bits)."""
    return platform.machine() in ("x86_64", "AMD64", "i386", "i686")


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of ``/proc/cpuinfo``; empty where unknown."""
    return frozenset(_cpuinfo().get("flags", "").split())


def int8_dot_flags() -> list[str]:
    """The int8 dot-product instruction sets this CPU reports, fastest first; empty if none or unknown."""
    flags = cpu_flags()
    return [f for f in INT8_DOT_FLAGS if f in flags]


def has_int8_dot() -> bool:
    """Whether ``torch._int_mm`` runs on int8 dot-product instructions here. False where unknown: the ``int32``
    backend is fast enough everywhere, while ``_int_mm`` without those instructions is a scalar loop."""
    return bool(int8_dot_flags())
