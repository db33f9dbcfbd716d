"""``intnn fit | validate | test``: LightningCLI over the recipes in ``recipes/``.

On top of plain LightningCLI: a checkpoint callback that keeps the best model on ``val/acc`` and, after every epoch,
the last one (:class:`~torch_intnn.lightning.checkpoint.BestAndLastCheckpoint`);
TensorBoard logs under ``logs/<recipe name>/``; the model and data-order seeds follow ``seed_everything`` unless
set; and after
``fit`` the test set is evaluated twice, with the final weights and with the best-on-validation checkpoint,
printed and written to ``results.json`` in the run folder.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch.cli import LightningCLI

from torch_intnn.lightning.checkpoint import BestAndLastCheckpoint, load_checkpoint

__all__ = ["IntnnCLI", "run"]

_DEFAULT_RUN_NAME = "intnn"


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

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        if cfg.get("threads"):
            torch.set_num_threads(cfg.threads)
        logger = cfg.trainer.get("logger")
        configs = cfg.get("config") or []
        if isinstance(logger, dict) or hasattr(logger, "init_args"):
            if logger.init_args.get("name") == _DEFAULT_RUN_NAME and configs:
                logger.init_args.name = Path(str(configs[-1])).stem
        seed = cfg.get("seed_everything")
        seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0
        for part in ("model", "data"):  # the model's and the data order's seeds follow seed_everything unless set
            init_args = (cfg.get(part) or {}).get("init_args")
            if init_args is not None and "seed" in init_args and init_args.seed is None:
                init_args.seed = seed

    def _parse_ckpt_path(self) -> None:
        """Take the model's hyperparameters from ``--ckpt_path`` only when the CLI wrote them (they then name
        their class); a checkpoint saved from plain Python leaves the recipe's model config in force."""
        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        if path and Path(path).is_file():
            hparams = load_checkpoint(path).get("hyper_parameters", {})
            if "_class_path" in hparams:
                super()._parse_ckpt_path()

    def before_fit(self) -> None:
        self._fit_started = time.perf_counter()

    def after_fit(self) -> None:
        fit_seconds = time.perf_counter() - self._fit_started
        trainer, model, dm = self.trainer, self.model, self.datamodule
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
            best = trainer.test(model, datamodule=dm, ckpt_path=ckpt.best_model_path, verbose=False, weights_only=True)
            results["test_acc_best_val"] = best[0]["test/acc"]
            results["best_val_acc"] = float(ckpt.best_model_score)
            results["best_checkpoint"] = ckpt.best_model_path
        log_dir = trainer.log_dir or "."
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        (Path(log_dir) / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(_summary(results, log_dir))


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
        lines.append(
            f"test accuracy, best on validation:       {100 * r['test_acc_best_val']:.2f}% "
            f"(val {100 * r['best_val_acc']:.2f}%)"
        )
    lines.append(f"run folder: {log_dir}")
    return "\n".join(lines)


def run(args: list[str] | None = None) -> None:
    """Run the CLI on ``args`` (default: the command line)."""
    from lightning.pytorch import LightningDataModule, LightningModule

    if args is not None:  # LightningCLI warns when it is given args while sys.argv holds others (intnn compare)
        sys.argv = sys.argv[:1]
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
        args=args,
    )
