"""The ``intnn`` command (also ``python -m torch_intnn``).

    intnn fit --config recipes/mnist_pocketnn_dfa.yaml      train, then test final and best-on-validation weights
    intnn test --config RECIPE --ckpt_path CKPT             evaluate a checkpoint on the test set
    intnn compare RECIPE [RECIPE ...] [--seeds S ...] [--out DIR] [-- FIT ARGS]
                                                            train integer and float runs, write a table and a plot
    intnn bench kernels [--json]                            integer kernel throughput next to float32
    intnn models                                            list registered models
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    if command == "bench":
        from torch_intnn.bench import main as bench_main

        sys.exit(bench_main(argv[1:]))
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
