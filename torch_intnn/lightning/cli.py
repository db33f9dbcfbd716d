"""``intnn fit | validate | test | predict``: LightningCLI over the recipes in ``recipes/``.

On top of plain LightningCLI: a checkpoint callback that keeps the best model on ``val/acc`` and, after every epoch,
the last one (:class:`~torch_intnn.lightning.checkpoint.BestAndLastCheckpoint`);
TensorBoard logs under ``logs/<recipe name>/``; the model and data-order seeds follow ``seed_everything`` unless
set; and after ``fit`` the test set is evaluated twice, with the final weights and with the best-on-validation
checkpoint, printed and written to ``results.json`` in the run folder.

Resuming (``--ckpt_path RUN/checkpoints/last.ckpt``) continues the same run: it logs into the checkpoint's run
folder (so the best checkpoint and its score carry over, and ``results.json`` is the uninterrupted run's), with
the recipe given, which must train what the checkpoint trained (a differing model, rule or argument is refused,
naming the keys), or without ``--config``, with the run folder's own ``config.yaml``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from torch_intnn.lightning.checkpoint import BestAndLastCheckpoint, CheckpointError, load_checkpoint
from torch_intnn.lightning.module import as_plain

__all__ = ["FitClock", "IntnnCLI", "PredictionWriter", "run"]

_DEFAULT_RUN_NAME = "intnn"
_NO_RESULT_ARGS = ("compile", "histogram_every_n_epochs")  # module arguments that change no result


class FitClock(pl.Callback):
    """Seconds spent in ``fit`` (training and validation), carried in checkpoints so that a resumed run reports
    the time of the whole run (less the part after the last checkpoint of the interrupted process)."""

    def __init__(self) -> None:
        self.seconds, self._since = 0.0, None

    def on_fit_start(self, trainer, pl_module) -> None:
        self._since = time.perf_counter()

    def elapsed(self) -> float:
        return self.seconds + (time.perf_counter() - self._since if self._since is not None else 0.0)

    def state_dict(self) -> dict:
        return {"seconds": self.elapsed()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.seconds = float(state_dict["seconds"])


class PredictionWriter(BasePredictionWriter):
    """Writes what ``intnn predict`` predicts to a CSV file, one line per image: ``index,label,prediction``
    (``index`` counts the images of the data module's ``predict_split`` in order).

    Args:
        path: the file; default ``predictions.csv`` in the run folder (printed when written).
    """

    def __init__(self, path: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.path = path

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        path = Path(self.path or Path(trainer.log_dir or ".") / "predictions.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = ["index,label,prediction"]
        for out in predictions:
            for pred, label in zip(out["prediction"].tolist(), out["label"].tolist()):
                rows.append(f"{len(rows) - 1},{label},{pred}")
        path.write_text("\n".join(rows) + "\n")
        right = sum(1 for row in rows[1:] if row.split(",")[1] == row.split(",")[2])
        print(f"wrote {len(rows) - 1} predictions ({100 * right / max(len(rows) - 1, 1):.2f}% right) to {path}")


class IntnnArgumentParser(LightningArgumentParser):
    """LightningCLI's parser, whose refusal of a misspelt ``init_args`` key also names the valid ones."""

    _UNKNOWN = re.compile(r"Option '(\w+)' is not accepted\. Got value: Namespace\(class_path='([\w.]+)'")

    def error(self, message: str, *args, **kwargs):
        found = self._UNKNOWN.search(message)
        if found:
            valid = _init_arg_names(found.group(2))
            if valid:
                message = (f"'{found.group(1)}' is not an argument of {found.group(2)}; its arguments are: "
                           f"{', '.join(valid)}\n{message}")
        return super().error(message, *args, **kwargs)


def _init_arg_names(class_path: str) -> list[str]:
    """The keyword arguments a recipe can give ``class_path`` (all but the model a rule is built for)."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (ImportError, AttributeError, TypeError, ValueError):
        return []
    skip = {"model", "seed"}
    return [p.name for p in params if p.name not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _seed(cfg) -> int:
    seed = cfg.get("seed_everything")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


class IntnnCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--threads", type=int | None, default=None,
            help="torch intra-op threads (default: torch's choice). Small models run fastest on 1: a second "
            "thread costs more in synchronisation than it saves, badly so on a loaded machine.",
        )
        parser.add_lightning_class_args(BestAndLastCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch}-{step}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(FitClock, "clock")
        parser.add_lightning_class_args(PredictionWriter, "predictions")

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if cfg.get("threads"):
            torch.set_num_threads(cfg.threads)
        logger = cfg.trainer.get("logger")
        configs = cfg.get("config") or []
        if isinstance(logger, dict) or hasattr(logger, "init_args"):
            if logger.init_args.get("name") == _DEFAULT_RUN_NAME and configs:
                logger.init_args.name = Path(str(configs[-1])).stem
            run = _run_folder(cfg.get("ckpt_path")) if self.subcommand == "fit" else None
            if run is not None and "version" in logger.init_args:  # resume: log into the checkpoint's run
                logger.init_args.save_dir, logger.init_args.name = str(run.parent.parent), run.parent.name
                logger.init_args.version = run.name
        for part in ("model", "data"):  # the model's and the data order's seeds follow seed_everything unless set
            init_args = (cfg.get(part) or {}).get("init_args")
            if init_args is not None and "seed" in init_args and init_args.seed is None:
                init_args.seed = _seed(cfg)

    def _parse_ckpt_path(self) -> None:
        """Check the recipe against the checkpoint's hyperparameters, when the CLI wrote them (they then name
        their class): the model class and every argument that changes results must agree. A checkpoint saved
        from plain Python leaves the recipe's model config in force (the module checks it on load)."""
        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        if not path:
            return
        hparams = dict(load_checkpoint(path).get("hyper_parameters", {}))
        hparams.pop("_instantiator", None)
        if hparams.get("seed", 0) is None:
            hparams["seed"] = 0  # as the modules read an unset seed
        if "_class_path" not in hparams:
            return
        cfg = self.config[sub]
        recipe = cfg.model.as_dict() if hasattr(cfg.model, "as_dict") else dict(cfg.model)
        recipe_args = dict(recipe.get("init_args") or {})
        if recipe_args.get("seed", 0) is None:
            recipe_args["seed"] = _seed(cfg)
        saved_class = hparams.pop("_class_path")
        differ = [] if recipe.get("class_path") == saved_class else ["class_path"]
        differ += [key for key in sorted(hparams.keys() | recipe_args.keys())
                   if key not in _NO_RESULT_ARGS and as_plain(hparams.get(key)) != as_plain(recipe_args.get(key))]
        if differ:
            both = {"class_path": (saved_class, recipe.get("class_path"))}
            lines = "; ".join(
                f"{key}: {both[key][0] if key in both else hparams.get(key)!r} in the checkpoint, "
                f"{both[key][1] if key in both else recipe_args.get(key)!r} in the recipe" for key in differ
            )
            raise CheckpointError(
                f"checkpoint '{path}' trained another configuration than the recipe ({lines}); resume with the "
                "recipe it was trained with, or leave out --config to use its run folder's config.yaml"
            )

    def after_fit(self) -> None:
        trainer, model, dm = self.trainer, self.model, self.datamodule
        fit_seconds = next(c for c in trainer.callbacks if isinstance(c, FitClock)).elapsed()  # the parser adds it
        results = {
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "fit_seconds": round(fit_seconds, 2),
            "seconds_per_epoch": round(fit_seconds / max(trainer.current_epoch, 1), 3),
            "state_bytes": _state_bytes(model, trainer.optimizers),
        }
        final = trainer.test(model, datamodule=dm, verbose=False)
        results["test_acc_final"] = final[0]["test/acc"]
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and ckpt.best_model_path:
            model.test_tag = "test/acc_best_val"  # its own TensorBoard tag, beside the final weights' test/acc
            try:
                best = trainer.test(model, datamodule=dm, ckpt_path=ckpt.best_model_path, verbose=False,
                                    weights_only=True)
            finally:
                model.test_tag = "test/acc"
            results["test_acc_best_val"] = best[0]["test/acc_best_val"]
            if ckpt.best_model_score is not None:
                results["best_val_acc"] = float(ckpt.best_model_score)
            results["best_checkpoint"] = ckpt.best_model_path
        log_dir = trainer.log_dir or "."
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        (Path(log_dir) / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(_summary(results, log_dir))


def _run_folder(ckpt_path) -> Path | None:
    """The run folder of a checkpoint the CLI wrote (``RUN/checkpoints/NAME.ckpt``, ``RUN/hparams.yaml``)."""
    if not ckpt_path:
        return None
    ckpt = Path(ckpt_path)
    run = ckpt.parent.parent
    return run if ckpt.parent.name == "checkpoints" and (run / "hparams.yaml").is_file() else None


def _state_bytes(model, optimizers) -> int:
    """Bytes of everything training keeps between steps: the module's state_dict and the optimizers' state."""
    tensors = list(model.state_dict().values())
    for opt in optimizers:
        tensors += [v for state in opt.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


def _summary(r: dict, log_dir: str) -> str:
    lines = [
        f"trained {r['epochs']} epochs ({r['steps']} steps) in {r['fit_seconds']:.1f} s "
        f"({r['seconds_per_epoch']:.2f} s/epoch, validation included)",
        f"test accuracy, final weights:            {100 * r['test_acc_final']:.2f}%",
    ]
    if "test_acc_best_val" in r:
        val = f" (val {100 * r['best_val_acc']:.2f}%)" if "best_val_acc" in r else ""
        lines.append(f"test accuracy, best on validation:       {100 * r['test_acc_best_val']:.2f}%{val}")
    lines.append(f"run folder: {log_dir}")
    return "\n".join(lines)


def run(args: list[str] | None = None) -> None:
    """Run the CLI on ``args`` (default: the command line)."""
    from lightning.pytorch import LightningDataModule, LightningModule

    if args is not None:  # LightningCLI warns when it is given args while sys.argv holds others (intnn compare)
        sys.argv = sys.argv[:1]
    args = _with_run_config(_with_recipe_paths(list(sys.argv[1:] if args is None else args)))
    if args and args[0] == "test" and not any(a == "--ckpt_path" or a.startswith("--ckpt_path=") for a in args):
        raise SystemExit("intnn test: give the checkpoint to evaluate with --ckpt_path (a run's "
                         "checkpoints/best-*.ckpt or last.ckpt); without one it would test untrained weights")
    IntnnCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults={
            "plugins": [{"class_path": "torch_intnn.lightning.checkpoint.AtomicCheckpointIO"}],
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": "logs", "name": _DEFAULT_RUN_NAME},
            },
        },
        save_config_kwargs={"overwrite": True},
        parser_class=IntnnArgumentParser,
        args=args,
    )


def _with_recipe_paths(args: list[str]) -> list[str]:
    """``--config NAME``: the recipe of that name (:func:`torch_intnn.recipes.find_recipe`) when NAME is no file."""
    from torch_intnn.recipes import find_recipe, list_recipes

    out = list(args)
    for i, a in enumerate(out[:-1]):
        if a in ("--config", "-c") and not Path(out[i + 1]).is_file():
            found = find_recipe(out[i + 1])
            if found is None:
                raise SystemExit(f"intnn: no recipe file or recipe named '{out[i + 1]}'; `intnn recipes` lists "
                                 f"{len(list_recipes())} recipes")
            out[i + 1] = str(found)
    return out


def _with_run_config(args: list[str]) -> list[str]:
    """``fit --ckpt_path RUN/checkpoints/X.ckpt`` without ``--config``: add the run folder's ``config.yaml``
    (the whole configuration of the run that wrote the checkpoint)."""
    if not args or args[0] != "fit" or any(a == "--config" or a.startswith("--config=") for a in args):
        return args
    path = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--ckpt_path"), None)
    path = path or next((a.split("=", 1)[1] for a in args if a.startswith("--ckpt_path=")), None)
    if path is None:
        return args
    run = _run_folder(path)
    if run is None or not (run / "config.yaml").is_file():
        raise CheckpointError(f"checkpoint '{path}' is not in a run folder with a config.yaml; give its recipe with "
                              "--config RECIPE")
    return [args[0], "--config", str(run / "config.yaml"), *args[1:]]
