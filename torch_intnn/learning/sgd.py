"""IntegerSGD: NITRO-D's integer SGD (nitro_d.md sec. 6), also the update step of integer DFA.

A learning rule computes an integer gradient ``G`` for each weight buffer and hands it over with
:meth:`IntegerSGD.set_grad`; :meth:`IntegerSGD.step` then applies, per parameter group,

    G'  = G + r                                  (r: carried residual, only with ``residual=True``)
    dW  = R(G' / (lr_inv * amp)) + T(W / decay_inv)   (second term only if decay_inv > 0)
    r   = G' - R(G' / (lr_inv * amp)) * lr_inv * amp
    W  <- saturate(W - dW, weight_bits)

where ``R`` is the group's rounding rule (``"trunc"`` as both papers, ``"floor"`` or ``"round"``) and ``T`` is
truncation. ``G`` is a sum over the batch, not a mean. It is a ``torch.optim.Optimizer`` so that Lightning's manual
optimisation counts its steps (``max_steps``, step-based checkpoints); its param groups and residuals are
saved in ``state_dict()``, so a schedule that changes ``lr_inv`` resumes exactly.
"""

from __future__ import annotations

from typing import Iterable

import torch

from torch_intnn.ops._checks import check_integer
from torch_intnn.ops.rounding import div_floor, div_round, div_trunc, int_range

__all__ = ["IntegerSGD"]

_ROUND = {"trunc": div_trunc, "floor": div_floor, "round": div_round}


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
    ) -> None:
        defaults = dict(
            lr_inv=lr_inv, amp=amp, decay_inv=decay_inv, rounding=rounding, weight_bits=weight_bits, residual=residual
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            self._check_group(group)
        self._grads: dict[torch.Tensor, torch.Tensor] = {}

    @staticmethod
    def _check_group(group: dict) -> None:
        for key in ("lr_inv", "amp"):
            if not isinstance(group[key], int) or group[key] <= 0:
                raise ValueError(f"IntegerSGD: {key} must be a positive int, got {group[key]!r}")
        if not isinstance(group["decay_inv"], int) or group["decay_inv"] < 0:
            raise ValueError(f"IntegerSGD: decay_inv must be an int >= 0 (0 = off), got {group['decay_inv']!r}")
        if group["rounding"] not in _ROUND:
            raise ValueError(f"IntegerSGD: rounding must be one of {sorted(_ROUND)}, got {group['rounding']!r}")
        for p in group["params"]:
            check_integer(p, "IntegerSGD parameter")

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        if hasattr(self, "_grads"):
            self._check_group(self.param_groups[-1])

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
        """Apply every gradient handed over since the last step; parameters without one are left alone."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            divisor = group["lr_inv"] * group["amp"]
            rnd = _ROUND[group["rounding"]]
            lo, hi = int_range(group["weight_bits"] or 32)
            for p in group["params"]:
                g = self._grads.pop(p, None)
                if g is None:
                    continue
                g = g.to(torch.int64)
                if group["residual"]:
                    state = self.state[p]
                    if "residual" not in state:
                        state["residual"] = torch.zeros_like(p, dtype=torch.int64)
                    g = g + state["residual"]
                q = rnd(g, divisor)
                if group["residual"]:
                    state["residual"] = g - q * divisor
                if group["decay_inv"]:
                    q = q + div_trunc(p.to(torch.int64), group["decay_inv"])
                p.copy_((p.to(torch.int64) - q).clamp_(lo, hi))
        return loss
