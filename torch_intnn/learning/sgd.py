"""IntegerSGD: NITRO-D's integer SGD (nitro_d.md sec. 6), also the update step of integer DFA.

A learning rule computes an integer gradient ``G`` for each weight buffer and hands it over with
:meth:`IntegerSGD.set_grad`; :meth:`IntegerSGD.step` then applies, per parameter group,

    G'  = G + r                                  (r: carried residual, only with ``residual=True``)
    dW  = R(G' / (lr_inv * amp)) + T(W / decay_inv)   (second term only if decay_inv > 0)
    r   = G' - R(G' / (lr_inv * amp)) * lr_inv * amp
    W  <- saturate(W - dW, weight_bits)

where ``R`` is the group's rounding rule (``"trunc"`` as both papers, ``"floor"`` or ``"round"``) and ``T`` is
truncation. The step is computed in int64, so it cannot wrap: ``|G'| < 2**62`` is the only bound, far above any
sum of ``2**17`` int8 x int32 products. Weights that leave the ``weight_bits`` range are saturated and counted
in ``saturated`` (int64, one count per parameter in param-group order, which the trainer logs as fractions and
resets); with ``strict=True`` the first one raises :class:`OverflowError` naming the parameter instead. ``G`` is
a sum over the batch, not a mean. It is a ``torch.optim.Optimizer`` so that Lightning's manual optimisation
counts its steps (``max_steps``, step-based checkpoints); its param groups and residuals are saved in
``state_dict()``, so a schedule that changes ``lr_inv`` resumes exactly.
"""

from __future__ import annotations

from typing import Iterable

import torch

from torch_intnn.ops._checks import check_int_arg, check_integer
from torch_intnn.ops.rounding import div_floor, div_pow2, div_round, div_trunc, int_range

__all__ = ["IntegerSGD", "update_value", "apply_update"]

_ROUND = {"trunc": div_trunc, "floor": div_floor, "round": div_round}


def update_value(p: torch.Tensor, g: torch.Tensor, residual: torch.Tensor | None, divisor: int | torch.Tensor,
                 rounding: str, decay_inv: int, carry: bool, shift: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The update of one parameter before saturation (module docstring): ``(W - dW, r)`` in int64, ``r`` the
    new residual (``None`` unless ``carry``). ``divisor`` is ``lr_inv * amp``, an int or an int64 0-d tensor;
    ``shift``, if given, is its log2 as a tensor (a power-of-two divisor, divided by shifts: a runtime integer
    division costs tens of cycles per element). No host synchronisation, so it also runs in a compiled step."""
    g = g.to(torch.int64)
    if carry and residual is not None:
        g = g + residual
    if shift is not None:
        q = div_pow2(g, shift, rounding)
    else:
        q = _ROUND[rounding](g, divisor)
    new_residual = None
    if carry:
        if shift is not None:
            new_residual = g - torch.bitwise_left_shift(q, shift)
        elif isinstance(divisor, int) and rounding == "floor" and divisor & (divisor - 1) == 0:
            new_residual = torch.bitwise_and(g, divisor - 1)  # g - floor(g / 2**k) * 2**k: g's low k bits, one pass
        else:
            new_residual = g - q * divisor
    if decay_inv:
        q = q + div_trunc(p.to(torch.int64), decay_inv)
    return p - q, new_residual  # int64 by type promotion


def apply_update(plan_entry: tuple, g: torch.Tensor) -> torch.Tensor:
    """Apply gradient ``g`` to one parameter of :meth:`IntegerSGD.fused_plan` in place (weight saturated,
    residual carried); returns the number of saturated values (int64 0-d). Non-strict; no host sync."""
    p, residual, divisor, shift, rounding, decay_inv, lo, hi = plan_entry
    new, new_residual = update_value(p, g, residual, divisor, rounding, decay_inv, residual is not None, shift)
    outside = ((new < lo) | (new > hi)).sum()
    p.copy_(new.clamp(lo, hi))
    if residual is not None:
        residual.copy_(new_residual)
    return outside


class IntegerSGD(torch.optim.Optimizer):
    """Integer SGD over int32 buffers.

    Args:
        params: int32 tensors (module buffers) or param-group dicts overriding the defaults below.
        lr_inv: positive learning-rate divisor (NITRO-D 512; PocketNN 1000).
        amp: positive extra divisor per group (NITRO-D's per-layer amplification; 640 for forward layers).
        decay_inv: weight-decay divisor; 0 turns decay off.
        rounding: rounding of the gradient step: ``"trunc"``, ``"floor"`` or ``"round"``.
        weight_bits: saturate weights to this symmetric signed width after the step (16 -> +-32767); ``None``
            saturates to int32.
        residual: carry the rounding remainder of each step into the next (error feedback), so that small
            gradients accumulate instead of vanishing in the dead zone ``|G| < lr_inv * amp``.
        strict: raise instead of saturating when a weight would leave the ``weight_bits`` range.
        names: optional display names of the parameters (e.g. ``"fc1.weight"``), used in errors.
    """

    def __init__(
        self,
        params: Iterable,
        lr_inv: int = 512,
        amp: int = 1,
        decay_inv: int = 0,
        rounding: str = "trunc",
        weight_bits: int | None = 16,
        residual: bool = False,
        strict: bool = False,
        names: dict[int, str] | None = None,
    ) -> None:
        defaults = dict(
            lr_inv=lr_inv, amp=amp, decay_inv=decay_inv, rounding=rounding, weight_bits=weight_bits, residual=residual
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            self._check_group(group)
        self._grads: dict[torch.Tensor, torch.Tensor] = {}
        self._divisors: dict[tuple, tuple] = {}
        self.strict = strict
        self.names = dict(names or {})
        self.saturated = self._zero_counts(self.parameters_in_order())

    @staticmethod
    def _zero_counts(params: list[torch.Tensor]) -> torch.Tensor:
        return torch.zeros(len(params), dtype=torch.int64, device=params[0].device if params else None)

    def parameters_in_order(self) -> list[torch.Tensor]:
        """Every parameter in param-group order: the order of :attr:`saturated` and of :meth:`fused_plan`."""
        return [p for group in self.param_groups for p in group["params"]]

    def check_groups(self) -> None:
        """Check every param group's settings (also after a schedule or a user changed them): ``ValueError``
        naming the setting and its valid range. :meth:`step` and the learning rules call it before any update."""
        for group in self.param_groups:
            self._check_group(group)

    @staticmethod
    def _check_group(group: dict) -> None:
        for key in ("lr_inv", "amp"):
            check_int_arg(f"IntegerSGD {key}", group[key], 1)
        check_int_arg("IntegerSGD decay_inv (0 = off)", group["decay_inv"], 0)
        if group["weight_bits"] is not None:
            check_int_arg("IntegerSGD weight_bits", group["weight_bits"], 2, 32)
        if group["rounding"] not in _ROUND:
            raise ValueError(f"IntegerSGD: rounding must be one of {sorted(_ROUND)}, got {group['rounding']!r}")
        for p in group["params"]:
            check_integer(p, "IntegerSGD parameter")

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        if hasattr(self, "_grads"):
            self._check_group(self.param_groups[-1])
            self.saturated = torch.cat([self.saturated, self._zero_counts(self.param_groups[-1]["params"])])

    def set_grad(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        """Hand over the integer gradient of ``param`` (same shape, any integer dtype) for the next step."""
        check_integer(grad, "IntegerSGD gradient")
        if grad.shape != param.shape:
            raise ValueError(f"IntegerSGD: gradient shape {tuple(grad.shape)} != parameter shape {tuple(param.shape)}")
        self._grads[param] = grad

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._grads.clear()

    @torch.no_grad()
    def step(self, closure=None):
        """Apply every gradient handed over since the last step; parameters without one are left alone.

        Two phases: every new value is computed first and written only if none overflows in strict mode, so
        an :class:`OverflowError` leaves all weights and residuals as they were.
        """
        self.check_groups()
        loss = closure() if closure is not None else None
        updates = []
        index = 0
        for group in self.param_groups:
            lo, hi = int_range(group["weight_bits"] or 32)
            for p in group["params"]:
                index += 1
                g = self._grads.pop(p, None)
                if g is None:
                    continue
                residual = self.state[p].get("residual") if group["residual"] else None
                new, residual = update_value(p, g, residual, group["lr_inv"] * group["amp"], group["rounding"],
                                             group["decay_inv"], group["residual"])
                low, high = torch.aminmax(new)
                outside = torch.zeros((), dtype=torch.int64, device=new.device)
                if int(low) < lo or int(high) > hi:  # count only when something saturates (one pass otherwise)
                    outside = ((new < lo) | (new > hi)).sum()
                if self.strict and int(outside):
                    self._grads.clear()
                    raise OverflowError(
                        f"IntegerSGD (strict): {int(outside)} values of {self._name(p)} would leave the "
                        f"{group['weight_bits'] or 32}-bit range [{lo}, {hi}] (reaching [{int(new.min())}, "
                        f"{int(new.max())}]); no weight was changed"
                    )
                updates.append((index - 1, p, new.clamp_(lo, hi), residual, outside))
        for i, p, new, residual, outside in updates:
            p.copy_(new)
            if residual is not None:
                self.state[p]["residual"] = residual
            self.saturated[i] += outside
        return loss

    def fused_plan(self) -> list[tuple]:
        """Everything :func:`apply_update` needs per parameter, in param-group order, for a rule's fused step:
        ``(param, residual buffer or None, divisor, shift, rounding, decay_inv, lo, hi)``, with ``divisor``
        (``lr_inv * amp``) an int64 0-d tensor and ``shift`` its log2 as one when it is a power of two, else
        ``None``.

        Divisors are tensors so that a schedule changing ``lr_inv`` does not change a compiled graph (only a
        change between a power of two and another divisor does); residual buffers are created (zeros) here,
        so the fused step can update them in place.
        """
        if self._grads:
            raise RuntimeError("IntegerSGD: gradients are pending from rule.step(); call step() before a fused step")
        self.check_groups()
        plan = []
        for group in self.param_groups:
            d = group["lr_inv"] * group["amp"]
            device = group["params"][0].device
            if (d, device) not in self._divisors:  # built once per value: a step then creates no tensor
                shift = d.bit_length() - 1 if d & (d - 1) == 0 else None
                self._divisors[d, device] = (torch.tensor(d, dtype=torch.int64, device=device),
                                             None if shift is None else torch.tensor(shift, device=device))
            divisor, shift = self._divisors[d, device]
            lo, hi = int_range(group["weight_bits"] or 32)
            for p in group["params"]:
                residual = None
                if group["residual"]:
                    residual = self.state[p].get("residual")
                    if residual is None:
                        residual = self.state[p]["residual"] = torch.zeros(p.shape, dtype=torch.int64, device=p.device)
                plan.append((p, residual, divisor, shift, group["rounding"], group["decay_inv"], lo, hi))
        return plan

    def _name(self, p: torch.Tensor) -> str:
        return self.names.get(id(p), f"a parameter of shape {tuple(p.shape)}")

    def name_parameters(self, module: torch.nn.Module) -> None:
        """Name every parameter that is a buffer of ``module`` after its ``named_buffers`` entry."""
        for name, buf in module.named_buffers():
            self.names[id(buf)] = name
