"""Export a trained integer model to dependency-free C99 for devices without a floating-point unit.

    from torch_intnn.export import export_c
    report = export_c(model, "out/")       # writes out/model.h, out/model.c; returns sizes and MACs

The generated library has one entry point, ``int model_predict(const uint8_t *image, int32_t *scores)``: the
raw image (C, H, W, row-major, as a torchvision tensor) in, the integer class scores out (``MODEL_CLASSES``
of them), the predicted class returned (the first maximum, as ``argmax``). The weights are ``const`` arrays
of the narrowest integer type that holds them; activations live in static int32 buffers (no allocation, no
recursion, not reentrant); no ``float``, no ``double``, no libm, no header beyond ``<stdint.h>``.

The arithmetic is the PyTorch modules' (eval mode), written out layer by layer:

* products summed in ``int64_t`` (exact; ``int_matmul`` equals int64 arithmetic bit for bit);
* ``T(a / b)`` is C99's ``/`` (truncation toward zero); floor shifts are written so that they do not rely on
  ``>>`` of a negative number (implementation-defined in C99); ``shift_round(a, s) = floor(a / 2**s)`` plus bit
  ``s - 1`` of ``a``; saturation clamps to the symmetric ranges of :func:`torch_intnn.ops.int_range`;
* tables (pocketTanh, the PocketNN input map) are copied from the modules' buffers.

Supported: the PocketNN MLPs (:class:`~torch_intnn.models.pocketnn.PocketMLP`, both variants, with
``PocketTanh`` / ``PocketSigmoid`` / ``PocketRescale`` activations) and the NITRO-D networks
(:class:`~torch_intnn.models.nitro.NitroNet`: standardisation, linear and 3x3 conv blocks, max pools, flatten,
dropout (the identity in eval mode), the output layer, and the ensemble of heads). Anything else is refused
with :class:`UnsupportedLayer`, naming the layer.
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = ["export_c", "UnsupportedLayer", "ExportReport"]


class UnsupportedLayer(TypeError):
    """The exporter has no C for this layer (its name and type are in the message)."""


@dataclass
class ExportReport:
    """What a device needs for the exported model: ``flash_bytes`` (weights and tables; the code comes on top,
    see the compiled object's ``.text``), ``ram_bytes`` (the static activation buffers), ``macs`` (integer
    multiply-accumulates per inference), and the files written."""

    flash_bytes: int = 0
    ram_bytes: int = 0
    macs: int = 0
    classes: int = 0
    input_shape: tuple[int, int, int] = (0, 0, 0)
    files: list[str] = field(default_factory=list)


_RUNTIME = r"""
/* floor(a / 2**s) without shifting a negative number (implementation-defined in C99) */
static inline int64_t floor_shift(int64_t a, int s) { return a >= 0 ? a >> s : ~((~a) >> s); }
static inline int64_t shift_round(int64_t a, int s) { return s ? floor_shift(a, s) + (floor_shift(a, s - 1) & 1) : a; }
static inline int64_t clamp(int64_t a, int64_t lo, int64_t hi) { return a < lo ? lo : a > hi ? hi : a; }
"""


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _ctype(t: torch.Tensor) -> str:
    lo, hi = (int(t.min()), int(t.max())) if t.numel() else (0, 0)
    for name, bits in (("int8_t", 8), ("int16_t", 16), ("int32_t", 32)):
        if -(1 << (bits - 1)) <= lo and hi < (1 << (bits - 1)):
            return name
    raise UnsupportedLayer(f"values {lo}..{hi} do not fit int32")


class _Emitter:
    """Collects the constant arrays and the statements of ``model_predict``; tracks buffer sizes and MACs."""

    def __init__(self) -> None:
        self.arrays: list[str] = []
        self.body: list[str] = []
        self.flash = self.macs = 0
        self.buffer = 0  # the largest activation, in elements
        self.scratch = 0  # the largest head input (ensemble)
        self.count = 0
        self.nitro = False  # whether the NITRO-D helpers are needed

    def array(self, stem: str, t: torch.Tensor) -> str:
        name = f"{stem}{self.count}"
        self.count += 1
        t = t.detach().reshape(-1).to(torch.int64)
        ctype = _ctype(t)
        values = ",".join(str(int(v)) for v in t.tolist()) or "0"
        self.arrays.append(f"static const {ctype} {name}[{max(t.numel(), 1)}] = {{{values}}};")
        self.flash += t.numel() * int(ctype[3:-2]) // 8
        return name

    def emit(self, code: str) -> None:
        self.body.append(code)

    def size(self, n: int) -> None:
        self.buffer = max(self.buffer, n)


def _pocket_activation(e: _Emitter, act: nn.Module, z: str, where: str) -> str:
    from torch_intnn.nn.activations import PocketRescale, _TableActivation
    from torch_intnn.ops.rounding import int_range

    if isinstance(act, _TableActivation):  # u = trunc(z / divisor) or round(z / 2**shift), then the table
        table = e.array("ytab", act.y_table)
        u = f"shift_round({z}, {act.shift})" if act.shift is not None else f"({z}) / {act.divisor}"
        return f"{table}[clamp({u}, {act.U_MIN}, {act.U_MAX}) - ({act.U_MIN})]"
    if isinstance(act, PocketRescale):
        lo, hi = int_range(act.bits)
        u = f"shift_round({z}, {act.shift})" if act.shift is not None else f"({z}) / 256"
        return f"clamp({u}, {lo}, {hi})"
    raise UnsupportedLayer(f"{where}: no C export for {type(act).__name__}")


def _linear(e: _Emitter, weight: torch.Tensor, bias: torch.Tensor | None, src: str, dst: str, value: str) -> None:
    """``dst[j] = value(z_j)`` with ``z_j = bias[j] + sum_i w[j][i] * src[i]``; ``value`` uses ``z``."""
    n_out, n_in = weight.shape
    w = e.array("w", weight)
    b = e.array("b", bias) if bias is not None else None
    e.macs += n_out * n_in
    e.size(n_out)
    e.emit(f"""  for (int j = 0; j < {n_out}; j++) {{
    int64_t z = {f'{b}[j]' if b else '0'};
    for (int i = 0; i < {n_in}; i++) z += (int64_t){w}[j * {n_in} + i] * {src}[i];
    {dst}[j] = (int32_t)({value});
  }}""")


def _pocket(e: _Emitter, model) -> tuple[str, int]:
    n = model.sizes[0]
    e.size(n)
    if model.input.mode == "raw":
        e.emit(f"  for (int i = 0; i < {n}; i++) a[i] = image[i];")
    else:
        table = e.array("intab", model.input.table)
        e.emit(f"  for (int i = 0; i < {n}; i++) a[i] = {table}[image[i]];")
    src, dst = "a", "b"
    for k, (lin, act) in enumerate(zip(model.linears, model.acts)):
        value = _pocket_activation(e, act, "z", f"acts.{k}")
        _linear(e, lin.weight, lin.bias, src, dst, value)
        src, dst = dst, src
    return src, model.sizes[-1]


def _nitro_standardize(e: _Emitter, std, shape: tuple[int, int, int]) -> None:
    c, h, w = shape
    mean = e.array("mean", std.mean)
    mad = e.array("mad", std.mad)
    e.size(c * h * w)
    e.emit(f"""  for (int c = 0; c < {c}; c++)
    for (int i = 0; i < {h * w}; i++) {{
      int64_t centred = (int64_t)image[c * {h * w} + i] - ({mean}[c] + 128);
      a[c * {h * w} + i] = (int32_t)clamp(({std.gain} * centred) / {mad}[c], -127, 127);
    }}""")


def _nitro_value(block, z: str) -> str:
    """NitroScaling then NitroReLU on ``z``."""
    s = f"clamp(({z}) / {block.scaling.scale_factor}, -127, 127)"
    k, shift = block.act.k, block.act.shift
    return f"nitro_relu({s}, {k}, {shift})"


_NITRO_RELU = r"""
static inline int64_t nitro_relu(int64_t s, int k, int shift) { return clamp(s, 0, 127) + clamp(s, -127, 0) / k - shift; }
"""


def _max_pool(e: _Emitter, src: str, dst: str, shape: tuple[int, int, int], kernel: tuple[int, int],
              ceil: bool) -> tuple[int, int, int]:
    c, h, w = shape
    kh, kw = kernel
    ho, wo = (-(-h // kh), -(-w // kw)) if ceil else (h // kh, w // kw)
    e.size(c * ho * wo)
    e.emit(f"""  for (int c = 0; c < {c}; c++)
    for (int i = 0; i < {ho}; i++)
      for (int j = 0; j < {wo}; j++) {{
        int32_t m = INT32_MIN;
        for (int u = i * {kh}; u < i * {kh} + {kh} && u < {h}; u++)
          for (int v = j * {kw}; v < j * {kw} + {kw} && v < {w}; v++)
            if ({src}[(c * {h} + u) * {w} + v] > m) m = {src}[(c * {h} + u) * {w} + v];
        {dst}[(c * {ho} + i) * {wo} + j] = m;
      }}""")
    return c, ho, wo


def _conv3x3(e: _Emitter, block, src: str, dst: str, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    layer = block.layer
    if _pair(layer.kernel_size) != (3, 3) or _pair(layer.padding) != (1, 1) or layer.bias is not None:
        raise UnsupportedLayer(f"{type(block).__name__}: only 3x3 convolutions with padding 1 and no bias export")
    c, h, w = shape
    f = layer.weight.shape[0]
    wt = e.array("w", layer.weight)
    e.macs += f * c * 9 * h * w
    e.size(f * h * w)
    e.emit(f"""  for (int f = 0; f < {f}; f++)
    for (int i = 0; i < {h}; i++)
      for (int j = 0; j < {w}; j++) {{
        int64_t z = 0;
        for (int c = 0; c < {c}; c++)
          for (int u = 0; u < 3; u++) {{
            int y = i + u - 1;
            if (y < 0 || y >= {h}) continue;
            for (int v = 0; v < 3; v++) {{
              int x = j + v - 1;
              if (x >= 0 && x < {w}) z += (int64_t){wt}[((f * {c} + c) * 3 + u) * 3 + v] * {src}[(c * {h} + y) * {w} + x];
            }}
          }}
        {dst}[(f * {h} + i) * {w} + j] = (int32_t)({_nitro_value(block, "z")});
      }}""")
    return f, h, w


def _head(e: _Emitter, head, src: str, shape: tuple[int, ...], dst: str, accumulate: bool) -> None:
    """A NITRO-D head (or the output layer) on ``src``: [max pool (ceil)] -> linear -> NitroScaling, written to
    ``dst`` or added to it."""
    if head.pools:
        shape = _max_pool(e, src, "h", shape, head.kernel, ceil=True)
        src = "h"
        e.scratch = max(e.scratch, shape[0] * shape[1] * shape[2])
    value = f"clamp(z / {head.scaling.scale_factor}, -127, 127)"
    if accumulate:
        value = f"{dst}[j] + {value}"
    _linear(e, head.linear.weight, None, src, dst, value)


def _nitro(e: _Emitter, model, shape: tuple[int, int, int]) -> tuple[str, int]:
    from torch_intnn.nn.nitro import IntDropout
    from torch_intnn.nn.nitro_blocks import NitroConvBlock, NitroLinearBlock
    from torch_intnn.nn.pool import IntFlatten, IntMaxPool2d

    if model.augment.pad and model.augment.training:
        raise UnsupportedLayer("augment: export the model in eval mode")
    _nitro_standardize(e, model.standardize, shape)
    e.nitro = True
    src, dst = "a", "b"
    current: tuple[int, ...] = shape
    heads = 0
    summed = model.ensemble
    for i, stage in enumerate(model.stages):
        where = f"stages.{i}"
        if isinstance(stage, NitroConvBlock):
            current = _conv3x3(e, stage, src, dst, current)
        elif isinstance(stage, NitroLinearBlock):
            w = stage.layer.weight
            _linear(e, w, None, src, dst, _nitro_value(stage, "z"))
            current = (w.shape[0],)
        elif isinstance(stage, IntMaxPool2d):
            k = stage.kernel_size
            current = _max_pool(e, src, dst, current, (k, k) if isinstance(k, int) else tuple(k), ceil=False)
        elif isinstance(stage, (IntFlatten, IntDropout)):
            continue  # flat C, H, W order already; dropout is the identity in eval mode
        else:
            raise UnsupportedLayer(f"{where}: no C export for {type(stage).__name__}")
        src, dst = dst, src
        if summed and isinstance(stage, (NitroConvBlock, NitroLinearBlock)):
            _head(e, stage.head, src, current, "total", accumulate=heads > 0)
            heads += 1
    classes = model.output.linear.weight.shape[0]
    if heads:
        _head(e, model.output, src, current, "total", accumulate=True)
        return "total", classes
    _head(e, model.output, src, current, dst, accumulate=False)
    return dst, classes


_HARNESS = r"""/* Host harness: raw images (MODEL_INPUT_BYTES each) on stdin, one line of scores per image on stdout. */
#include <stdio.h>
#include "model.h"

int main(void) {
  static uint8_t image[MODEL_INPUT_BYTES];
  int32_t scores[MODEL_CLASSES];
  while (fread(image, 1, MODEL_INPUT_BYTES, stdin) == MODEL_INPUT_BYTES) {
    model_predict(image, scores);
    for (int j = 0; j < MODEL_CLASSES; j++) printf(j ? " %ld" : "%ld", (long)scores[j]);
    printf("\n");
  }
  return 0;
}
"""


def export_c(model: nn.Module, out_dir: str | Path, name: str = "model",
             input_shape: tuple[int, int, int] | None = None) -> ExportReport:
    """Write ``NAME.h``, ``NAME.c`` (module docstring) and a host ``harness.c`` for ``model`` into ``out_dir``;
    return the report. ``input_shape`` (C, H, W) names the image shape in the report where the model does not
    know it (a PocketMLP sees only its flat input).

    Raises :class:`UnsupportedLayer` (naming the layer) for a model or layer the exporter does not know, before
    writing anything.
    """
    from torch_intnn.models.nitro import NitroNet
    from torch_intnn.models.pocketnn import PocketMLP

    model = model.eval()
    e = _Emitter()
    with torch.no_grad():
        if isinstance(model, PocketMLP):
            shape = (1, 1, model.sizes[0])
            result, classes = _pocket(e, model)
        elif isinstance(model, NitroNet):
            shape = (model.standardize.channels, *_input_hw(model))
            result, classes = _nitro(e, model, shape)
        else:
            raise UnsupportedLayer(f"{type(model).__name__}: the exporter knows PocketMLP and NitroNet models")
    body = "\n".join(e.body)
    runtime = _RUNTIME + (_NITRO_RELU if e.nitro else "")
    n_in = shape[0] * shape[1] * shape[2]
    buffers = [f"static int32_t a[{e.buffer}], b[{e.buffer}];"]
    if e.scratch:
        buffers.append(f"static int32_t h[{e.scratch}];")
    if result == "total":
        buffers.append(f"static int32_t total[{classes}];")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    guard = f"{name.upper()}_H"
    header = f"""/* Generated by torch_intnn.export: integer-only inference of a trained {type(model).__name__}. */
#ifndef {guard}
#define {guard}
#include <stdint.h>
#define MODEL_INPUT_BYTES {n_in}
#define MODEL_CLASSES {classes}
/* image: MODEL_INPUT_BYTES raw pixels (C, H, W); scores: MODEL_CLASSES integers; returns the predicted class. */
int model_predict(const uint8_t *image, int32_t *scores);
#endif
"""
    source = f"""/* Generated by torch_intnn.export. C99, integer arithmetic only, no allocation. */
#include <stdint.h>
#include "{name}.h"
{runtime}
{chr(10).join(e.arrays)}
{chr(10).join(buffers)}

int model_predict(const uint8_t *image, int32_t *scores) {{
{body}
  int best = 0;
  for (int j = 0; j < {classes}; j++) {{
    scores[j] = {result}[j];
    if ({result}[j] > {result}[best]) best = j;
  }}
  return best;
}}
"""
    (out / f"{name}.h").write_text(header)
    (out / f"{name}.c").write_text(source)
    (out / "harness.c").write_text(_HARNESS.replace('"model.h"', f'"{name}.h"'))
    ram = 4 * (2 * e.buffer + e.scratch + (classes if result == "total" else 0))
    if input_shape is not None and math.prod(input_shape) == n_in:
        shape = tuple(input_shape)
    return ExportReport(e.flash, ram, e.macs, classes, shape,
                        [str(out / f"{name}.h"), str(out / f"{name}.c"), str(out / "harness.c")])


def _input_hw(model) -> tuple[int, int]:
    """(H, W) of a NitroNet's input, from its first layer's geometry."""
    from torch_intnn.nn.nitro_blocks import NitroConvBlock, NitroLinearBlock

    first = next(m for m in model.stages if isinstance(m, (NitroConvBlock, NitroLinearBlock)))
    if isinstance(first, NitroConvBlock):
        return tuple(first.head.in_shape[1:])
    return 1, first.layer.weight.shape[1] // model.standardize.channels  # flat: export_c's input_shape names it


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module, str]:
    """The integer network of an ``IntegerClassifier`` checkpoint (a file, or a run folder: its best-on-validation
    checkpoint), in eval mode, and its registered name. Raises ``ValueError`` for a checkpoint of another module
    (a float twin)."""
    from torch_intnn.lightning.checkpoint import load_checkpoint
    from torch_intnn.models import create_model

    path = _checkpoint_file(Path(path))
    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters", {})
    if not str(hparams.get("_class_path", "IntegerClassifier")).endswith("IntegerClassifier") or "model" not in hparams:
        raise ValueError(f"{path}: not a checkpoint of an integer model (IntegerClassifier); float twins do not export")
    model = create_model(hparams["model"], seed=hparams.get("seed") or 0, **(hparams.get("model_args") or {}))
    state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    model.load_state_dict(state)
    return model.eval(), hparams["model"]


def _checkpoint_file(path: Path) -> Path:
    """``path`` itself, or in a run folder the best checkpoint (``checkpoints/best-*.ckpt``, the latest step)."""
    if path.is_file():
        return path
    best = sorted((path / "checkpoints").glob("best-*.ckpt"), key=lambda p: int(p.stem.rsplit("-", 1)[-1]))
    if not best:
        raise FileNotFoundError(f"{path}: neither a checkpoint file nor a run folder with checkpoints/best-*.ckpt")
    return best[-1]


def verify_on_host(model: nn.Module, out_dir: str | Path, images: torch.Tensor, name: str = "model",
                   compiler: str = "cc") -> tuple[int, int]:
    """Compile the exported library and its harness with ``compiler -std=c99 -Wall -Wextra -Werror
    -mgeneral-regs-only`` (on x86 the compiler then refuses any floating-point use) and compare its scores for
    ``images`` (N, C, H, W) uint8 with the model's, image by image. Returns (images equal, images)."""
    from torch_intnn.ops._cpu import is_x86

    out = Path(out_dir)
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
    if is_x86():
        flags.append("-mgeneral-regs-only")
    program = out / "harness"
    subprocess.run([compiler, *flags, str(out / f"{name}.c"), str(out / "harness.c"), "-o", str(program)],
                   check=True, capture_output=True, text=True)
    done = subprocess.run([str(program)], input=images.contiguous().numpy().tobytes(), capture_output=True,
                          check=True)
    rows = [[int(v) for v in line.split()] for line in done.stdout.decode().splitlines()]
    scores = torch.tensor(rows, dtype=torch.int64).reshape(len(rows), -1)
    with torch.no_grad():
        expected = torch.cat([model(part) for part in images.split(1000)]).to(torch.int64)
    if scores.shape != expected.shape:
        return 0, len(images)
    return int((scores == expected).all(1).sum()), len(images)


def main(argv: list[str]) -> int:
    """``intnn export CHECKPOINT_OR_RUN --out DIR [--name model] [--verify]``."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="intnn export", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="an IntegerClassifier checkpoint, or a run folder (its best checkpoint)")
    p.add_argument("--out", required=True, help="folder for NAME.h, NAME.c and harness.c")
    p.add_argument("--name", default="model", help="file stem of the library (default: model)")
    p.add_argument("--verify", action="store_true",
                   help="compile on this host (cc, no floating point) and compare every test image's scores with "
                        "PyTorch's (needs the dataset: $TORCH_INTNN_DATA or --data-root)")
    p.add_argument("--cortex-m3", type=int, default=0, metavar="N",
                   help="also cross-compile for a Cortex-M3 without FPU and run the first N test images under "
                        "qemu-system-arm -M mps2-an385, comparing the scores (needs arm-none-eabi-gcc and QEMU)")
    p.add_argument("--data-root", default=None, help="torchvision data root for --verify and --cortex-m3")
    args = p.parse_args(argv)
    try:
        from torch_intnn.models import model_info

        model, name = model_from_checkpoint(args.checkpoint)
        report = export_c(model, args.out, args.name, input_shape=model_info(name)["input_shape"])
    except (UnsupportedLayer, ValueError, FileNotFoundError) as err:
        raise SystemExit(f"intnn export: {err}") from None
    print(f"wrote {', '.join(report.files)}")
    print(f"input {report.input_shape} uint8, {report.classes} classes; weights and tables {report.flash_bytes:,} B "
          f"(flash), activation buffers {report.ram_bytes:,} B (RAM), {report.macs:,} multiply-accumulates per image")
    if not (args.verify or args.cortex_m3):
        return 0
    from torch_intnn.data import load_split

    dataset = model_info(name)["dataset"]
    images, _ = load_split(dataset, train=False, root=args.data_root, download=False)
    ok = True
    if args.verify:
        print(f"verifying {len(images):,} {dataset} test images on this host ...", file=sys.stderr, flush=True)
        equal, total = verify_on_host(model, args.out, images, args.name)
        print(f"host build: {equal:,} of {total:,} test images give PyTorch's scores exactly")
        ok &= equal == total
    if args.cortex_m3:
        print(f"running {args.cortex_m3} test images on an emulated Cortex-M3 ...", file=sys.stderr, flush=True)
        m3 = run_on_cortex_m3(model, args.out, images[:args.cortex_m3], args.name)
        print(f"Cortex-M3 (qemu mps2-an385, soft float): {m3['equal']} of {m3['images']} images give PyTorch's "
              f"scores exactly; program .text {m3['text_bytes']:,} B, .data {m3['data_bytes']:,} B, .bss "
              f"{m3['bss_bytes']:,} B; floating-point instructions in the disassembly: "
              f"{', '.join(m3['fp_instructions']) or 'none'}")
        ok &= m3["equal"] == m3["images"] and not m3["fp_instructions"]
    return 0 if ok else 1


_M3_VECTORS = r"""/* Cortex-M vector table: the initial stack pointer and the reset handler (newlib's crt0 _start). */
#include <stdint.h>
extern void _start(void);
extern uint32_t __stack;
__attribute__((section(".vectors"), used)) const void *const vectors[2] = {&__stack, (const void *)_start};
"""

# newlib's crt0 does not copy .data from flash, so .data is placed in RAM directly (QEMU loads the ELF segments
# at their addresses); MPS2-AN385: code memory at 0x0, data memory at 0x20000000.
_M3_LINK = r"""MEMORY { FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 4M
         RAM (rwx)  : ORIGIN = 0x20000000, LENGTH = 4M }
SECTIONS {
  .vectors : { KEEP(*(.vectors)) } > FLASH
  .text : { *(.text*) *(.rodata*) KEEP(*(.init)) KEEP(*(.fini)) } > FLASH
  .ARM.exidx : { *(.ARM.exidx*) } > FLASH
  .init_array : { __init_array_start = .; KEEP(*(.init_array*)) __init_array_end = .; } > RAM
  .fini_array : { __fini_array_start = .; KEEP(*(.fini_array*)) __fini_array_end = .; } > RAM
  .data : { *(.data*) } > RAM
  .bss : { __bss_start__ = .; *(.bss*) *(COMMON) . = ALIGN(8); __bss_end__ = .; } > RAM
  end = .; __end__ = .;
  __stack = ORIGIN(RAM) + LENGTH(RAM);
}
"""

_M3_MAIN = r"""/* Scores of the embedded sample images, one line each, printed through semihosting. */
#include <stdio.h>
#include "model.h"
#include "samples.h"

int main(void) {
  int32_t scores[MODEL_CLASSES];
  for (int n = 0; n < SAMPLES; n++) {
    model_predict(samples[n], scores);
    for (int j = 0; j < MODEL_CLASSES; j++) printf(j ? " %ld" : "%ld", (long)scores[j]);
    printf("\n");
  }
  return 0;
}
"""

M3_FLAGS = ["-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
_FP_MNEMONIC = re.compile(r"\t(v[a-z0-9.]+|vfp\w*|fmrx|fmxr|cdp|mrc\s+p1[01])\b")


def run_on_cortex_m3(model: nn.Module, out_dir: str | Path, images: torch.Tensor, name: str = "model",
                     timeout: float = 600.0) -> dict:
    """Cross-compile the exported library for a Cortex-M3 (no FPU: ``-mcpu=cortex-m3 -mthumb -mfloat-abi=soft``,
    newlib with semihosting) with ``images`` embedded, run it under ``qemu-system-arm -M mps2-an385``, and
    compare the printed scores with the model's.

    Returns ``{"equal": images equal, "images": n, "fp_instructions": [...], "text_bytes": ..., "data_bytes":
    ..., "bss_bytes": ...}``; ``fp_instructions`` lists the floating-point instructions found in the program's
    disassembly (``arm-none-eabi-objdump -d``; none is expected). Needs ``arm-none-eabi-gcc``, its newlib and
    ``qemu-system-arm`` (Debian: gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm).
    """
    out = Path(out_dir)
    m3 = out / "cortex-m3"
    m3.mkdir(parents=True, exist_ok=True)
    (m3 / "vectors.c").write_text(_M3_VECTORS)
    (m3 / "link.ld").write_text(_M3_LINK)
    (m3 / "main.c").write_text(_M3_MAIN.replace('"model.h"', f'"{name}.h"'))
    flat = images.reshape(len(images), -1)
    rows = ",\n".join("{" + ",".join(str(int(v)) for v in row.tolist()) + "}" for row in flat)
    (m3 / "samples.h").write_text(f"#define SAMPLES {len(images)}\nstatic const uint8_t samples[SAMPLES][{flat.shape[1]}]"
                                  f" = {{\n{rows}\n}};\n")
    elf = m3 / "program.elf"
    subprocess.run(["arm-none-eabi-gcc", *M3_FLAGS, "--specs=rdimon.specs", "-T", str(m3 / "link.ld"),
                    "-I", str(out), str(m3 / "vectors.c"), str(m3 / "main.c"), str(out / f"{name}.c"),
                    "-o", str(elf)], check=True, capture_output=True, text=True)
    done = subprocess.run(["qemu-system-arm", "-M", "mps2-an385", "-nographic", "-monitor", "none",
                           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)],
                          capture_output=True, text=True, timeout=timeout, check=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    scores = torch.tensor([[int(v) for v in line.split()] for line in lines], dtype=torch.int64)
    with torch.no_grad():
        expected = model(images).to(torch.int64)
    equal = int((scores == expected).all(1).sum()) if scores.shape == expected.shape else 0
    disassembly = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True,
                                 check=True).stdout
    sizes = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in sizes.splitlines()[1].split()[:3])
    return {"equal": equal, "images": len(images), "fp_instructions": sorted(set(_FP_MNEMONIC.findall(disassembly))),
            "text_bytes": text, "data_bytes": data, "bss_bytes": bss}
