"""``intnn bench train``: training throughput of each integer recipe next to its float-backprop twin.

    intnn bench train [--json] [--recipes RECIPE ...] [--steps 60] [--epoch] [--threads N]

For each integer recipe, the integer rule's training step (``rule.train_step``: forward, integer gradients and
the ``IntegerSGD`` update; compiled into one graph when the recipe sets ``compile: true``, unless ``--eager``)
and the float twin's backprop step (forward, cross-entropy, ``backward()``, Adam) run at the recipe's batch size on the same
data, alternating in rounds so that a change of machine load hits both alike. Reported: samples per second,
the time of one epoch (the real epoch with ``--epoch``, otherwise the step time times the steps of an epoch),
and the ratio integer / float (<= 1.0: the integer step is at least as fast). A profile of the integer step
splits its time into GEMMs (``_int_mm`` and other matmuls), data movement (im2col copies, padding, layout),
element-wise work (rounding, activations, scatter; in a compiled step, the fused C++ loops of the compiled graph)
and Python overhead (wall time no op accounts for). The compile time of the first step is reported apart.

Data: the real training split when the data root has it (``$TORCH_INTNN_DATA``), else random images of the same
shape (the JSON says which); speed does not depend on pixel values.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from torch_intnn.data import DATASET_INFO, dataset_info
from torch_intnn.learning import rule_name
from torch_intnn.ops._cpu import cpu_name, int8_dot_flags
from torch_intnn.ops.backend import default_backend
from torch_intnn.recipes import find_recipe

__all__ = ["main", "DEFAULT_RECIPES"]

DEFAULT_RECIPES = ["mnist_pocketnn_dfa.yaml", "fmnist_pocketnn_dfa.yaml", "mnist_nitro_mlp.yaml",
                   "cifar10_nitro_small.yaml"]
_GEMM = {"aten::_int_mm", "aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear",
         "torch_intnn::madd16_mm"}
_MOVE = {"aten::copy_", "aten::clone", "aten::contiguous", "aten::constant_pad_nd", "aten::cat", "aten::_to_copy",
         "aten::unfold", "aten::pad", "aten::index", "aten::reshape", "aten::permute", "aten::as_strided"}


def _load_recipe(path: Path) -> dict:
    import yaml

    cfg = yaml.safe_load(path.read_text())
    model = cfg["model"]["init_args"]
    data = cfg["data"]
    module = data["class_path"].rsplit(".", 1)[-1]
    dataset = next(info.name for info in DATASET_INFO.values() if info.datamodule == module)
    return {
        "name": path.stem, "model": model["model"], "model_args": model.get("model_args") or {},
        "rule": model.get("rule", "dfa"), "rule_args": model.get("rule_args") or {},
        "batch_size": int(data.get("init_args", {}).get("batch_size", 64)), "dataset": dataset,
        "compile": bool(model.get("compile", False)),
    }


def _data(dataset: str, n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    from torch_intnn.data import DatasetUnavailable, load_split

    try:
        images, labels = load_split(dataset, train=True, download=False)
        return images[:n], labels[:n], "real"
    except DatasetUnavailable:
        shape = dataset_info(dataset).shape
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.int64).to(torch.uint8)
        return images, torch.randint(0, 10, (n,), generator=g), "random"


def _integer_step(recipe: dict, images: torch.Tensor):
    from torch_intnn.learning import build_rule
    from torch_intnn.models import create_model

    model = create_model(recipe["model"], seed=0, **recipe["model_args"])
    if hasattr(model, "fit_input"):
        model.fit_input(images)
    rule = build_rule(recipe["rule"], model, 0, recipe["rule_args"])
    opt = rule.configure_optimizer()
    if recipe["compile"]:
        rule.compile_step()
    model.train()

    def step(x, y):
        rule.train_step(x, y, opt)

    return step


def _float_step(recipe: dict):
    import torch.nn.functional as F

    from torch_intnn.models import create_model

    net = create_model(f"{recipe['model']}_float", seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()

    def step(x, y):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _time_steps(step, images, labels, batch: int, start: int, count: int) -> float:
    n = len(images)
    t0 = time.perf_counter()
    for i in range(start, start + count):
        lo = (i * batch) % (n - batch + 1)
        step(images[lo:lo + batch], labels[lo:lo + batch])
    return time.perf_counter() - t0


def _profile(step, images, labels, batch: int, steps: int) -> dict[str, float]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        wall = _time_steps(step, images, labels, batch, 0, steps)
    parts = {"gemm": 0.0, "data_movement": 0.0, "elementwise": 0.0}
    for ev in prof.key_averages():
        seconds = ev.self_cpu_time_total / 1e6
        key = "gemm" if ev.key in _GEMM else "data_movement" if ev.key in _MOVE else "elementwise"
        if ev.key.startswith(("aten::", "torch_intnn::", "## Call CompiledFxGraph")):  # the last: the fused loops
            parts[key] += seconds
    parts["python_overhead"] = max(wall - sum(parts.values()), 0.0)
    total = sum(parts.values()) or 1.0
    return {k: round(100 * v / total, 1) for k, v in parts.items()}


def bench_recipe(recipe: dict, steps: int, rounds: int, full_epoch: bool) -> dict:
    batch = recipe["batch_size"]
    images, labels, source = _data(recipe["dataset"], 60000 if full_epoch else max(batch * (steps + 5), 2048))
    int_step, float_step = _integer_step(recipe, images[:10000]), _float_step(recipe)
    t0 = time.perf_counter()
    _time_steps(int_step, images, labels, batch, 0, 1)  # first call: compiles a compiled step
    compile_s = time.perf_counter() - t0
    _time_steps(int_step, images, labels, batch, 1, 20 if recipe["compile"] else 2)  # warm-up (all graph variants)
    _time_steps(float_step, images, labels, batch, 0, 3)
    per = max(steps // rounds, 1)
    t_int, t_float = [], []
    for r in range(rounds):
        t_int.append(_time_steps(int_step, images, labels, batch, r * per, per) / per)
        t_float.append(_time_steps(float_step, images, labels, batch, r * per, per) / per)
    s_int, s_float = statistics.median(t_int), statistics.median(t_float)
    epoch_samples = dataset_info(recipe["dataset"]).train_size - 5000  # the training split after validation
    epoch_steps = epoch_samples // batch
    result = {
        "recipe": recipe["name"], "model": recipe["model"], "rule": rule_name(recipe["rule"]), "batch_size": batch,
        "data": source, "steps_timed": per * rounds, "compiled": recipe["compile"],
        "first_step_s": round(compile_s, 2),
        "integer_step_ms": round(1e3 * s_int, 3), "float_bp_step_ms": round(1e3 * s_float, 3),
        "integer_samples_per_s": round(batch / s_int), "float_bp_samples_per_s": round(batch / s_float),
        "ratio_integer_over_float": round(s_int / s_float, 3),
        "epoch_s_integer": round(s_int * epoch_steps, 2), "epoch_s_float_bp": round(s_float * epoch_steps, 2),
        "epoch_measured": False,
    }
    if full_epoch:
        result["epoch_s_integer"] = round(_time_steps(int_step, images, labels, batch, 0, epoch_steps), 2)
        result["epoch_s_float_bp"] = round(_time_steps(float_step, images, labels, batch, 0, epoch_steps), 2)
        result["epoch_measured"] = True
    result["integer_time_split_percent"] = _profile(int_step, images, labels, batch, min(per, 20))
    return result


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="intnn bench train", description=__doc__.split("\n\n")[0])
    p.add_argument("--recipes", nargs="+", help="integer recipes, by name or path (default: "
                   + ", ".join(DEFAULT_RECIPES) + ")")
    p.add_argument("--steps", type=int, default=60, help="timed steps per rule (default 60)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds the steps are split into")
    p.add_argument("--epoch", action="store_true", help="also time one real epoch of each rule")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--eager", action="store_true", help="run the integer steps eagerly even where a recipe compiles")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.recipes or DEFAULT_RECIPES
    recipes = [find_recipe(name) for name in names]
    missing = [name for name, path in zip(names, recipes) if path is None]
    if missing:
        p.error(f"no recipe {', '.join(map(repr, missing))}; `intnn recipes` lists them")
    results = []
    for path in recipes:
        print(f"benchmarking {Path(path).stem} ...", file=sys.stderr, flush=True)
        recipe = _load_recipe(Path(path))
        recipe["compile"] = recipe["compile"] and not args.eager
        results.append(bench_recipe(recipe, args.steps, args.rounds, args.epoch))
    report = {"cpu": cpu_name(), "int8_dot": int8_dot_flags(), "gemm_backend": default_backend("cpu").value,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "results": results}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['cpu']} (int8 dot products: {', '.join(report['int8_dot']) or 'none'}), integer GEMM backend "
          f"{report['gemm_backend']}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; step = one training step at the recipe's "
          "batch size; epoch = 55,000 images (45,000 for CIFAR-10)" + ("" if args.epoch else ", from the step time"))
    head = f"{'recipe':28s} {'step':8s} {'batch':>5s} {'int ms/step':>11s} {'float ms/step':>13s} {'int/float':>9s} " \
           f"{'int s/epoch':>11s} {'float s/epoch':>13s}  integer time split"
    print(head)
    for r in results:
        split = ", ".join(f"{k} {v}%" for k, v in r["integer_time_split_percent"].items())
        mode = "compiled" if r["compiled"] else "eager"
        print(f"{r['recipe']:28s} {mode:8s} {r['batch_size']:5d} {r['integer_step_ms']:11.3f} {r['float_bp_step_ms']:13.3f} "
              f"{r['ratio_integer_over_float']:9.3f} {r['epoch_s_integer']:11.2f} {r['epoch_s_float_bp']:13.2f}  {split}"
              + (f"; first step (compiling) {r['first_step_s']:.1f} s" if r["compiled"] else ""))
    return 0
