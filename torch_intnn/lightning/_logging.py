"""What integer and float runs log alike, so that TensorBoard overlays them: the same tags in the same units.

* ``train/acc``, ``val/acc``, ``test/acc``: fractions of right predictions (``intnn fit`` logs the test
  accuracy of the best-on-validation checkpoint as ``test/acc_best_val``, beside the final weights' ``test/acc``);
* ``train/loss``: the training loss per sample, epoch mean: in nats for a cross-entropy loss (the float twins'
  and integer DFA's, whose 1/16-nat integer is converted here), in the rule's own units otherwise (NITRO-D's RSS,
  PocketNN's L2);
* ``train/lr``: the float learning rate the epoch trains with, of the first param group (for an integer rule
  ``1 / lr_inv``, its step per summed sample in the rule's units);
* ``weights/<name>``: histograms of the trained weights only (no lookup tables or statistics), every
  ``histogram_every_n_epochs`` epochs;
* ``hp_metric``: the best validation accuracy of the fit so far (saved in checkpoints, so a resumed run goes on
  from it).

Integers become floats here, outside the integer step.
"""

from __future__ import annotations

from typing import Iterable

import torch

__all__ = ["RunLogging"]

_BEST_KEY = "torch_intnn_best_val_acc"


class RunLogging:
    """Mixin of :class:`~torch_intnn.lightning.IntegerClassifier` and :class:`~torch_intnn.lightning.FloatClassifier`
    (module docstring)."""

    histogram_every_n_epochs: int
    _best_val: float | None = None
    test_tag: str = "test/acc"  # the tag of the test accuracy (the CLI names the best checkpoint's apart)

    def _log_test(self, acc: float) -> None:
        self.log(self.test_tag, acc)

    def _log_lr(self, lr: float) -> None:
        """At the start of an epoch: the learning rate it trains with."""
        self.log("train/lr", lr)

    def _log_train(self, acc: float, loss: float) -> None:
        self.log("train/acc", acc)
        self.log("train/loss", loss)

    def _log_val(self, acc: float) -> None:
        self.log("val/acc", acc, prog_bar=True)
        trainer = self.trainer
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self._best_val = acc if self._best_val is None else max(self._best_val, acc)
        self.log("hp_metric", self._best_val)

    def _log_weight_histograms(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        every = self.histogram_every_n_epochs
        experiment = getattr(self.logger, "experiment", None)
        if not every or self.current_epoch % every or not hasattr(experiment, "add_histogram"):
            return
        for name, weight in weights:
            experiment.add_histogram(f"weights/{name}", weight.detach().cpu().numpy(), self.global_step)

    def _save_best(self, checkpoint: dict) -> None:
        checkpoint[_BEST_KEY] = self._best_val

    def _load_best(self, checkpoint: dict) -> None:
        best = checkpoint.get(_BEST_KEY)
        self._best_val = float(best) if isinstance(best, (int, float)) else None
