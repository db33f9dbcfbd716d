"""The ``"nitro"`` learning rule: NITRO-D's integer local error signals (nitro_d.md secs. 5-6).

Per mini-batch: one training-mode forward of a :class:`torch_intnn.models.nitro.NitroNet` (blocks keep their
inputs, NITRO-ReLU inputs and outputs); then the output layer's gradient from the global loss, and for every
block its head's loss on the block's own output, the head's weight gradient and the forward layer's weight
gradient. Each loss is the residual sum of squares against one-hot targets scaled to 32::

    L = sum_{n,c} (y - y_hat)^2,      delta = clamp(y_hat - y, -127, 127)   (int8; the factor 2 is dropped)

No error crosses a block. Every gradient is computed from pre-update weights and handed to IntegerSGD, which
applies them all at ``optimizer.step()``; the result equals the paper's sequential order (output layer, then
blocks in reverse), since each block's update reads only its own pre-update weights.

Deliberate differences from the reference code (nitro_d.md sec. 11): ``delta`` saturates instead of wrapping
around int8 (quirk 2); the head's max-pool pads with -inf (quirk 3); the CNN's FC block is stepped once, not
twice (quirk 6). The per-conv amplification is selectable (``conv_amp``).
"""

from __future__ import annotations

import torch
from torch import nn

from torch_intnn.learning.base import LearningRule, register_rule
from torch_intnn.learning.schedule import PlateauSchedule
from torch_intnn.learning.sgd import IntegerSGD
from torch_intnn.learning.similarity import scale_like, sim_loss
from torch_intnn.nn._draws import DrawRecorder
from torch_intnn.nn.nitro_net import NitroNet
from torch_intnn.ops._checks import check_int_arg
from torch_intnn.ops.rounding import count_saturated8, div_round, saturate

__all__ = ["NitroRule", "nitro_targets", "rss_loss"]

def nitro_targets(y: torch.Tensor, num_classes: int, value: int = 32) -> torch.Tensor:
    """One-hot targets times ``value``: y (N,) int64 labels -> (N, num_classes) int8 in {0, value}."""
    t = torch.zeros(y.shape[0], num_classes, dtype=torch.int8, device=y.device)
    return t.scatter_(1, y.view(-1, 1), value)


def rss_loss(y_hat: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RSS loss and its error: (N, C) int8 scores and targets -> (delta (N, C) int8, loss int64 scalar).

    ``loss = sum (y_hat - target)^2`` exactly; ``delta = clamp(y_hat - target, -127, 127)`` (the paper's int8
    cast wraps when ``y_hat - 32 < -128``; saturation keeps the error's sign).
    """
    diff = y_hat.to(torch.int32) - target.to(torch.int32)
    loss = (diff * diff).sum(dtype=torch.int64)
    return saturate(diff, 8).to(torch.int8), loss


@register_rule("nitro")
class NitroRule(LearningRule):
    """NITRO-D local-loss learning with IntegerSGD and a validation-driven plateau schedule.

    Args:
        model: a :class:`~torch_intnn.nn.NitroNet` (any ``nitro_*`` registered model), or a plain
            ``nn.Sequential`` of NITRO-D modules laid out as one (:meth:`~torch_intnn.nn.NitroNet.from_sequential`
            reads it; the rule trains its modules).
        seed: seed of the rule's randomness (augmentation, dropout); mixed with the step counter each step.
        lr_inv: IntegerSGD learning-rate divisor (512 in every paper run).
        fwd_amp: amplification of the forward layers (640 = 2**6 * num_classes); heads and output layer use 1.
        conv_amp: ``"reference"`` (default): every conv uses ``fwd_amp``, which is what the reference code runs
            and what every reported CNN number used (nitro_d.md sec. 6, "amp bug"); ``"paper"``: the intended
            ``fwd_amp * floor(H * W / (kh * kw))`` per conv, with (kh, kw) the head's pool (sec. 4).
        fwd_decay_inv: weight-decay divisor of the forward layers (the paper's eta_inv; 0 = off).
        head_decay_inv: weight-decay divisor of the heads and the output layer (eta_inv^lr; 0 = off).
        target: the one-hot target value (32).
        rounding, residual, weight_bits: passed to :class:`IntegerSGD` (paper: ``"trunc"``, False, 16).
        plateau: run the :class:`PlateauSchedule` from :meth:`on_validation_end` (paper settings below).
        plateau_patience, plateau_start, min_delta_bp, stop_patience, stop_start: the schedule's settings (15,
            10, 100, 35, 30; ``stop_patience=0``: no early stopping by the rule). Under Lightning,
            :attr:`should_stop` ends the fit.
        lr_milestones: epochs (counted from 0) at whose start ``lr_inv`` is multiplied by 3, for runs with a
            fixed epoch budget (the plateau rule needs tens of epochs to act). Combined with plateau decays:
            ``lr_inv = base * 3 ** (milestones passed + plateau decays)``, recomputed (not accumulated), so a
            resumed run, even one resumed mid-epoch, gets the same value.
        local_loss: what trains each block: ``"pred"`` (the paper's: its head's RSS error), ``"sim"`` (the integer
            similarity-matching loss of :mod:`torch_intnn.learning.similarity` at the head's pooled input; the
            head still learns from its RSS) or ``"predsim"`` (both: the similarity gradient scaled to
            ``sim_weight`` times the prediction gradient's mean magnitude in each block and batch, then added).
        sim_weight: ``(numerator, denominator)``, the similarity gradient's integer weight (see ``local_loss``;
            for ``"sim"`` a plain factor on its ``2**16 dL/dp`` units).
    """

    def __init__(
        self,
        model,
        *,
        seed: int = 0,
        lr_inv: int = 512,
        fwd_amp: int = 640,
        conv_amp: str = "reference",
        fwd_decay_inv: int = 0,
        head_decay_inv: int = 0,
        target: int = 32,
        rounding: str = "trunc",
        residual: bool = False,
        weight_bits: int = 16,
        plateau: bool = True,
        plateau_patience: int = 15,
        plateau_start: int = 10,
        min_delta_bp: int = 100,
        stop_patience: int = 35,
        stop_start: int = 30,
        lr_milestones: tuple[int, ...] | list[int] = (),
        local_loss: str = "pred",
        sim_weight: tuple[int, int] | list[int] = (1, 1),
    ) -> None:
        if isinstance(model, nn.Sequential):  # a plain Sequential of the package's NITRO-D modules
            model = NitroNet.from_sequential(model)
        super().__init__(model, seed, lr_inv)
        for what, value, lo, hi in (
            ("fwd_amp", fwd_amp, 1, None),
            ("fwd_decay_inv (0 = off)", fwd_decay_inv, 0, None), ("head_decay_inv (0 = off)", head_decay_inv, 0, None),
            ("target", target, 1, 127), ("weight_bits", weight_bits, 2, 32), ("plateau_patience", plateau_patience, 1, None),
            ("plateau_start", plateau_start, 0, None), ("min_delta_bp (basis points)", min_delta_bp, 0, 10_000),
            ("stop_patience (0 = off)", stop_patience, 0, None),
            ("stop_start", stop_start, 0, None), *(("lr_milestones entry", m, 0, None) for m in lr_milestones),
        ):
            check_int_arg(f"nitro rule {what}", value, lo, hi)
        if rounding not in ("trunc", "floor", "round"):
            raise ValueError(f"nitro rule rounding must be 'trunc', 'floor' or 'round', got {rounding!r}")
        if local_loss not in ("pred", "sim", "predsim"):
            raise ValueError(f"nitro rule local_loss must be 'pred', 'sim' or 'predsim', got {local_loss!r}")
        if len(sim_weight) != 2 or min(sim_weight) < 1:
            raise ValueError(f"nitro rule sim_weight must be two positive ints (numerator, denominator), got "
                             f"{sim_weight!r}")
        if conv_amp not in ("reference", "paper"):
            raise ValueError(f"conv_amp must be 'reference' (640 for every conv) or 'paper', got {conv_amp!r}")
        if not hasattr(model, "blocks") or not hasattr(model, "output"):
            raise TypeError(f"the nitro rule needs a NitroNet (a nitro_* model) or an nn.Sequential of NITRO-D "
                            f"modules (NitroNet.from_sequential), got {type(model).__name__}")
        self.fwd_amp, self.conv_amp = fwd_amp, conv_amp
        self.fwd_decay_inv, self.head_decay_inv, self.target = fwd_decay_inv, head_decay_inv, target
        self.rounding, self.residual, self.weight_bits = rounding, residual, weight_bits
        self.register_buffer("epoch", torch.zeros((), dtype=torch.int64))  # the plateau schedule's epoch
        self.lr_milestones = tuple(sorted(lr_milestones))
        self.local_loss, self.sim_weight = local_loss, tuple(int(w) for w in sim_weight)
        self._draw_plan: list[tuple] | None = None  # the forward's random draws, for a compiled step
        self.schedule = PlateauSchedule(3, plateau_patience, plateau_start, min_delta_bp, stop_patience, stop_start) \
            if plateau else None

    def _amp(self, block) -> int:
        if self.conv_amp == "paper":  # only conv blocks have positions_per_unit > 1
            return self.fwd_amp * getattr(block, "positions_per_unit", 1)
        return self.fwd_amp

    def configure_optimizer(self) -> IntegerSGD:
        """One param group per weight: forward layers (amp, eta_inv), heads and output layer (amp 1, eta_inv^lr)."""
        groups = []
        for i, block in enumerate(self.model.blocks):
            groups.append(dict(params=[block.layer.weight], amp=self._amp(block), decay_inv=self.fwd_decay_inv,
                               name=f"block{i}.forward"))
            groups.append(dict(params=[block.head.linear.weight], amp=1, decay_inv=self.head_decay_inv,
                               name=f"block{i}.head"))
        groups.append(dict(params=[self.model.output.linear.weight], amp=1, decay_inv=self.head_decay_inv,
                           name="output"))
        opt = IntegerSGD(groups, lr_inv=self.lr_inv, rounding=self.rounding, weight_bits=self.weight_bits,
                         residual=self.residual)
        self.apply_schedule(int(self.epoch), opt)
        return opt

    def lr_inv_at(self, epoch: int) -> int:
        """``lr_inv * 3 ** (milestones passed + plateau decays so far)``."""
        decays = int(self.schedule.decays) if self.schedule is not None else 0
        return self.lr_inv * 3 ** (self.milestones_passed(epoch) + decays)

    def on_train_epoch_start(self, epoch: int, optimizer: IntegerSGD) -> None:
        self.epoch.fill_(epoch)
        self.apply_schedule(epoch, optimizer)

    @property
    def num_classes(self) -> int:
        return self.model.output.linear.out_features

    @torch.no_grad()
    def _step(self, x: torch.Tensor, y: torch.Tensor, optimizer: IntegerSGD) -> dict[str, torch.Tensor]:
        """Forward, local gradients of every block and of the output layer, handed to ``optimizer``.

        Args:
            x: (N, C, H, W) uint8 raw images. y: (N,) int64 labels.
        Returns:
            int64 scalars: ``loss`` (output-layer RSS, summed over the batch), ``correct`` (pre-update
            predictions of the model: the output layer, or the sum of all heads for an ensemble), ``local_loss``
            (sum of the heads' RSS), ``saturated`` (block scaling outputs at +-127), ``units`` (block scaling
            outputs, what ``saturated`` counts among) and, with a similarity loss, ``sim_loss`` (its sum over the
            blocks, in units of ``SIM_ONE**-2``).
        """
        self.model.train()
        generator = self.step_generator()
        self.steps += 1
        grads, stats = self.gradients(x, y, generator)
        for p, g in zip(self.parameters_in_order(), grads):
            optimizer.set_grad(p, g)
        return stats

    def parameters_in_order(self) -> list[torch.Tensor]:
        """Forward and head weight of each block, then the output layer's (the optimizer's group order)."""
        model = self.model
        return [w for b in model.blocks for w in (b.layer.weight, b.head.linear.weight)] + [model.output.linear.weight]

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> tuple:
        """Host side of a compiled step: this step's augmentation and dropout draws, made ahead from the same
        generator in the order the forward pass takes them (learned once from a one-image forward)."""
        model = self.model
        model.train()
        if self._draw_plan is None:
            recorder = DrawRecorder(torch.Generator().manual_seed(0))
            model(x[:1], generator=recorder)
            self._draw_plan = recorder.plan
        draws = DrawRecorder.draw(self._draw_plan, x.shape[0], self.step_generator())
        self.steps += 1
        return x, y, draws

    def gradients(self, x: torch.Tensor, y: torch.Tensor, generator) -> tuple[list[torch.Tensor], dict]:
        """Training-mode forward (randomness from ``generator``: a ``torch.Generator`` or drawn-ahead
        :class:`~torch_intnn.nn._draws.Draws`) and the gradients in :meth:`parameters_in_order`."""
        model = self.model
        out = model(x, generator=generator)  # (N, classes) int8
        target = nitro_targets(y, out.shape[1], self.target)
        delta, loss = rss_loss(out, target)
        grad_out, _ = model.output.backward(delta, input_grad=False)
        local = torch.zeros((), dtype=torch.int64, device=x.device)
        saturated = torch.zeros((), dtype=torch.int64, device=x.device)
        sim = torch.zeros((), dtype=torch.int64, device=x.device)
        ensemble = out.to(torch.int16) if getattr(model, "ensemble", False) else None
        block_grads = []
        units = 0
        for block in reversed(model.blocks):
            saturated = saturated + count_saturated8(block.act.kept)
            units += block.act.kept.numel()
            y_hat = block.head(block.output)
            if ensemble is not None:  # the model predicts with the sum of all heads (NitroNet ensemble=True)
                ensemble = ensemble + y_hat.to(torch.int16)
            delta_b, loss_b = rss_loss(y_hat, target)
            local = local + loss_b
            combine = None
            if self.local_loss != "pred":  # the similarity loss at the head's (pooled) input
                g_sim, loss_sim = sim_loss(block.head.linear.input, y, out.shape[1])
                sim = sim + loss_sim
                combine = self._combine(g_sim)
            grad_head, grad_fwd = block.backward(delta_b, combine)
            block_grads = [grad_fwd, grad_head] + block_grads
        correct = ((out if ensemble is None else ensemble).argmax(1) == y).sum()
        stats = {"loss": loss, "correct": correct, "local_loss": local, "saturated": saturated,
                 "units": torch.full((), units, dtype=torch.int64, device=x.device)}
        if self.local_loss != "pred":
            stats["sim_loss"] = sim
        return block_grads + [grad_out], stats

    def _combine(self, g_sim: torch.Tensor):
        """The block's gradient at its pooled features from the prediction gradient ``g_pred`` and the similarity
        gradient ``g_sim``: ``"sim"``: ``g_sim`` times ``sim_weight``; ``"predsim"``: ``g_pred`` plus ``g_sim``
        scaled to ``sim_weight`` times ``g_pred``'s mean magnitude (:func:`scale_like`)."""
        num, den = self.sim_weight
        if self.local_loss == "sim":
            return lambda g_pred: div_round(g_sim * num, den)
        return lambda g_pred: g_pred + scale_like(g_sim, g_pred, num, den)

    def on_validation_end(self, correct: int, total: int, optimizer: IntegerSGD) -> None:
        """Plateau schedule on the validation count: ``lr_inv`` x3 after ``plateau_patience`` stalled epochs."""
        if self.schedule is not None:
            self.schedule.step(correct, total)
            self.apply_schedule(int(self.epoch), optimizer)

    @property
    def should_stop(self) -> bool:
        """True once validation has stalled ``stop_patience`` epochs (the paper's early stopping)."""
        return self.schedule is not None and self.schedule.should_stop

    def extra_repr(self) -> str:
        return (f"IntegerSGD lr_inv={self.lr_inv}, fwd amp={self.fwd_amp} (conv: {self.conv_amp}), "
                f"decay_inv fwd={self.fwd_decay_inv} heads={self.head_decay_inv}, targets 0/{self.target}, "
                f"rounding={self.rounding}, residual={self.residual}")
