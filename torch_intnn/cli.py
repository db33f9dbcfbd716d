"""The ``intnn`` command (also ``python -m torch_intnn``); ``intnn --help`` prints :data:`USAGE`."""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["GEMM_ENV", "USAGE", "main"]

USAGE = """\
usage: intnn COMMAND [ARGS]   (intnn COMMAND --help for a command's options)

Integer-only training of neural networks in PyTorch and Lightning.

commands:
  fit --config RECIPE        train a recipe (a file, or a name from `intnn recipes`), then test the final and the
                             best-on-validation weights; `--ckpt_path RUN/checkpoints/last.ckpt` resumes a run
  validate --config RECIPE --ckpt_path CKPT
                             evaluate a checkpoint on the validation split
  test --config RECIPE --ckpt_path CKPT
                             evaluate a checkpoint on the test set
  predict --config RECIPE --ckpt_path CKPT [--data.predict_split test|val|train] [--predictions.path FILE]
                             write a checkpoint's predictions (index,label,prediction) to a CSV file
  compare RECIPE [RECIPE ...] [--seeds S ...] [--out DIR] [--reuse] [-- FIT ARGS]
                             train integer and float runs per seed, write a table, a plot and one TensorBoard folder
  bench kernels | train      integer kernel / training-step throughput next to float32, the CPU named
  export CKPT_OR_RUN --out DIR [--verify]
                             write a trained integer model as dependency-free C99 (no floating point), with sizes
  models                     list the registered models
  recipes                    list the recipes (usable by name with --config)

environment: TORCH_INTNN_DATA (data root; or --data.root), TORCH_INTNN_GEMM (int_mm | madd16 | int32 | plain | auto)
"""

GEMM_ENV = "TORCH_INTNN_GEMM"  # the one environment variable the command reads besides the data root's

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the kernel.

    A training step allocates and frees the same tensors of several MiB each time (im2col columns, conv outputs).
    By default glibc serves such blocks with fresh ``mmap`` pages and unmaps them on ``free``, so every step
    pays for page faults and page zeroing in the kernel: a 100-step CIFAR-10 small-CNN fit plus its two test
    passes took 24 s of system time and 9.4 million page faults here, 7 s and 2.6 million with this setting.
    Raises the mmap threshold to glibc's maximum (32 MiB) and stops trimming the heap. The application entry
    point calls it (``import torch_intnn`` does not); returns False where there is no glibc (nothing changes).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1
    done &= mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1) == 1
    done &= mallopt(_M_TOP_PAD, 256 << 20) == 1
    return bool(done)


def gemm_from_environment() -> None:
    """``TORCH_INTNN_GEMM=int_mm|madd16|int32|plain|auto``: the CPU's GEMM backend for this command
    (:func:`~torch_intnn.ops.set_default_backend`; ``auto`` or unset: the one detected for this CPU)."""
    from torch_intnn.ops import set_default_backend

    name = os.environ.get(GEMM_ENV) or "auto"
    try:
        set_default_backend(None if name == "auto" else name)
    except ValueError as err:
        raise SystemExit(f"intnn: {GEMM_ENV}={name!r}: {err}") from None


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    keep_freed_memory()
    gemm_from_environment()
    command = argv[0] if argv else ""
    if command in ("", "-h", "--help", "help"):
        print(USAGE, end="")
        return
    if command == "recipes":
        from torch_intnn.recipes import list_recipes, summary

        for name, path in list_recipes().items():
            print(f"{name:34s} {summary(path)}")
        return
    if command == "bench":
        from torch_intnn.bench import main as bench_main

        sys.exit(bench_main(argv[1:]))
    if command == "export":
        from torch_intnn.export import main as export_main

        sys.exit(export_main(argv[1:]))
    if command == "compare":
        from torch_intnn.lightning.compare import main as compare_main

        sys.exit(compare_main(argv[1:]))
    if command == "models":
        from torch_intnn.models import list_models, model_info

        for name in list_models():
            info = model_info(name)
            print(f"{name:28s} " + " ".join(f"{k}={v}" for k, v in sorted(info.items())))
        return
    from torch_intnn.lightning.cli import run

    run(argv)
