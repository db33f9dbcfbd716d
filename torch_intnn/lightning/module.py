"""``IntegerClassifier``: a LightningModule whose ``backward()`` is an integer learning rule.

Manual optimisation: each training step runs ``rule.train_step`` (integer forward, integer gradients and the
``IntegerSGD`` update; one compiled graph with ``compile=True``) and then ``step()`` of Lightning's optimizer
wrapper, which finds nothing left to apply but counts the step (``max_steps``, step-based checkpoints and
``global_step`` work). Integers become floats only when logged, after the step.

Logged: the tags every run logs (:mod:`torch_intnn.lightning._logging`: accuracies, ``train/loss`` in nats
for DFA, ``train/lr``, histograms of the trained weights, ``hp_metric``), plus ``train/step_loss`` per step,
``train/lr_inv``, ``train/weight_saturated`` (the fraction of weight values saturated per update, over all
weights and per weight as ``train/weight_saturated/NAME``), ``train/saturated`` (the fraction of the rule's
activation values that saturated: its ``saturated`` count over its ``units``) and the rule's other counters.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
import torch

from torch_intnn.learning import RuleFactory, build_rule, rule_config
from torch_intnn.learning.base import check_batch
from torch_intnn.lightning._logging import RunLogging
from torch_intnn.lightning._summary import IntegerModelSummary
from torch_intnn.lightning.checkpoint import DIGEST_KEY, CheckpointError, check_state, state_digest
from torch_intnn.models import create_model
from torch_intnn.ops._checks import check_int_arg

__all__ = ["IntegerClassifier", "TRAINING_HPARAMS"]

# the arguments that define what a checkpoint trains; the others (compile, histograms) change no result
TRAINING_HPARAMS = ("model", "model_args", "rule", "rule_args", "seed")


def _effective(hparams) -> dict:
    """Hyperparameters as they act: an unset seed is seed 0, and sequences compare as lists (a checkpoint's
    YAML gives ``[]`` where the signature's default is ``()``)."""
    hparams = {key: as_plain(value) for key, value in dict(hparams).items()}
    if "seed" in hparams and hparams["seed"] is None:
        hparams["seed"] = 0
    return hparams


def as_plain(value):
    """``value`` with every tuple a list and every mapping a dict, recursively: how a checkpoint stores it."""
    if isinstance(value, (list, tuple)):
        return [as_plain(v) for v in value]
    if hasattr(value, "items"):
        return {k: as_plain(v) for k, v in value.items()}
    return value


class IntegerClassifier(RunLogging, pl.LightningModule):
    """Train a registered integer model with a registered learning rule.

    Args:
        model: registered model name (``intnn models`` lists them).
        model_args: keyword arguments of the model factory.
        rule: the learning rule. In a recipe, its class and typed arguments, checked by the CLI (``intnn fit --model
            IntegerClassifier --model.rule.help DFA`` lists them; a misspelt one is refused, naming the valid ones)::

                rule:
                  class_path: torch_intnn.learning.DFA
                  init_args: {lr_inv: 512, augment_shift: 1}

            In Python also a registered name (``"dfa"``, ``"nitro"``) with ``rule_args``, or such a config dict.
            The rule's seed is the module's.
        rule_args: keyword arguments of a rule given by name.
        seed: seed of every integer buffer (weights, feedback matrices) and of the rule's randomness; default:
            ``seed_everything``'s value under ``intnn fit``, else 0.
        histogram_every_n_epochs: how often weight histograms are written (0 = never).
        compile: run each training step as one ``torch.compile``'d graph (:meth:`LearningRule.compile_step`:
            Inductor, needs a C++ compiler; the first step compiles for a few seconds). Bit-identical to eager.
    """

    def __init__(
        self,
        model: str,
        model_args: dict | None = None,
        rule: str | RuleFactory = "dfa",  # str first: a name is never read as an importable object
        rule_args: dict | None = None,
        seed: int | None = None,
        histogram_every_n_epochs: int = 1,
        compile: bool = False,
    ) -> None:
        super().__init__()
        check_int_arg("histogram_every_n_epochs (0 = never)", histogram_every_n_epochs, 0)
        self.save_hyperparameters()
        if not isinstance(self.hparams["rule"], (str, dict)):  # a factory given in Python: saved as its config
            self.hparams["rule"] = rule_config(rule)
        self.automatic_optimization = False
        seed = 0 if seed is None else seed
        self.net = create_model(model, seed=seed, **(model_args or {}))
        self.rule = build_rule(rule, self.net, seed, rule_args)
        self.histogram_every_n_epochs = histogram_every_n_epochs
        if compile:
            self.rule.compile_step()
        self._counts: dict[str, dict[str, torch.Tensor | int]] = {}
        self._train_steps = 0  # training steps of the current epoch (the saturation fractions' denominator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Integer class scores (N, num_classes) for raw uint8 images."""
        return self.rule.predict(x)

    def configure_callbacks(self) -> list[pl.Callback]:
        """The trainer's model summary, if it prints one, counts the integer weights (:class:`IntegerModelSummary`)."""
        summary = next((c for c in self.trainer.callbacks if isinstance(c, pl.callbacks.ModelSummary)), None)
        return [] if summary is None else [IntegerModelSummary(max_depth=summary._max_depth)]

    def configure_optimizers(self):
        opt = self.rule.configure_optimizer()
        opt.name_parameters(self.net)
        return opt

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[DIGEST_KEY] = state_digest(checkpoint)
        self._save_best(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint of another model, rule or setting, or one whose integer state fails its digest or
        does not fit this model's buffers (:func:`~torch_intnn.lightning.checkpoint.check_state`), before
        anything is loaded."""
        trainer = self._trainer
        where = f"checkpoint '{trainer.ckpt_path}'" if trainer is not None and trainer.ckpt_path else "the checkpoint"
        saved, here = _effective(checkpoint.get("hyper_parameters", {})), _effective(self.hparams)
        differ = [key for key in TRAINING_HPARAMS if key in saved and saved[key] != here[key]]
        if differ:
            pairs = "; ".join(f"{key}: {saved[key]!r} there, {here[key]!r} here" for key in differ)
            raise CheckpointError(f"{where} was trained with other settings ({pairs}); load it with the recipe it "
                                  "was trained with")
        check_state(checkpoint, self, where)
        self._load_best(checkpoint)

    # ---- training -------------------------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        fit_input = getattr(self.net, "fit_input", None)
        dm = getattr(self.trainer, "datamodule", None)
        if fit_input is not None and self.trainer.ckpt_path is None and dm is not None:
            fit_input(dm.train_images.to(self.device))

    def on_train_epoch_start(self) -> None:
        self._reset("train")
        self._train_steps = 0
        opt = self.optimizers().optimizer
        self.rule.on_train_epoch_start(self.current_epoch, opt)
        self._log_lr(1 / opt.param_groups[0]["lr_inv"])
        self.log("train/lr_inv", float(opt.param_groups[0]["lr_inv"]))

    def training_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        check_batch(x, y, self.rule.num_classes)  # also checked by the rule; here before anything else runs
        opt = self.optimizers()
        stats = self.rule.train_step(x, y, opt.optimizer)  # the whole integer step, update included
        opt.step()  # nothing is pending: Lightning counts the step
        self._train_steps += 1
        self._accumulate("train", stats, len(y))
        self.log("train/step_loss", int(stats["loss"]) / self.rule.loss_unit / max(len(y), 1), prog_bar=True)

    def on_train_epoch_end(self) -> None:
        counts = self._counts["train"]
        seen = max(int(counts["seen"]), 1)
        opt = self.optimizers().optimizer
        self._log_train(int(counts["correct"]) / seen, int(counts["loss"]) / self.rule.loss_unit / seen)
        for key, value in counts.items():
            if key == "saturated" and "units" in counts:
                self.log("train/saturated", int(value) / max(int(counts["units"]), 1))
            elif key not in ("seen", "correct", "loss", "units"):
                self.log(f"train/{key}", float(int(value)))
        named = [(opt.names.get(id(p), f"param{i}"), p) for i, p in enumerate(opt.parameters_in_order())]
        self._log_saturation(named, opt.saturated.tolist())
        opt.saturated.zero_()
        self._log_weight_histograms(named)

    def _log_saturation(self, named: list[tuple[str, torch.Tensor]], counts: list[int]) -> None:
        """Saturated weight values per update this epoch, as fractions of each weight's size: per parameter
        (``train/weight_saturated/NAME``) and over all of them (``train/weight_saturated``)."""
        steps = max(self._train_steps, 1)
        for (name, p), count in zip(named, counts, strict=True):
            self.log(f"train/weight_saturated/{name}", count / (p.numel() * steps))
        total = sum(p.numel() for _, p in named) * steps
        self.log("train/weight_saturated", sum(counts) / max(total, 1))

    # ---- evaluation -----------------------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._reset("val")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate("val", batch)

    def on_validation_epoch_end(self) -> None:
        correct, seen = int(self._counts["val"]["correct"]), int(self._counts["val"]["seen"])
        self._log_val(correct / max(seen, 1))
        if not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
            self.rule.on_validation_end(correct, seen, self.optimizers().optimizer)
            if self.rule.should_stop and not self.trainer.should_stop:
                rank_zero_info(f"{type(self.rule).__name__}: validation stalled, early stopping after epoch "
                               f"{self.current_epoch}")
                self.trainer.should_stop = True

    def on_test_epoch_start(self) -> None:
        self._reset("test")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate("test", batch)

    def predict_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """Predicted classes (N,) int64 of a batch, with its labels (``intnn predict`` writes both)."""
        x, y = batch
        return {"prediction": self.rule.predict(x).argmax(1), "label": y}

    def on_test_epoch_end(self) -> None:
        counts = self._counts["test"]
        self._log_test(int(counts["correct"]) / max(int(counts["seen"]), 1))

    # ---- helpers --------------------------------------------------------------------------------------------

    def _evaluate(self, split: str, batch) -> None:
        x, y = batch
        scores = self.rule.predict(x)
        self._accumulate(split, {"correct": (scores.argmax(1) == y).sum()}, len(y))

    def _reset(self, split: str) -> None:
        self._counts[split] = {"seen": 0, "correct": 0, "loss": 0}

    def _accumulate(self, split: str, stats: dict[str, torch.Tensor], n: int) -> None:
        counts = self._counts.setdefault(split, {"seen": 0, "correct": 0, "loss": 0})
        counts["seen"] += n
        for key, value in stats.items():
            counts[key] = counts.get(key, 0) + value.detach()
