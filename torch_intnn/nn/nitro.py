"""NITRO-D's element-wise layers: NITRO-Scaling, NITRO-ReLU (with its integer backward) and integer dropout.

Pirillo, Colombo, Roveri, *NITRO-D: Native Integer-only Training of Deep Convolutional Neural Networks*
(arXiv 2407.11698); equations as in ``shared/reference/nitro_d.md`` secs. 2, 3 and 7. Every division here is
``T(a / b)``, truncation toward zero (:func:`torch_intnn.ops.rounding.div_trunc`), as in the paper's code:
``T(-5 / 4) == -1`` where a floor would give ``-2``.

These modules have a ``forward`` and, where a learning rule needs one, an integer ``backward(grad)`` method:
there is no autograd. In training mode a module keeps what its backward reads (NITRO-ReLU keeps its input,
dropout its mask); in eval mode it keeps nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from torch_intnn.nn._draws import randint
from torch_intnn.nn.activations import INT_MAX, SLOPE_ONE, IntActivation
from torch_intnn.ops._checks import check_integer
from torch_intnn.ops import fused
from torch_intnn.ops.rounding import div_trunc, div_trunc_sat8

__all__ = ["NitroScaling", "NitroReLU", "IntDropout", "NITRO_RELU_SHIFT"]

#: Mean-shift constant of NITRO-ReLU for each negative slope 1/k (nitro_d.md sec. 3; empirical, ~47.6 (1 - 1/k)).
NITRO_RELU_SHIFT = {3: 31, 4: 36, 5: 38, 7: 40, 8: 42, 10: 43, 15: 44, 16: 44, 20: 45}


class NitroScaling(nn.Module):
    """NITRO-Scaling: ``s = clamp(T(z / SF), -127, 127)`` as int8 (nitro_d.md sec. 2).

    ``SF`` is ``256 * fan_in`` for every layer of the paper, so ``s = T(mean_k(x_k w_k) / 256)``. The backward
    is the identity: it skips the ``1 / SF`` factor, so every weight gradient upstream is ``SF`` times the true
    one, and IntegerSGD's divisor ``lr_inv * amp`` absorbs it.

    Args:
        scale_factor: the positive integer divisor ``SF``.

    Shapes: z (N, ...) any integer dtype -> s (N, ...) int8 in [-127, 127].
    """

    def __init__(self, scale_factor: int) -> None:
        super().__init__()
        if not isinstance(scale_factor, int) or scale_factor <= 0:
            raise ValueError(f"NitroScaling needs a positive int scale factor, got {scale_factor!r}")
        self.scale_factor = scale_factor

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_integer(z, "NitroScaling input")
        return div_trunc_sat8(z, self.scale_factor)

    def backward(self, grad: torch.Tensor) -> torch.Tensor:
        """Identity (the paper's choice): returns ``grad`` unchanged."""
        return grad

    def extra_repr(self) -> str:
        return f"s = clamp(T(z / {self.scale_factor}), -127, 127) -> int8; backward identity"


class NitroReLU(IntActivation):
    """NITRO-ReLU: a mean-shifted leaky ReLU with slope ``1/k`` on int8 (nitro_d.md sec. 3).

    forward, on the scaling output ``s`` in [-127, 127]::

        y = clamp(s, 0, 127) + T(clamp(s, -127, 0) / k) - shift        (k = 4: y in [-67, 91])

    backward, with the kept input ``s``: ``g_s = T(g_y / q(s))``, where ``q = 1`` for ``0 <= s < 127``,
    ``q = k`` for ``s < 0`` (negative saturation at -127 is *not* zeroed, as in the paper) and the gradient is
    0 for ``s >= 127`` (the paper divides by INT32_MAX, which is 0 for every int32 but +-INT32_MAX).

    The derivative protocol of :class:`~torch_intnn.nn.activations.IntActivation`, on the kept input ``s``:
    ``inv_slope`` G is 1, ``k`` and ``INT_MAX`` on those three pieces, ``slope`` 8, ``round(8 / k)`` and 0
    eighths; ``backward`` is the one-pass form of ``T(g / G)`` above (equal to it for ``|g| < INT_MAX``).

    Args:
        k: inverse of the negative slope.
        shift: the mean-shift constant; default from :data:`NITRO_RELU_SHIFT` (36 for ``k = 4``).

    Shapes: s (N, ...) int8 -> y (N, ...) int8. ``backward``: g (N, ...) any integer dtype -> same dtype.
    """

    def __init__(self, k: int = 4, shift: int | None = None) -> None:
        super().__init__()
        if shift is None:
            if k not in NITRO_RELU_SHIFT:
                raise ValueError(f"NitroReLU has no tabulated shift for k={k}; pass shift= (known k: "
                                 f"{sorted(NITRO_RELU_SHIFT)})")
            shift = NITRO_RELU_SHIFT[k]
        if k < 1 or not 0 <= shift <= 127 - 127 // k:
            raise ValueError(f"NitroReLU needs k >= 1 and 0 <= shift <= {127 - 127 // k}, got k={k}, shift={shift}")
        self.k, self.shift = k, shift
        self._tables: dict[tuple, torch.Tensor] = {}

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        check_integer(s, "NitroReLU input")
        if s.dtype != torch.int8:
            raise TypeError(f"NitroReLU expects the int8 output of NitroScaling, got dtype {s.dtype}")
        self._keep(s)
        if fused.runs_on(s):  # one pass: the formula below, tabulated for the 256 int8 values
            return fused.lookup8(s, self._table(s.device))
        return self._formula(s)

    def _formula(self, s: torch.Tensor) -> torch.Tensor:
        # In place on fresh tensors: an allocation costs more than the arithmetic at these sizes.
        y = s.clamp(0, 127)
        y += div_trunc(s.clamp(-127, 0), self.k)
        return y.sub_(self.shift)  # in [-127/k - shift, 127 - shift]

    def _table(self, device: torch.device) -> torch.Tensor:
        """:meth:`_formula` of every int8 value -128..127, computed once per device, k and shift."""
        key = (device, self.k, self.shift)
        if key not in self._tables:
            self._tables[key] = self._formula(torch.arange(-128, 128, dtype=torch.int16, device=device).to(torch.int8))
        return self._tables[key]

    def _state_of(self, s: torch.Tensor) -> torch.Tensor:
        return s

    def _inv_slope_of(self, s: torch.Tensor) -> torch.Tensor:
        return torch.where(s < 0, self.k, 1).masked_fill(s >= 127, INT_MAX).to(torch.int32)

    def _slope_of(self, s: torch.Tensor) -> torch.Tensor:
        slope = (2 * SLOPE_ONE + self.k) // (2 * self.k)  # round(8 / k), a Python int
        return torch.where(s < 0, slope, SLOPE_ONE).masked_fill(s >= 127, 0).to(torch.int32)

    def backward(self, grad: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """``T(grad / q(s))`` (see the class docstring), element-wise.

        ``at`` (the values of ``s``) defaults to the input kept by the last training-mode forward; a caller whose
        gradient is zero outside a few positions (a max-pooled head) may pass ``grad`` and ``s`` at those
        positions only.
        """
        s = self._kept() if at is None else at
        check_integer(grad, "NitroReLU grad")
        if s.shape != grad.shape:
            raise ValueError(f"NitroReLU.backward: grad {tuple(grad.shape)} and input {tuple(s.shape)} differ")
        if grad.dtype == torch.int32 and fused.runs_on(grad):
            return fused.nitro_relu_grad(grad, s, self.k)  # one pass
        g = torch.where(s < 0, div_trunc(grad, self.k), grad)
        return g.masked_fill(s >= 127, 0)

    def extra_repr(self) -> str:
        lo, hi = -(127 // self.k) - self.shift, 127 - self.shift
        return (f"y = clamp(s, 0, 127) + T(clamp(s, -127, 0) / {self.k}) - {self.shift} in [{lo}, {hi}]; "
                f"backward T(g / q), q = 1 | {self.k} (s < 0) | inf (s >= 127)")


class IntDropout(nn.Module):
    """Integer inverted dropout (nitro_d.md sec. 7): ``y = T(x * m * F / 1000)``, ``F = floor(1000 / (1 - p))``.

    ``p`` is given in percent (``p_pct = 15`` is the paper's 0.15, ``F = 1176``). The keep mask ``m`` is drawn
    per element as ``randint(0, 100) >= p_pct`` from the generator passed to ``forward`` (the learning rule seeds
    it from its seed and step counter, so a resumed run draws the same masks). Eval mode is the identity.

    Args:
        p_pct: drop probability in percent, 0..99.
        in_max: the largest ``|x|`` the layer can receive (91 after NITRO-ReLU); sets the output width.

    Shapes: x (N, ...) int8 or int16 -> y (N, ...) int8 if ``in_max * F / 1000 <= 127`` (attribute
    ``out_bits``), else int16.
    """

    def __init__(self, p_pct: int, in_max: int = 127) -> None:
        super().__init__()
        if not isinstance(p_pct, int) or not 0 <= p_pct < 100:
            raise ValueError(f"IntDropout needs p_pct, an int percentage in 0..99, got {p_pct!r}")
        self.p_pct, self.in_max = p_pct, in_max
        self.factor = 100_000 // (100 - p_pct)  # floor(1000 / (1 - p))
        self.out_bits = 8 if in_max * self.factor // 1000 <= 127 else 16
        self.mask: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_integer(x, "IntDropout input")
        out_dtype = torch.int8 if self.out_bits == 8 else torch.int16
        if not self.training or self.p_pct == 0:
            self.mask = None
            return x.to(out_dtype)
        if generator is None:
            raise ValueError("IntDropout in training mode needs generator= (the learning rule passes a seeded one)")
        self.mask = randint(0, 100, tuple(x.shape), generator, torch.int16) >= self.p_pct
        return self._scale(x)

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        scaled = div_trunc(x.to(torch.int32) * self.factor, 1000)
        out_dtype = torch.int8 if self.out_bits == 8 else torch.int16
        return scaled.masked_fill(~self.mask, 0).to(out_dtype)

    def backward(self, grad: torch.Tensor) -> torch.Tensor:
        """Same mask and scale as the forward: ``T(g * m * F / 1000)`` (identity in eval mode)."""
        if self.mask is None:
            return grad
        return div_trunc(grad.to(torch.int64) * self.factor, 1000).masked_fill(~self.mask, 0).to(grad.dtype)

    def extra_repr(self) -> str:
        return f"p={self.p_pct}%, y = T(x * m * {self.factor} / 1000) -> int{self.out_bits}"
