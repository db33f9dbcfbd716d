"""An integer, validation-driven plateau schedule: multiply ``lr_inv`` by a factor when validation stalls.

NITRO-D's protocol (nitro_d.md sec. 9) is Keras' ReduceLROnPlateau (factor 3, min_delta 0.01, patience 15,
from epoch 10) plus EarlyStopping (min_delta 0.01, patience 35, from epoch 30), both on *test* accuracy. Here
the same rules run on a validation split, on integer counts: an epoch improves when

    (correct - best) * 10_000 > min_delta_bp * total          (min_delta_bp = 100 is 1 percentage point)

and then ``best`` ratchets to ``correct``. No float is involved, and the state lives in int64 buffers, so it is
saved with the learning rule and a resumed run schedules the same way.
"""

from __future__ import annotations

from fractions import Fraction

import torch
from torch import nn

__all__ = ["PlateauSchedule", "cosine_divisor"]

_PI = Fraction(245850922, 78256779)  # a convergent of pi, within 1e-16


def _cos(x: Fraction) -> Fraction:
    """cos(x) for 0 <= x <= pi as an exact rational Taylor sum (error below 1e-15); integers only."""
    term, total, n = Fraction(1), Fraction(1), 0
    while abs(term) > Fraction(1, 10**16):
        n += 2
        term = -term * x * x / (n * (n - 1))
        total += term
    return total


def cosine_divisor(lr_inv: int, epoch: int, epochs: int) -> int:
    """The learning-rate divisor of a cosine schedule: ``round(2 lr_inv / (1 + cos(pi e / E)))`` at epoch
    ``e = min(epoch, E - 1)``, so the step size ``1 / lr_inv_e`` follows ``(1 + cos) / 2`` from ``1 / lr_inv``.

    Computed with Python integers and fractions (no float), so every platform gets the same divisor.
    """
    if epochs < 1 or lr_inv < 1:
        raise ValueError(f"cosine_divisor needs lr_inv >= 1 and epochs >= 1, got {lr_inv}, {epochs}")
    e = min(max(epoch, 0), epochs - 1)
    return round(2 * lr_inv / (1 + _cos(_PI * e / epochs)))


class PlateauSchedule(nn.Module):
    """Plateau learning-rate decay (``lr_inv *= factor``) and early stopping on validation counts.

    Args:
        factor: ``lr_inv`` multiplier on a plateau (3 in the paper).
        patience: epochs without improvement before a decay (15).
        start_epoch: epochs before this one are not tracked by the decay rule (10).
        min_delta_bp: improvement needed, in basis points of the validation set (100 = 1 pp, the paper's 0.01).
        stop_patience: epochs without improvement before :attr:`should_stop` turns true (35); 0 = never.
        stop_start_epoch: first epoch tracked by the stopping rule (30).

    Call :meth:`step` once per epoch, after validation, with the integer count of right predictions.
    """

    def __init__(self, factor: int = 3, patience: int = 15, start_epoch: int = 10, min_delta_bp: int = 100,
                 stop_patience: int = 35, stop_start_epoch: int = 30) -> None:
        super().__init__()
        if factor < 1 or patience < 1 or min_delta_bp < 0 or stop_patience < 0:
            raise ValueError("PlateauSchedule needs factor >= 1, patience >= 1, min_delta_bp >= 0, stop_patience >= 0")
        self.factor, self.patience, self.start_epoch, self.min_delta_bp = factor, patience, start_epoch, min_delta_bp
        self.stop_patience, self.stop_start_epoch = stop_patience, stop_start_epoch
        for name in ("epoch", "decays", "lr_best", "lr_wait", "stop_best", "stop_wait", "stopped"):
            self.register_buffer(name, torch.zeros((), dtype=torch.int64))
        self.lr_best.fill_(-1)
        self.stop_best.fill_(-1)

    def _improved(self, correct: int, best: int, total: int) -> bool:
        return best < 0 or (correct - best) * 10_000 > self.min_delta_bp * total

    def step(self, correct: int, total: int, optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Record one epoch's validation count; decay ``lr_inv`` of every param group on a plateau.

        Returns :attr:`should_stop`.
        """
        epoch = int(self.epoch)
        self.epoch += 1
        if self.stop_patience and epoch >= self.stop_start_epoch:
            if self._improved(correct, int(self.stop_best), total):
                self.stop_best.fill_(correct)
                self.stop_wait.zero_()
            else:
                self.stop_wait += 1
                if int(self.stop_wait) >= self.stop_patience:
                    self.stopped.fill_(1)
        if epoch >= self.start_epoch:
            if self._improved(correct, int(self.lr_best), total):
                self.lr_best.fill_(correct)
                self.lr_wait.zero_()
            else:
                self.lr_wait += 1
                if int(self.lr_wait) >= self.patience:
                    self.lr_wait.zero_()
                    self.decays += 1
                    if optimizer is not None:
                        for group in optimizer.param_groups:
                            group["lr_inv"] *= self.factor
        return self.should_stop

    @property
    def should_stop(self) -> bool:
        return bool(self.stopped)

    def extra_repr(self) -> str:
        return (f"lr_inv x{self.factor} after {self.patience} epochs without +{self.min_delta_bp} bp (from epoch "
                f"{self.start_epoch}); stop after {self.stop_patience} (from epoch {self.stop_start_epoch})")
