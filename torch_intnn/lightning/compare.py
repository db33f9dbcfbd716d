"""``intnn compare``: train several recipes (integer and float) and write one table and one plot.

    intnn compare recipes/mnist_pocketnn_dfa.yaml recipes/mnist_pocketnn_float_bp.yaml --seeds 0 1 2 \
        --out logs/compare_mnist [-- --trainer.max_epochs 5]

Every run logs to ``OUT/tb/<recipe>/version_*`` (one TensorBoard folder, so all runs overlay there), writes its
``results.json``, and the command writes ``OUT/compare.md`` (test accuracy with the final weights and with the
best-on-validation checkpoint, best validation accuracy, epochs, seconds per epoch, bytes of training state;
mean +- standard deviation over seeds) and ``OUT/val_acc.png`` (validation accuracy per epoch, one line per run).
With ``--reuse``, runs whose ``results.json`` already exists are read instead of trained again. With
``--readme README.md``, the table and a link to a copy of the plot (``docs/OUT-NAME.png``) replace the README's
block for OUT-NAME.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
from pathlib import Path

__all__ = ["main"]


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(prog="intnn compare", description=__doc__.split("\n\n")[0])
    p.add_argument("recipes", nargs="+", type=Path, help="LightningCLI recipe files (YAML)")
    p.add_argument("--out", type=Path, default=Path("logs/compare"), help="output folder (default logs/compare)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to run each recipe with")
    p.add_argument("--reuse", action="store_true", help="read runs that already have results instead of training")
    p.add_argument("--readme", type=Path, help="also write the table into this Markdown file, between the lines "
                   "'<!-- compare: OUT-NAME -->' and '<!-- /compare -->'")
    return p.parse_args(argv), extra


def _run_folder(out: Path, recipe: Path, seed: int) -> Path:
    return out / "tb" / recipe.stem / f"seed_{seed}"


def _train(recipe: Path, seed: int, out: Path, extra: list[str]) -> None:
    from torch_intnn.lightning.cli import run

    run([
        "fit", "--config", str(recipe), "--seed_everything", str(seed),
        "--trainer.logger.init_args.save_dir", str(out / "tb"),
        "--trainer.logger.init_args.name", recipe.stem,
        "--trainer.logger.init_args.version", f"seed_{seed}",
        *extra,
    ])


def _val_curve(folder: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    if "val/acc" not in acc.Tags()["scalars"]:
        return []
    by_step = {e.step: e.value for e in sorted(acc.Scalars("val/acc"), key=lambda e: e.wall_time)}
    return [by_step[step] for step in sorted(by_step)]  # a resumed run logs its repeated epochs again: the last wins


def _fmt(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def _span(values: list[int]) -> str:
    """``7`` if every seed ran 7 epochs, else ``min-max``."""
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _table(rows: list[dict], command: str, date: str) -> str:
    """The Markdown table of ``rows``; ``date``: when the newest run finished (a reused run keeps its own)."""
    head = (
        "| run | model | rule | seeds | test acc, final (%) | test acc, best val (%) | best val acc (%) | epochs "
        "| s / epoch | training state (bytes) |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = ""
    for r in rows:
        res = r["results"]
        body += (
            f"| {r['name']} | {r['model']} | {r['rule']} | {len(res)} "
            f"| {_fmt([x['test_acc_final'] for x in res])} "
            f"| {_fmt([x['test_acc_best_val'] for x in res if 'test_acc_best_val' in x])} "
            f"| {_fmt([x['best_val_acc'] for x in res if 'best_val_acc' in x])} "
            f"| {_span([x['epochs'] for x in res])} | {_fmt([x['seconds_per_epoch'] for x in res], 1.0)} "
            f"| {res[0].get('state_bytes', '-')} |\n"
        )
    note = (
        f"\nMeasured on {date} with `{command}`. Protocol: validation split taken from the training set, best "
        "checkpoint chosen on validation accuracy, test set (10,000 images) evaluated with the final and with the "
        "best-on-validation weights; ± is the standard deviation over seeds.\n"
    )
    return head + body + note


def _readme_marker(readme: Path, name: str) -> str:
    """The line the table goes after; ``SystemExit`` if ``readme`` lacks it (checked before any run)."""
    start = f"<!-- compare: {name} -->"
    if not readme.is_file() or start not in readme.read_text():
        raise SystemExit(f"intnn compare: {readme} has no line '{start}' to write the table after")
    return start


def _into_readme(readme: Path, name: str, table: str, plot: Path) -> None:
    """Write ``table`` and a link to a copy of ``plot`` (``docs/NAME.png`` beside the README) into the block."""
    start, end = _readme_marker(readme, name), "<!-- /compare -->"
    image = readme.parent / "docs" / f"{name}.png"
    image.parent.mkdir(exist_ok=True)
    image.write_bytes(plot.read_bytes())
    head, rest = readme.read_text().split(start, 1)
    tail = rest.split(end, 1)[1] if end in rest else rest
    link = f"\n![Validation accuracy per epoch of every run above](docs/{name}.png)\n"
    readme.write_text(f"{head}{start}\n{table}{link}{end}{tail}")


def _plot(curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, curve in curves.items():
        if curve:
            ax.plot(range(1, len(curve) + 1), [100 * v for v in curve], marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _describe(recipe: Path) -> tuple[str, str]:
    import yaml

    cfg = yaml.safe_load(recipe.read_text())
    init = cfg.get("model", {}).get("init_args", {})
    arithmetic = "float" if "Float" in cfg.get("model", {}).get("class_path", "") else "integer"
    rule = init.get("rule", "?")
    if arithmetic == "integer":
        from torch_intnn.learning import rule_name

        rule = rule_name(rule)
    return init.get("model", "?"), f"{arithmetic} {rule}"


def main(argv: list[str]) -> int:
    args, extra = _parse(argv)
    if args.readme:
        _readme_marker(args.readme, args.out.name)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, curves, finished = [], {}, []
    done, total = 0, len(args.recipes) * len(args.seeds)
    for recipe in args.recipes:
        if not recipe.is_file():
            raise SystemExit(f"intnn compare: recipe '{recipe}' does not exist")
        model, rule = _describe(recipe)
        results = []
        for seed in args.seeds:
            folder = _run_folder(args.out, recipe, seed)
            done += 1
            reuse = args.reuse and (folder / "results.json").exists()
            how = " (read from its results.json)" if reuse else ""
            print(f"intnn compare: run {done}/{total}: {recipe.stem}, seed {seed}{how}", flush=True)
            if not reuse:
                _train(recipe, seed, args.out, extra)
            results.append(json.loads((folder / "results.json").read_text()))
            curves[f"{recipe.stem} (seed {seed})"] = _val_curve(folder)
        rows.append({"name": recipe.stem, "model": model, "rule": rule, "results": results})
        finished.extend((_run_folder(args.out, recipe, seed) / "results.json").stat().st_mtime for seed in args.seeds)
    command = "intnn compare " + " ".join(argv)
    date = datetime.datetime.fromtimestamp(max(finished), datetime.timezone.utc).date().isoformat()
    table = _table(rows, command, date)
    (args.out / "compare.md").write_text(table)
    _plot(curves, args.out / "val_acc.png")
    if args.readme:
        _into_readme(args.readme, args.out.name, table, args.out / "val_acc.png")
    print((args.out / "compare.md").read_text())
    print(f"plot: {args.out / 'val_acc.png'}")
    return 0
