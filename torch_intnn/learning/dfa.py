"""Integer Direct Feedback Alignment (Nokland 2016; PocketNN's integer version, pocketnn.md secs. 3-7).

DFA replaces backprop's chain of transposed weights by fixed random feedback matrices: the output error ``e``
(N, C) is projected straight to every hidden layer k, ``g_k = e @ B_k`` with ``B_k`` (C, n_k), then multiplied
by the local slope of the activation. Each layer's weight gradient is ``delta_k^T @ a_{k-1}`` (summed over the
batch), so all layers can be updated at once from one broadcast of ``e``.

    model = create_model("pocketnn_mlp_mnist", seed=0); model.fit_input(train_images)
    rule = create_rule("dfa", model, seed=0)               # mode="improved"; "faithful" for PocketNN's arithmetic
    opt = rule.configure_optimizer()
    stats = rule.step(x, y, opt); opt.step()               # x raw uint8 (N, 1, 28, 28), y int64 (N,)

The model must have ``linears`` and ``acts`` (equal-length ``nn.ModuleList``: IntLinear layers, each followed
by an activation exposing ``inv_slope`` / ``slope`` after a training-mode forward; output layer last), and for
the improved mode ``input_one`` and ``weight_one`` (the integers meaning 1.0; see :mod:`torch_intnn.models.pocketnn`).

Two modes:

``"faithful"`` -- PocketNN's arithmetic exactly as pocketnn.md states it (model variant ``"faithful"``):
    target 15 for the true class and 0 elsewhere, ``e = y_hat - t``, loss ``sum T(e^2 / 2)``;
    ``delta_L = T(e / G_L)``, ``delta_k = T((e @ B_k) / G_k)`` (T: truncation toward zero, G: pocket inverse slope);
    ``B_k`` uniform on [-r_k, r_k] without 0, ``r_k = isqrt(393204 // (n_{k-1} + n_k))``;
    gradients summed over the batch (20 in PocketNN), ``W -= T(grad / lr_inv)``, ``b -= T(sum(delta) / lr_inv)``,
    clipped to +-32767; ``lr_inv = 1000`` doubled at epochs 10, 20, ... (1-based). Only differences: sums are
    exact int64 where PocketNN's int32 could wrap (it never does at batch 20), and B and the shuffle come from
    seeded torch generators instead of glibc's ``rand()``.

``"improved"`` (default; model variant ``"improved"``) -- the same algorithm written as fixed-point float DFA
(every scale a power of two, so the integer run tracks float DFA with learning rate ``1 / lr_inv``):
    * loss: softmax cross-entropy on the integer logits (16 per nat). ``p`` comes from a 256-entry exp table
      (``2**15 exp(-d/16)`` of the distance to the row maximum) and one rounded division by the row sum;
      ``e = p - onehot`` with ``E_ONE = 1024`` = probability 1; the reported loss is ``-ln p_y`` in 1/16 nat.
    * deltas multiply by the activation's slope (0 when saturated) instead of dividing by G: exact, no leak
      through saturated units, and no 2x bias of tanh's G.
    * B_k uniform on [-16, 16] without 0, read as [-1, 1] (feedback_bound = 16 = 1.0).
    * one IntegerSGD group per layer whose divisor ``lr_inv * amp_k`` undoes the layer's fixed-point units,
      ``amp_k = 8 * E_ONE * R_k * input_one_k / weight_one`` (R_k: feedback bound, 1 for the output layer);
      the bias gradient is ``input_one_k**2 * sum(delta)``, the gradient of a weight on a constant 1.0 input
      stored in the units of z, so biases share the weights' step.
    * rounding to nearest with the residual carried over (error feedback): no dead zone, no drift.
    * a step schedule: ``lr_inv`` doubles at each epoch in ``lr_milestones``.
    * optional augmentation: a random translation by up to ``augment_shift`` pixels per image (zero fill),
      drawn from a generator seeded by (seed, step counter), so a resumed run draws the same shifts.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from torch_intnn.learning.base import LearningRule, register_rule
from torch_intnn.learning.sgd import IntegerSGD
from torch_intnn.nn.init import uniform_nonzero_int_
from torch_intnn.ops.matmul import int_matmul
from torch_intnn.ops.rounding import div_floor, div_trunc

__all__ = ["DFA", "E_ONE", "TARGET"]

TARGET = 15  # faithful: target value of the true class (UNSIGNED_4BIT_MAX)
E_ONE = 1024  # improved: the output error e = p - onehot in units of 1/1024
_EXP_ONE = 2**15  # exp table scale
_LOGIT_ONE = 16  # improved logits: 16 per nat (models.pocketnn.LOGIT_ONE)


def _bits(bound: int) -> int:
    """Signed width holding every value in [-bound, bound]."""
    return max(2, int(bound).bit_length() + 1)


@register_rule("dfa")
class DFA(LearningRule):
    """Integer DFA (module docstring). Feedback matrices ``B_k`` are buffers ``feedback_{k}`` (C, n_k) int32.

    Args:
        model: a PocketMLP-like model (module docstring); its variant must match ``mode``.
        mode: ``"improved"`` or ``"faithful"``.
        seed: seeds the feedback matrices and the augmentation stream.
        lr_inv: initial learning-rate divisor (faithful 1000; improved 512 with batch 100).
        lr_milestones: improved only: epochs (from 0) at whose start ``lr_inv`` doubles.
        feedback_bound: improved only: B entries are uniform on [-bound, bound] without 0 (default 16 = 1.0).
        augment_shift: improved only: random translation of each training image by up to this many pixels.
        rounding, residual: override the IntegerSGD rounding and error feedback (ablations).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        mode: str = "improved",
        seed: int = 0,
        lr_inv: int | None = None,
        lr_milestones: list[int] | tuple[int, ...] = (),
        feedback_bound: int = 16,
        augment_shift: int = 0,
        rounding: str | None = None,
        residual: bool | None = None,
    ) -> None:
        super().__init__(model)
        if mode not in ("faithful", "improved"):
            raise ValueError(f"DFA mode must be 'faithful' or 'improved', got {mode!r}")
        variant = getattr(model, "variant", mode)
        if variant != mode:
            raise ValueError(
                f"DFA mode {mode!r} needs a model built with variant={mode!r}, got variant={variant!r}; "
                f"pass model_args {{variant: {mode}}}"
            )
        self.mode, self.seed = mode, seed
        self.faithful = mode == "faithful"
        self.lr_inv = lr_inv if lr_inv is not None else (1000 if self.faithful else 512)
        self.lr_milestones = tuple(sorted(lr_milestones))
        self.augment_shift = 0 if self.faithful else augment_shift
        self.rounding = rounding or ("trunc" if self.faithful else "round")
        self.residual = (not self.faithful) if residual is None else residual
        layers = list(zip(model.linears, model.acts))
        sizes = [lin.in_features for lin, _ in layers] + [layers[-1][0].out_features]
        gen = torch.Generator().manual_seed(seed)
        self.bounds = []
        for k in range(len(layers) - 2, -1, -1):  # PocketNN draws the last hidden layer's B first (sec. 7)
            r = math.isqrt(393204 // (sizes[k] + sizes[k + 1])) if self.faithful else feedback_bound
            self.register_buffer(f"feedback_{k}", uniform_nonzero_int_(torch.zeros(sizes[-1], sizes[k + 1], dtype=torch.int32), r, gen))
            self.bounds.insert(0, r)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))  # drives the augmentation stream
        if not self.faithful:
            exp = [round(_EXP_ONE * math.exp(-v / _LOGIT_ONE)) for v in range(256)]  # constants, built once
            nll = [round(_LOGIT_ONE * math.log(E_ONE / max(p, 1))) for p in range(E_ONE + 1)]
            self.register_buffer("exp_table", torch.tensor(exp, dtype=torch.int32), persistent=False)
            self.register_buffer("nll_table", torch.tensor(nll, dtype=torch.int32), persistent=False)

    # ----------------------------------------------------------------------------------------------------------
    def feedback(self, k: int) -> torch.Tensor:
        """B_k, (num_classes, n_k) int32, for hidden layer k (0-based)."""
        return getattr(self, f"feedback_{k}")

    def configure_optimizer(self) -> IntegerSGD:
        """IntegerSGD over the model's weights and biases (module docstring: one group, or one per layer)."""
        common = dict(rounding=self.rounding, weight_bits=16, residual=self.residual)
        layers = list(self.model.linears)
        if self.faithful:
            params = [p for lin in layers for p in (lin.weight, lin.bias) if p is not None]
            return IntegerSGD([{"params": params}], lr_inv=self.lr_inv, **common)
        groups = []
        for k, lin in enumerate(layers):
            r = self.bounds[k] if k < len(layers) - 1 else 1
            amp = 8 * E_ONE * r * self.model.input_one[k] // self.model.weight_one
            params = [p for p in (lin.weight, lin.bias) if p is not None]
            groups.append({"params": params, "amp": max(1, amp)})
        return IntegerSGD(groups, lr_inv=self.lr_inv, **common)

    def lr_inv_at(self, epoch: int) -> int:
        """The learning-rate divisor of ``epoch`` (from 0), from the initial ``lr_inv`` (idempotent on resume)."""
        if self.faithful:
            return self.lr_inv * 2 ** ((epoch + 1) // 10)  # doubled at the start of epochs 10, 20, ... (1-based)
        return self.lr_inv * 2 ** sum(1 for m in self.lr_milestones if m <= epoch)

    def on_train_epoch_start(self, epoch: int, optimizer: IntegerSGD) -> None:
        for group in optimizer.param_groups:
            group["lr_inv"] = self.lr_inv_at(epoch)

    # ----------------------------------------------------------------------------------------------------------
    def step(self, x: torch.Tensor, y: torch.Tensor, optimizer: IntegerSGD) -> dict[str, torch.Tensor]:
        """One DFA step on raw uint8 images ``x`` (N, C, H, W) and int64 labels ``y`` (N,); gradients go to
        ``optimizer.set_grad``. Returns int64 scalars ``loss``, ``correct`` (pre-update) and ``saturated``
        (hidden activations on a flat piece)."""
        model = self.model
        model.train()
        if self.augment_shift:
            x = self._augment(x)
        self.steps += 1
        scores = model(x)  # (N, C)
        correct = (scores.argmax(1) == y).sum()
        if self.faithful:
            e, loss = self._l2_error(scores, y)
            e_bits = _bits(TARGET + 127)
        else:
            e, loss = self._softmax_error(scores, y)
            e_bits = _bits(E_ONE)
        saturated = torch.zeros((), dtype=torch.int64)
        last = len(model.linears) - 1
        for k, (lin, act) in enumerate(zip(model.linears, model.acts)):
            if k == last:
                g, g_bound = e, 2**(e_bits - 1)
            else:
                g = int_matmul(e, self.feedback(k), a_bits=e_bits, b_bits=_bits(self.bounds[k]))  # (N, n_k)
                g_bound = 2 * E_ONE * self.bounds[k] if not self.faithful else 10 * (TARGET + 127) * self.bounds[k]
            if self.faithful:
                inv = act.inv_slope
                delta, d_bound = div_trunc(g, inv), g_bound
                flat = inv == 127
            else:
                slope = act.slope
                delta, d_bound = g * slope, 8 * g_bound
                flat = slope == 0
            if k < last:
                saturated = saturated + flat.sum()
            a = lin.input  # (N, n_{k-1}), kept by the training-mode forward
            grad_w = int_matmul(delta.T, a, a_bits=_bits(d_bound), b_bits=lin.input_bits)  # (n_k, n_{k-1})
            optimizer.set_grad(lin.weight, grad_w)
            if lin.bias is not None:
                grad_b = delta.sum(0)
                if not self.faithful:
                    grad_b = grad_b * model.input_one[k] ** 2  # a weight on a constant 1.0 input, in z units
                optimizer.set_grad(lin.bias, grad_b)
        return {"loss": loss, "correct": correct, "saturated": saturated}

    def _l2_error(self, scores: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """PocketNN: ``e = y_hat - 15 * onehot`` (int32) and ``sum T(e^2 / 2)`` (pocketnn.md sec. 3)."""
        e = scores.to(torch.int32)
        e = e.scatter_add(1, y[:, None], torch.full_like(y[:, None], -TARGET, dtype=torch.int32))
        return e, div_trunc(e * e, 2).sum()

    def _softmax_error(self, scores: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer softmax cross-entropy: ``e = p - onehot`` in 1/E_ONE (int32) and ``sum -ln p_y`` in 1/16 nat."""
        s = scores.to(torch.int32)
        dist = (s.amax(1, keepdim=True) - s).clamp_(max=255)  # (N, C), 16 per nat below the row maximum
        ex = torch.take(self.exp_table, dist.to(torch.int64))  # 2**15 * exp(-dist / 16)
        total = ex.sum(1, keepdim=True)
        p = div_floor(2 * E_ONE * ex + total, 2 * total)  # round(E_ONE * ex / total)
        p_y = p.gather(1, y[:, None])
        loss = torch.take(self.nll_table, p_y.to(torch.int64)).sum(dtype=torch.int64)
        e = p.scatter_add(1, y[:, None], torch.full_like(p_y, -E_ONE))
        return e, loss

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        """Translate each image by (dy, dx) in [-s, s]^2 with zero fill; draws from (seed, steps)."""
        s = self.augment_shift
        n, c, h, w = x.shape
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.steps))
        off = torch.randint(0, 2 * s + 1, (2, n), generator=gen)
        padded = nn.functional.pad(x, (s, s, s, s))  # (N, C, H + 2s, W + 2s), zeros
        rows = (off[0][:, None] + torch.arange(h))[:, None, :, None]  # (N, 1, H, 1)
        cols = (off[1][:, None] + torch.arange(w))[:, None, None, :]  # (N, 1, 1, W)
        idx = torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None]
        return padded[idx[0], idx[1], rows, cols]

    def extra_repr(self) -> str:
        if self.faithful:
            return (
                f"mode=faithful, target {TARGET}, delta = T(g / G), B uniform +-{self.bounds} without 0, "
                f"W -= T(sum / {self.lr_inv}) doubling every 10 epochs, clip +-32767"
            )
        return (
            f"mode=improved, softmax CE (e in 1/{E_ONE}), delta = g * slope, B uniform +-{self.bounds} without 0, "
            f"W -= {self.rounding}(sum / ({self.lr_inv} * amp)) with residual={self.residual}, "
            f"lr_inv doubles at epochs {list(self.lr_milestones)}, augment_shift={self.augment_shift}"
        )
