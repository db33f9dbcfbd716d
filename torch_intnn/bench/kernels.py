"""``intnn bench kernels``: integer GEMM and conv throughput next to float32, measured in the same run.

    python -m torch_intnn.bench.kernels [--json] [--repeats 15] [--threads N] [--clock wall|cpu] [--compile]
                                        [--only SUBSTRING]

For each shape (the layers of the registered MLPs and VGG-style nets) every path is timed ``--repeats`` times,
round-robin, so that a change of machine load hits all paths alike; the figure is the median. Throughput counts
``2 * M * K * N`` operations (multiply and add). ``vs f32`` divides the fastest float32 path's time by the
path's time (> 1: faster than float32). Every integer result is first checked against int64 arithmetic with
``torch.equal`` (the ``exact`` column). A progress line goes to stderr.

Integer paths (see :mod:`torch_intnn.ops.matmul`): ``int8 x int8`` is one ``_int_mm``; ``int8 x int16`` splits
the int16 weight into two int8 limbs (one ``_int_mm`` twice as wide, recombined in int64); ``cached split`` is
the same with the weight split once, as ``IntLinear`` / ``IntConv2d`` do while the weight is unchanged;
``compiled`` (with ``--compile``) is the ``torch.compile``'d (Inductor) function, which fuses the split and the
recombination around ``_int_mm`` (with torch 2.14 on CPU it beats the eager split-each-call path on some
shapes and loses on others); ``int32 torch.mm`` is PyTorch's own integer GEMM, for reference. The integer
paths run on :func:`~torch_intnn.ops.backend.default_backend` (``_int_mm`` on CPUs with int8 dot products,
the ``madd16`` AVX2 kernel on other x86 CPUs with AVX2, chunked int32 GEMMs elsewhere; ``TORCH_INTNN_GEMM``
chooses), which the header names with the CPU's int8 dot-product instructions.

The ``min ms`` columns give each path's fastest run and its ratio to the fastest float32 run. On a machine
shared with other jobs, where a preemption lands in a random run, they and ``--clock cpu`` (process CPU time
instead of wall time; with ``--threads 1``) give the steadier figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from torch_intnn.ops import conv2d, int_matmul, split_conv_weight, split_rhs
from torch_intnn.ops._cpu import cpu_name, int8_dot_flags
from torch_intnn.ops.backend import default_backend

__all__ = ["main", "run", "SHAPES"]


@dataclass(frozen=True)
class Shape:
    """A GEMM ``(M, K) x (K, N)``, or the convolution whose im2col GEMM it is (``conv`` = (batch, C, F, H, W))."""

    name: str
    m: int
    k: int
    n: int
    conv: tuple[int, int, int, int, int] | None = None

    @property
    def ops(self) -> int:
        return 2 * self.m * self.k * self.n


SHAPES = [
    Shape("linear 256x784x1024", 256, 784, 1024),
    Shape("linear 256x1024x1024", 256, 1024, 1024),
    Shape("linear 64x4608x512", 64, 4608, 512),
    # 3x3 conv, padding 1, 64 -> 128 channels on 16x16 maps, batch 64: im2col GEMM (64*16*16) x 576 x 128.
    Shape("conv3x3 64->128 16x16 b64", 64 * 16 * 16, 64 * 9, 128, conv=(64, 64, 128, 16, 16)),
]


@dataclass
class Path:
    """One way to compute a shape's product; ``ref`` names the int64 reference an integer path must equal."""

    name: str
    fn: Callable[[], torch.Tensor]
    ref: str | None = None  # None: a float32 path
    times: list[float] = field(default_factory=list)
    exact: bool | None = None

    @property
    def kind(self) -> str:
        return "float32" if self.ref is None else "integer"


def _randint(lo: int, hi: int, shape: tuple[int, ...], dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    return torch.randint(lo, hi + 1, shape, generator=g, dtype=torch.int64).to(dtype)


def _compiled(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    return torch.compile(fn, fullgraph=True, dynamic=False)


def _linear_paths(s: Shape, compile_: bool, g: torch.Generator) -> tuple[list[Path], dict[str, torch.Tensor]]:
    """Activations (M, K) times weights stored as ``nn.Linear`` does, (N, K)."""
    a_f, w_f = torch.randn(s.m, s.k, generator=g), torch.randn(s.n, s.k, generator=g)
    b_f = w_f.T.contiguous()
    a8 = _randint(-128, 127, (s.m, s.k), torch.int8, g)
    a16 = _randint(-32768, 32767, (s.m, s.k), torch.int16, g)
    w8 = _randint(-128, 127, (s.n, s.k), torch.int8, g)
    w16 = _randint(-32768, 32767, (s.n, s.k), torch.int32, g)  # an int32 weight buffer holding int16 values
    w16_limbs = split_rhs(w16.T, 16)
    a32, w32 = a8.to(torch.int32), w16.clone()

    paths = [
        Path("float32 torch.mm (K,N)", lambda: torch.mm(a_f, b_f)),
        Path("float32 F.linear", lambda: F.linear(a_f, w_f)),
        Path("int8 x int8", lambda: int_matmul(a8, w8.T), "8x8"),
        Path("int8 x int16", lambda: int_matmul(a8, w16.T, b_bits=16), "8x16"),
        Path("int8 x int16 cached split", lambda: int_matmul(a8, w16_limbs), "8x16"),
        Path("int16 x int16", lambda: int_matmul(a16, w16.T, b_bits=16), "16x16"),
        Path("int32 torch.mm", lambda: torch.mm(a32, w32.T), "8x16"),
    ]
    if compile_:
        paths += [
            Path("int8 x int16 compiled", _compiled(lambda: int_matmul(a8, w16.T, b_bits=16)), "8x16"),
            Path("int16 x int16 compiled", _compiled(lambda: int_matmul(a16, w16.T, b_bits=16)), "16x16"),
        ]
    refs = {"8x8": a8.long() @ w8.long().T, "8x16": a8.long() @ w16.long().T, "16x16": a16.long() @ w16.long().T}
    return paths, refs


def _conv_paths(s: Shape, compile_: bool, g: torch.Generator) -> tuple[list[Path], dict[str, torch.Tensor]]:
    """A 3x3 convolution, padding 1; integer inputs in ``channels_last`` memory, as integer layers emit them."""
    batch, c, f, h, w = s.conv
    x_f, w_f = torch.randn(batch, c, h, w, generator=g), torch.randn(f, c, 3, 3, generator=g)
    x_f_cl = x_f.contiguous(memory_format=torch.channels_last)
    x8 = _randint(-128, 127, (batch, c, h, w), torch.int8, g).contiguous(memory_format=torch.channels_last)
    w8 = _randint(-128, 127, (f, c, 3, 3), torch.int32, g)
    w16 = _randint(-32768, 32767, (f, c, 3, 3), torch.int32, g)
    w16_split = split_conv_weight(w16, 16)

    paths = [
        Path("float32 F.conv2d NCHW", lambda: F.conv2d(x_f, w_f, padding=1)),
        Path("float32 F.conv2d channels_last", lambda: F.conv2d(x_f_cl, w_f, padding=1)),
        Path("int8 x int8 conv2d", lambda: conv2d(x8, w8, 1, w_bits=8), "8x8"),
        Path("int8 x int16 conv2d", lambda: conv2d(x8, w16, 1, w_bits=16), "8x16"),
        Path("int8 x int16 conv2d cached split", lambda: conv2d(x8, w16_split, 1), "8x16"),
    ]
    if compile_:
        paths.append(Path("int8 x int16 conv2d compiled", _compiled(lambda: conv2d(x8, w16, 1, w_bits=16)), "8x16"))
    # float64 sums of these magnitudes (< 2**33) are exact: an independent int64 reference.
    refs = {key: F.conv2d(x8.double(), wt.double(), padding=1).to(torch.int64) for key, wt in (("8x8", w8),
                                                                                              ("8x16", w16))}
    return paths, refs


def _check_exact(paths: list[Path], refs: dict[str, torch.Tensor]) -> None:
    for p in paths:
        if p.ref is not None:
            p.exact = torch.equal(p.fn().to(torch.int64), refs[p.ref])


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _time(paths: list[Path], repeats: int, clock: Callable[[], float], progress: Callable[[str], None]) -> None:
    for p in paths:  # warm-up (and compilation)
        p.fn()
        p.fn()
    for r in range(repeats):
        progress(f"repeat {r + 1}/{repeats}")
        for p in paths:
            t0 = clock()
            p.fn()
            p.times.append(clock() - t0)


def run(
    repeats: int = 15,
    threads: int | None = None,
    compile_: bool = False,
    only: str | None = None,
    clock: str = "wall",
    progress: Callable[[str], None] = lambda msg: None,
) -> dict:
    """Benchmark every shape; returns the report as a JSON-ready dict.

    ``clock="cpu"`` times with the process's CPU time instead of the wall clock: time spent descheduled by
    other jobs does not count, which steadies the figures on a shared machine. It counts every thread's CPU
    time, so use it with ``threads=1``.
    """
    if threads:
        torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    report = {
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "int8_dot": int8_dot_flags(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "gemm_backend": default_backend("cpu").value,
        "repeats": repeats,
        "clock": clock,
        "load_average_before": os.getloadavg()[0],
        "shapes": [],
    }
    for s in SHAPES:
        if only and only not in s.name:
            continue
        progress(f"{s.name}: preparing{' and compiling' if compile_ else ''}")
        paths, refs = _conv_paths(s, compile_, g) if s.conv else _linear_paths(s, compile_, g)
        _check_exact(paths, refs)
        del refs
        _time(paths, repeats, CLOCKS[clock], lambda msg: progress(f"{s.name}: {msg}"))
        best_float = min(statistics.median(p.times) for p in paths if p.kind == "float32")
        best_float_min = min(min(p.times) for p in paths if p.kind == "float32")
        rows = []
        for p in paths:
            sec = statistics.median(p.times)
            rows.append(dict(path=p.name, kind=p.kind, ms=sec * 1e3, min_ms=min(p.times) * 1e3,
                             gops=s.ops / sec / 1e9, vs_float32=best_float / sec,
                             vs_float32_min=best_float_min / min(p.times), exact=p.exact))
        report["shapes"].append(dict(asdict(s), ops=s.ops, results=rows))
    report["load_average_after"] = os.getloadavg()[0]
    return report


def format_table(report: dict) -> str:
    lines = [
        f"{report['cpu']} ({report['cores']} cores; int8 dot products: {', '.join(report['int8_dot']) or 'none'}), "
        f"torch {report['torch']}, {report['threads']} thread(s), integer GEMM backend {report['gemm_backend']}, "
        f"medians of {report['repeats']} interleaved runs ({report['clock']} clock), "
        f"load average {report['load_average_before']:.2f} before / {report['load_average_after']:.2f} after",
        f"{'shape':28s} {'path':34s} {'ms':>9s} {'GOP/s':>8s} {'vs f32':>7s} {'min ms':>9s} {'(vs f32)':>8s}  exact",
    ]
    for s in report["shapes"]:
        for i, r in enumerate(s["results"]):
            exact = "" if r["exact"] is None else ("yes" if r["exact"] else "NO")
            lines.append(f"{s['name'] if i == 0 else '':28s} {r['path']:34s} {r['ms']:9.3f} {r['gops']:8.1f} "
                         f"{r['vs_float32']:6.2f}x {r['min_ms']:9.3f} {r['vs_float32_min']:7.2f}x  {exact}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="intnn bench kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per path (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd (Inductor) paths")
    parser.add_argument("--only", default=None, help="only shapes whose name contains this substring")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall clock, or the process's CPU time (steadier on a shared machine; use --threads 1)")
    args = parser.parse_args(argv)

    tty = sys.stderr.isatty()

    def progress(msg: str) -> None:  # one self-erasing line on a terminal, else only the per-shape lines
        if tty:
            print(f"\r\033[K{msg}", end="", file=sys.stderr, flush=True)
        elif "repeat" not in msg:
            print(msg, file=sys.stderr, flush=True)

    report = run(args.repeats, args.threads, args.compile, args.only, args.clock, progress)
    if tty:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0 if all(r["exact"] is not False for s in report["shapes"] for r in s["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
