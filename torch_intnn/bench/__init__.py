"""Benchmarks that print figures (``intnn bench ...``); speed is measured here, never asserted in tests."""

from __future__ import annotations

import importlib
import sys

__all__ = ["main"]

_COMMANDS = {
    "kernels": "integer GEMM and conv throughput next to float32 (torch_intnn.bench.kernels)",
    "train": "training step of each integer recipe next to its float twin (torch_intnn.bench.train)",
}


def main(argv: list[str] | None = None) -> int:
    """``intnn bench <name> [options]``: runs ``torch_intnn.bench.<name>.main(options)``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in _COMMANDS:
        print("usage: intnn bench {" + ",".join(_COMMANDS) + "} [options]", file=sys.stderr)
        for name, what in _COMMANDS.items():
            print(f"  {name:10s} {what}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(f"torch_intnn.bench.{argv[0]}")
    return module.main(argv[1:])
