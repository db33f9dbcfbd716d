"""Integer Direct Feedback Alignment (Nokland 2016; PocketNN's integer version, pocketnn.md secs. 3-7).

DFA replaces backprop's chain of transposed weights by fixed random feedback matrices: the output error ``e``
(N, C) is projected straight to every hidden layer k, ``g_k = e @ B_k`` with ``B_k`` (C, n_k), then multiplied
by the local slope of the activation. Each layer's weight gradient is ``delta_k^T @ a_{k-1}`` (summed over the
batch), so all layers can be updated at once from one broadcast of ``e``.

    model = create_model("pocketnn_mlp_mnist", seed=0); model.fit_input(train_images)
    rule = create_rule("dfa", model, seed=0)               # "dfa_faithful" (FaithfulDFA): PocketNN's arithmetic
    opt = rule.configure_optimizer()
    stats = rule.step(x, y, opt); opt.step()               # x raw uint8 (N, 1, 28, 28), y int64 (N,)

The model's IntLinear layers, each followed by an activation exposing ``inv_slope`` / ``slope`` after a
training-mode forward (output layer last), are listed by ``linears`` and ``acts`` or found in any module tree,
such as a plain ``nn.Sequential`` (:func:`feedback_layers`); for
:class:`DFA` also ``input_one`` and ``weight_one`` (the integers meaning 1.0; see :mod:`torch_intnn.models.pocketnn`).

Two rules over one base (:class:`DirectFeedback`: feedback matrices, the layer loop, the optimizer hand-over):

:class:`FaithfulDFA` (``"dfa_faithful"``) -- PocketNN's arithmetic exactly as pocketnn.md states it (model
variant ``"faithful"``):
    target 15 for the true class and 0 elsewhere, ``e = y_hat - t``, loss ``sum T(e^2 / 2)``;
    ``delta_L = T(e / G_L)``, ``delta_k = T((e @ B_k) / G_k)`` (T: truncation toward zero, G: pocket inverse slope);
    ``B_k`` uniform on [-r_k, r_k] without 0, ``r_k = isqrt(393204 // (n_{k-1} + n_k))``;
    gradients summed over the batch (20 in PocketNN), ``W -= T(grad / lr_inv)``, ``b -= T(sum(delta) / lr_inv)``,
    clipped to +-32767; ``lr_inv = 1000`` doubled at epochs 10, 20, ... (1-based). Only differences: sums are
    exact int64 where PocketNN's int32 could wrap (it never does at batch 20), and B and the shuffle come from
    seeded torch generators instead of glibc's ``rand()``.

:class:`DFA` (``"dfa"``; model variant ``"improved"``) -- float DFA written in fixed point. Every quantity has
a power-of-two unit (model: input 32 = one std, activations 128 = 1.0, weights 2**13 = 1.0, logits 16 per nat;
rule: e in 1/1024, B 8 = 1.0), so the integer run follows float DFA with learning rate ``1 / lr_inv`` per summed
sample, rounding aside:
    * loss: softmax cross-entropy on the logits. ``p`` comes from a 256-entry exp table (``2**15 exp(-d/16)`` of
      the distance ``d`` below the row maximum) and one rounded division by the row sum; ``e = p - onehot`` in
      1/1024. The reported loss is ``sum -ln p_y`` in 1/16 nat.
    * deltas multiply by the activation's slope (eighths: 8, 4, 1, 0 where saturated) and round:
      ``delta = round(g * slope / 8)`` -- exact pieces, no leak through saturated units (PocketNN's ``G = 127``
      leaks), no factor-2 bias of tanh's G, and ``|delta| <= |g| < 2**15`` keeps the weight-gradient product at two
      int8 limbs. ``backward="inv_slope"`` restores PocketNN's ``T(g / G)`` (ablation).
    * ``B_k`` uniform on [-8, 8] without 0 (``feedback_bound``), read as [-1, 1].
    * one IntegerSGD group per layer, divisor ``lr_inv * amp_k`` with ``amp_k = 1024 * R_k * input_one_k /
      weight_one`` (``R_k`` = 8 for hidden layers, 1 for the output): the units of its gradient.
    * SGD rounding ``floor`` with the residual carried to the next step (error feedback): the applied update is
      the floor of the exact running sum, so small gradients accumulate instead of dying in a dead zone, and with
      a power-of-two divisor the division is a shift.
    * a schedule: ``lr_inv`` doubles at each epoch in ``lr_milestones`` (powers of two: shifts), or follows a
      cosine over ``cosine_epochs`` (``lr_inv_e = round(2 lr_inv / (1 + cos(pi e / E)))``, any integer, computed
      once an epoch in exact rational arithmetic: :func:`~torch_intnn.learning.schedule.cosine_divisor`).
    * optional L2 weight decay ``2**-decay_shift`` per sample, added to the gradient (``N 2**-s w`` in its units)
      every 16th step with 16 times the weight (the carried residual spreads it; one pass over W saved in 16).
    * optional label smoothing: the target is ``label_smoothing / 1024`` on every class plus the rest on the
      true one.
    * optional augmentation, drawn from a generator seeded by (seed, step counter), so a resumed run draws the
      same: a random translation by up to ``augment_shift`` pixels (zero fill) and a left-right flip.
    * the model has no biases (see :class:`~torch_intnn.models.pocketnn.PocketMLP`); a model with biases gets
      ``input_one_k**2 * sum(delta)``, the gradient of a weight on a constant 1.0 input in the units of z.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from torch_intnn.learning.base import LearningRule, register_rule
from torch_intnn.learning.schedule import cosine_divisor
from torch_intnn.learning.sgd import IntegerSGD
from torch_intnn.nn._draws import randint
from torch_intnn.nn._weight_layer import IntWeightLayer
from torch_intnn.nn.activations import IntActivation
from torch_intnn.nn.init import uniform_nonzero_int_
from torch_intnn.nn.linear import IntLinear
from torch_intnn.ops._checks import check_int_arg
from torch_intnn.ops.augment import crop_flip
from torch_intnn.ops.matmul import int_matmul
from torch_intnn.ops.rounding import div_floor, div_trunc, shift_round

__all__ = ["DFA", "DirectFeedback", "E_ONE", "FaithfulDFA", "TARGET", "feedback_layers"]

TARGET = 15  # faithful: target value of the true class (UNSIGNED_4BIT_MAX)
E_ONE = 1024  # improved: the output error e = p - onehot in units of 1/1024
_EXP_ONE = 2**15  # exp table scale
_LOGIT_ONE = 16  # improved logits: 16 per nat (models.pocketnn.LOGIT_ONE)


_MAX_SHIFT = 8  # largest augment_shift: a wider translation pushes most of a 28-pixel digit out of the frame
_DECAY_EVERY = 16  # weight decay is applied every 16 steps, 16 times as strong


def _bits(bound: int) -> int:
    """Signed width holding every value in [-bound, bound]."""
    return max(2, int(bound).bit_length() + 1)


def feedback_layers(model: nn.Module) -> list[tuple[IntLinear, nn.Module]]:
    """The (layer, activation) pairs a DFA rule trains, output layer last: ``zip(model.linears, model.acts)``
    when the model lists them (PocketMLP), else found in module order in any module tree (an ``nn.Sequential``
    of ``IntLinear`` layers, each followed by a pocket activation; flattens and input layers in between).

    Raises ``TypeError`` naming the first module DFA cannot train through (another weight layer, a module with a
    ``backward`` that is no :class:`~torch_intnn.nn.activations.IntActivation`) or an ``IntLinear`` without its
    activation.
    """
    if hasattr(model, "linears") and hasattr(model, "acts"):
        return list(zip(model.linears, model.acts))
    pairs, pending = [], None
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue  # a container: its leaves come next
        if isinstance(module, IntLinear):
            if pending is not None:
                raise TypeError(f"DFA: IntLinear '{pending[0]}' is followed by IntLinear '{name}' without an "
                                f"activation between; put a pocket activation (PocketTanh, ...) after each layer")
            pending = (name, module)
        elif isinstance(module, IntWeightLayer) or _is_activation(module):
            if not isinstance(module, IntActivation):
                raise TypeError(f"DFA cannot train through {type(module).__name__} '{name}': it trains IntLinear "
                                f"layers, each followed by an integer activation (PocketTanh, ...)")
            if pending is None:
                raise TypeError(f"DFA: activation '{name}' follows no IntLinear layer")
            pairs.append((pending[1], module))
            pending = None
    if pending is not None:
        raise TypeError(f"DFA: the output layer '{pending[0]}' needs an activation after it (PocketTanh, or "
                        f"PocketRescale for logits)")
    if len(pairs) < 2:
        raise TypeError(f"DFA needs at least one hidden IntLinear layer and an output layer; found {len(pairs)} in "
                        f"{type(model).__name__}")
    return pairs


def _is_activation(module: nn.Module) -> bool:
    """A module that shapes values and keeps something for a backward pass: an integer activation, NITRO-Scaling,
    a dropout."""
    return isinstance(module, IntActivation) or hasattr(module, "backward")


class DirectFeedback(LearningRule):
    """What both DFA rules share (module docstring): feedback matrices ``B_k`` as buffers ``feedback_{k}``
    (C, n_k) int32, the layer loop from the output error to every weight gradient, and the hand-over to
    IntegerSGD. Subclasses give the output error (:meth:`_error`), the bounds of ``B_k`` and of the errors, the
    optimizer's groups and the schedule.

    Args:
        model: a PocketMLP-like model (module docstring) built with ``variant=self.variant``.
        seed: seeds the feedback matrices and the rule's per-step randomness.
        lr_inv: initial learning-rate divisor.
        backward: ``"slope"`` (``delta = round(g * slope / 8)``) or ``"inv_slope"`` (PocketNN's ``T(g / G)``).
        rounding, residual: the IntegerSGD rounding and error feedback.
    """

    variant: str  # the model variant the rule's units assume
    e_bits: int  # signed width of the output error e
    g_bound: int  # bound of the hidden projections e @ B_k over one batch row

    def __init__(self, model: nn.Module, *, seed: int, lr_inv: int, backward: str, rounding: str, residual: bool
                 ) -> None:
        super().__init__(model, seed, lr_inv)
        name = type(self).__name__
        variant = getattr(model, "variant", self.variant)
        if variant != self.variant:
            raise ValueError(f"{name} needs a model built with variant={self.variant!r}, got variant={variant!r}; "
                             f"pass model_args {{variant: {self.variant}}}")
        if backward not in ("slope", "inv_slope"):
            raise ValueError(f"{name} backward must be 'slope' or 'inv_slope', got {backward!r}")
        self.backward, self.rounding, self.residual = backward, rounding, residual
        self.layers = feedback_layers(model)
        layers = self.layers
        sizes = [lin.in_features for lin, _ in layers] + [layers[-1][0].out_features]
        gen = torch.Generator().manual_seed(seed)
        self.bounds = []
        for k in range(len(layers) - 2, -1, -1):  # PocketNN draws the last hidden layer's B first (sec. 7)
            r = self._feedback_bound(sizes[k], sizes[k + 1])
            self.register_buffer(f"feedback_{k}", uniform_nonzero_int_(torch.zeros(sizes[-1], sizes[k + 1], dtype=torch.int32), r, gen))
            self.bounds.insert(0, r)

    def _feedback_bound(self, fan_in: int, fan_out: int) -> int:
        """The bound r of a hidden layer's ``B_k`` (uniform on [-r, r] without 0)."""
        raise NotImplementedError

    def _error(self, scores: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output error ``e`` (N, C) and the batch's integer loss (int64 scalar)."""
        raise NotImplementedError

    def _draw_augment(self, n: int) -> tuple | None:
        """The augmentation draws of a step of ``n`` images, from :meth:`step_generator` (None: no augmentation)."""
        return None

    def _decay_now(self) -> bool:
        """Whether weight decay applies in the step just counted."""
        return False

    def feedback(self, k: int) -> torch.Tensor:
        """B_k, (num_classes, n_k) int32, for hidden layer k (0-based)."""
        return getattr(self, f"feedback_{k}")

    @property
    def num_classes(self) -> int:
        return self.layers[-1][0].out_features

    def _step(self, x: torch.Tensor, y: torch.Tensor, optimizer: IntegerSGD) -> dict[str, torch.Tensor]:
        """One DFA step on raw uint8 images ``x`` (N, C, H, W) and int64 labels ``y`` (N,); gradients go to
        ``optimizer.set_grad``. Returns int64 scalars ``loss``, ``correct`` (pre-update), ``saturated``
        (hidden activations on a flat piece) and ``units`` (hidden activation values, what ``saturated`` counts
        among)."""
        args = self.prepare(x, y)
        grads, stats = self.gradients(*args)
        for p, g in zip(self.parameters_in_order(), grads):
            optimizer.set_grad(p, g)
        return stats

    def parameters_in_order(self) -> list[torch.Tensor]:
        """The model's weight buffers in the order of :meth:`configure_optimizer`'s groups and of the gradients."""
        return [p for lin, _ in self.layers for p in (lin.weight, lin.bias) if p is not None]

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> tuple:
        """The host-side part of a step: the augmentation drawn from (seed, steps), the step counter advanced,
        whether weight decay applies. Returns the arguments of :meth:`gradients`."""
        self.model.train()
        aug = self._draw_augment(x.shape[0])  # from (seed, steps) before the counter advances
        self.steps += 1
        return x, y, aug, self._decay_now()

    def _augment(self, x: torch.Tensor, aug: tuple) -> torch.Tensor:
        raise NotImplementedError

    def _decay_grad(self, k: int, weight: torch.Tensor, n: int) -> torch.Tensor:
        raise NotImplementedError

    def _bias_grad(self, k: int, delta: torch.Tensor) -> torch.Tensor:
        """The bias gradient of layer k: the batch sum of its delta."""
        return delta.sum(0)

    def gradients(self, x: torch.Tensor, y: torch.Tensor, aug: tuple | None, decay: bool
                  ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Training-mode forward and the integer gradient of every parameter (in :meth:`parameters_in_order`).
        Tensor work only, no host synchronisation: it runs inside a compiled step (:meth:`train_step`)."""
        model = self.model
        if aug is not None:
            x = self._augment(x, aug)
        scores = model(x)  # (N, C)
        correct = (scores.argmax(1) == y).sum()
        e, loss = self._error(scores, y)
        layers = self.layers
        # All hidden projections e @ B_k in one product: (N, C) @ (C, n_1 + ... + n_{L-1})
        feedback = torch.cat([self.feedback(k) for k in range(len(layers) - 1)], 1)
        g_all = int_matmul(e, feedback, a_bits=self.e_bits, b_bits=_bits(max(self.bounds)))  # K = classes: small
        saturated = torch.zeros((), dtype=torch.int64, device=x.device)
        units = x.shape[0] * sum(lin.out_features for lin, _ in layers[:-1])
        grads = []
        start = 0
        for k, (lin, act) in enumerate(layers):
            if k == len(layers) - 1:
                g, bound = e, 2 ** (self.e_bits - 1)
            else:
                g, bound = g_all[:, start : start + lin.out_features], self.g_bound
                start += lin.out_features
            if self.backward == "inv_slope":
                inv = act.inv_slope
                delta = div_trunc(g, inv)  # T(g / G)
                flat = inv == 127
            else:
                slope = act.slope  # 0, 1, 4 or 8 eighths of the centre slope
                delta = shift_round(g * slope, 3)  # round(g * f'(z)), |delta| <= |g|
                flat = slope == 0
            if k < len(layers) - 1:
                saturated = saturated + flat.sum()
            # (n_k, N) @ (N, n_{k-1}): the batch sum of delta a^T; lin.input was kept by the training forward
            grad_w = lin.weight_grad(delta, _bits(bound))
            if decay:
                grad_w = grad_w + self._decay_grad(k, lin.weight, x.shape[0])
            grads.append(grad_w)
            if lin.bias is not None:
                grads.append(self._bias_grad(k, delta))
        stats = {"loss": loss, "correct": correct, "saturated": saturated,
                 "units": torch.full((), units, dtype=torch.int64, device=x.device)}
        return grads, stats


@register_rule("dfa_faithful")
class FaithfulDFA(DirectFeedback):
    """PocketNN's integer DFA as its reference states it (module docstring): target 15, L2 error, ``T(g / G)``,
    ``B_k`` bounded by ``isqrt(393204 // (n_{k-1} + n_k))``, one IntegerSGD group with truncation, ``lr_inv``
    doubled every 10 epochs. Needs a model built with ``variant="faithful"``.

    Args:
        model, seed: as :class:`DirectFeedback`.
        lr_inv: initial learning-rate divisor (PocketNN's 1000).
        backward, rounding, residual: ablations of PocketNN's ``"inv_slope"``, ``"trunc"`` and no residual.
    """

    variant = "faithful"
    e_bits = _bits(TARGET + 127)

    def __init__(self, model: nn.Module, *, seed: int = 0, lr_inv: int = 1000, backward: str = "inv_slope",
                 rounding: str = "trunc", residual: bool = False) -> None:
        super().__init__(model, seed=seed, lr_inv=lr_inv, backward=backward, rounding=rounding, residual=residual)
        self.g_bound = (TARGET + 127) * 10 * max(self.bounds)

    def _feedback_bound(self, fan_in: int, fan_out: int) -> int:
        return math.isqrt(393204 // (fan_in + fan_out))  # pocketnn.md sec. 4.1

    def configure_optimizer(self) -> IntegerSGD:
        """One IntegerSGD group over every weight and bias (PocketNN's update)."""
        params = self.parameters_in_order()
        return IntegerSGD([{"params": params}], lr_inv=self.lr_inv, rounding=self.rounding, weight_bits=16,
                          residual=self.residual)

    def lr_inv_at(self, epoch: int) -> int:
        return self.lr_inv * 2 ** ((epoch + 1) // 10)  # doubled at the start of epochs 10, 20, ... (1-based)

    def _error(self, scores: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """PocketNN: ``e = y_hat - 15 * onehot`` (int32) and ``sum T(e^2 / 2)`` (pocketnn.md sec. 3)."""
        e = scores.to(torch.int32)
        e = e.scatter_add(1, y[:, None], torch.full_like(y[:, None], -TARGET, dtype=torch.int32))
        return e, div_trunc(e * e, 2).sum()

    def extra_repr(self) -> str:
        return (f"target {TARGET}, delta = T(g / G), B uniform +-{self.bounds} without 0, "
                f"W -= T(sum / {self.lr_inv}) doubling every 10 epochs, clip +-32767")


@register_rule("dfa")
class DFA(DirectFeedback):
    """Integer DFA as fixed-point float DFA (module docstring). Needs a model built with ``variant="improved"``.

    Args:
        model, seed: as :class:`DirectFeedback`.
        lr_inv: initial learning-rate divisor (512 with batch 100).
        lr_milestones: epochs (from 0) at whose start ``lr_inv`` doubles.
        feedback_bound: B entries are uniform on [-bound, bound] without 0 (default 8 = 1.0).
        augment_shift: random translation of each training image by up to this many pixels (0 to 8).
        augment_flip: mirror each training image left-right with probability 1/2.
        cosine_epochs: a cosine schedule over this many epochs instead of milestones.
        decay_shift: L2 weight decay of ``2**-decay_shift`` per sample (None: off).
        label_smoothing: target mass per class in 1/1024 (10: 934/1024 on the true class); at most
            1024 // classes.
        backward: ``"slope"`` or ``"inv_slope"`` (PocketNN's ``T(g / G)``, an ablation).
        rounding, residual: override the IntegerSGD rounding (``"floor"``) and error feedback (on), ablations.
    """

    variant = "improved"
    e_bits = _bits(E_ONE)
    loss_unit = _LOGIT_ONE  # the loss is in 1/16 nat

    def __init__(
        self,
        model: nn.Module,
        *,
        seed: int = 0,
        lr_inv: int = 512,
        lr_milestones: list[int] | tuple[int, ...] = (),
        feedback_bound: int = 8,
        augment_shift: int = 0,
        augment_flip: bool = False,
        decay_shift: int | None = None,
        backward: str = "slope",
        label_smoothing: int = 0,
        cosine_epochs: int | None = None,
        rounding: str = "floor",
        residual: bool = True,
    ) -> None:
        check_int_arg("DFA feedback_bound", feedback_bound, 1, 127)
        self.feedback_bound = feedback_bound  # read by _feedback_bound during the base's construction
        super().__init__(model, seed=seed, lr_inv=lr_inv, backward=backward, rounding=rounding, residual=residual)
        for m in lr_milestones:
            check_int_arg("DFA lr_milestones entry (an epoch, from 0)", m, 0)
        check_int_arg("DFA augment_shift (pixels)", augment_shift, 0, _MAX_SHIFT)
        if decay_shift is not None:
            check_int_arg("DFA decay_shift (None = off)", decay_shift, 1, 62)
        classes = self.num_classes
        for unit in ("input_one", "weight_one"):
            if not hasattr(model, unit):
                raise ValueError(f"DFA reads the fixed-point units of its model (input_one, weight_one; see "
                                 f"torch_intnn.models.pocketnn), which {type(model).__name__} lacks; build a "
                                 f"PocketMLP, or train layers of your own with FaithfulDFA ('dfa_faithful')")
        check_int_arg(f"DFA label_smoothing (1/{E_ONE} per class, {classes} classes)", label_smoothing, 0,
                      E_ONE // classes)
        if cosine_epochs is not None:
            check_int_arg("DFA cosine_epochs (None = milestones)", cosine_epochs, 1)
        if not isinstance(augment_flip, bool):
            raise ValueError(f"DFA augment_flip must be a bool, got {augment_flip!r}")
        self.lr_milestones = tuple(sorted(lr_milestones))
        self.augment_shift, self.augment_flip = augment_shift, augment_flip
        self.decay_shift, self.label_smoothing, self.cosine_epochs = decay_shift, label_smoothing, cosine_epochs
        self.g_bound = 2 * E_ONE * max(self.bounds)
        exp = [round(_EXP_ONE * math.exp(-v / _LOGIT_ONE)) for v in range(256)]  # constants, built once
        # 16 ln(total / 2**15) at total // 1024, for a row sum total of the exp table in [2**15, 16 * 2**15]
        nll = [round(_LOGIT_ONE * math.log(max(i, 32) / 32)) for i in range(16 * _EXP_ONE // 1024 + 1)]
        self.register_buffer("exp_table", torch.tensor(exp, dtype=torch.int32), persistent=False)
        self.register_buffer("nll_table", torch.tensor(nll, dtype=torch.int32), persistent=False)

    def _feedback_bound(self, fan_in: int, fan_out: int) -> int:
        return self.feedback_bound

    def configure_optimizer(self) -> IntegerSGD:
        """IntegerSGD with one group per layer, divisor ``lr_inv * amp_k`` (module docstring)."""
        groups = []
        for k, (lin, _) in enumerate(self.layers):
            params = [p for p in (lin.weight, lin.bias) if p is not None]
            groups.append({"params": params, "amp": self._amp(k)})
        return IntegerSGD(groups, lr_inv=self.lr_inv, rounding=self.rounding, weight_bits=16, residual=self.residual)

    def _amp(self, k: int) -> int:
        """Layer k's divisor beside lr_inv: E_ONE * R_k * input_one_k / weight_one, the units of its gradient."""
        r = self.bounds[k] if k < len(self.bounds) else 1
        num, den = E_ONE * r * self.model.input_one[k], self.model.weight_one
        if num % den:
            raise ValueError(f"DFA: layer {k}'s gradient units {num}/{den} are not an integer multiple of its weight's")
        return num // den

    def lr_inv_at(self, epoch: int) -> int:
        if self.cosine_epochs:  # lr = lr_0 (1 + cos(pi e / E)) / 2, as an integer divisor (rational arithmetic)
            return cosine_divisor(self.lr_inv, epoch, self.cosine_epochs)
        return self.lr_inv * 2 ** self.milestones_passed(epoch)

    def _decay_now(self) -> bool:
        return self.decay_shift is not None and int(self.steps) % _DECAY_EVERY == 0

    def _decay_grad(self, k: int, weight: torch.Tensor, n: int) -> torch.Tensor:
        """L2 decay 2**-s per sample, ``n * 2**-s * w`` in gradient units, applied every _DECAY_EVERY steps with
        that many times the weight (the residual carries it exactly; a pass over W saved 15 times in 16)."""
        factor = self._amp(k) * n * _DECAY_EVERY
        return shift_round(weight.to(torch.int64) * factor, self.decay_shift)

    def _bias_grad(self, k: int, delta: torch.Tensor) -> torch.Tensor:
        return delta.sum(0) * self.model.input_one[k] ** 2  # a weight on a constant 1.0 input, in z units

    def _error(self, scores: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer softmax cross-entropy on logits (16 per nat): ``e = p - onehot`` in 1/E_ONE (N, C) int64 and
        ``sum_n -ln p_y`` in 1/16 nat (int64 scalar)."""
        s = scores.to(torch.int32)
        top = s.amax(1, keepdim=True)
        dist = (top - s).clamp_(max=255)  # (N, C): distance below the row maximum, 16 per nat
        ex = self.exp_table.index_select(0, dist.view(-1)).view(dist.shape)  # 2**15 * exp(-dist / 16)
        total = ex.sum(1, keepdim=True)  # int64, in [2**15, C * 2**15]
        p = div_floor(2 * E_ONE * ex + total, 2 * total)  # round(E_ONE * ex / total), halves up
        e = p.scatter_add(1, y[:, None], torch.full_like(y[:, None], -E_ONE + s.shape[1] * self.label_smoothing))
        if self.label_smoothing:  # target: label_smoothing / E_ONE on every class, the rest on the true one
            e = e - self.label_smoothing
        # -ln p_y = (max - s_y) / 16 + ln(total / 2**15); the second term from a table over total / 1024
        log_total = self.nll_table.index_select(0, div_floor(total, 1024).view(-1))
        loss = (top - s.gather(1, y[:, None])).sum(dtype=torch.int64) + log_total.sum()
        return e, loss

    def _draw_augment(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """Per-image offsets (2, N) in [0, 2s] and, with ``augment_flip``, mirror flags (N, 1, 1, 1) bool, from
        :meth:`step_generator`: a resumed run draws the same."""
        if not (self.augment_shift or self.augment_flip):
            return None
        s = self.augment_shift
        gen = self.step_generator()
        off = randint(0, 2 * s + 1, (2, n), gen)
        flip = randint(0, 2, (n, 1, 1, 1), gen, torch.bool) if self.augment_flip else None
        return off, flip

    def _augment(self, x: torch.Tensor, aug: tuple) -> torch.Tensor:
        """Translate image i by ``off[:, i] - s`` pixels with zero fill, and mirror it left-right where ``flip``."""
        off, flip = aug
        return crop_flip(x, self.augment_shift, off[0], off[1], flip)

    def extra_repr(self) -> str:
        return (
            f"softmax CE (e in 1/{E_ONE}), delta = g * slope, B uniform +-{self.bounds} without 0, "
            f"W -= {self.rounding}(sum / ({self.lr_inv} * amp)) with residual={self.residual}, "
            f"lr_inv doubles at epochs {list(self.lr_milestones)}, augment_shift={self.augment_shift}, augment_flip={self.augment_flip}"
        )
