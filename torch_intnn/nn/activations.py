"""PocketNN's pocket activations (pocketnn.md sec. 1), and the derivative protocol of every integer activation.

Every activation, pocket or NITRO-D (:class:`~torch_intnn.nn.NitroReLU`), is an :class:`IntActivation`: it maps
an integer pre-activation ``z`` to an integer output ``y`` and, in training mode, keeps what its derivative needs
(the table index, the input, or a mask). From that the base gives every learning rule the same three readings:

* ``inv_slope`` -- PocketNN's ``G`` (int32, same shape as ``y``). PocketNN's rule divides by it:
  ``delta = div_trunc(g, G)``. It is *not* always the true inverse slope: tanh's G is twice it, saturated pieces
  use 127 (so a large ``g`` still leaks through) and the ReLUs use ``INT_MAX`` (``delta`` ~ 0).
* ``slope`` -- the derivative relative to the centre piece, in eighths (int32): ``round(8 / G)`` on the
  unsaturated pieces and **0** where the output is saturated. A rule multiplies by it instead of dividing
  (``delta = g * slope``): exact, and a saturated unit passes nothing back.

PocketTanh and PocketSigmoid first bring ``z`` to a small integer ``u`` (one division), then look ``y``, ``G`` and the
slope up in tables built in ``__init__`` from the piecewise definitions below (``u`` is clamped to [-128, 128],
beyond which every piece is constant), so the forward costs a division, a clamp and one gather.
"""

from __future__ import annotations

import torch
from torch import nn

from torch_intnn.ops._checks import check_integer
from torch_intnn.ops.rounding import div_trunc, int_range, saturate, shift_round

__all__ = ["IntActivation", "PocketTanh", "PocketSigmoid", "PocketReLU8", "PocketLeakyReLU", "PocketRescale",
           "INT_MAX", "SLOPE_ONE"]

INT_MAX = 2**31 - 1  # PocketNN's G where the true slope is 0 (delta = T(g / INT_MAX) = 0 for |g| < INT_MAX)
SLOPE_ONE = 8  # ``slope`` of the centre piece: slopes are reported in eighths of it


def _lookup(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` for an int32 or int64 index of any shape (``index_select`` takes both, ``take`` only int64)."""
    return table.index_select(0, idx.reshape(-1)).view(idx.shape)


def _select(u: torch.Tensor, bounds: list[int], values: list) -> torch.Tensor:
    """Piecewise constant/affine selection: ``values[i]`` on ``bounds[i-1] <= u < bounds[i]`` (last: ``u >= b[-1]``).

    ``values`` holds tensors or ints; evaluated on the small table domain only, never in a training step.
    """
    out = torch.as_tensor(values[-1]).expand_as(u).clone()
    for b, v in zip(reversed(bounds), reversed(values[:-1])):
        out = torch.where(u < b, v, out)
    return out


def pocket_tanh_table(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pocketTanh on the scaled input ``u`` (int64): returns ``(y, G)`` (pocketnn.md sec. 1.1, table)."""
    bounds = [-127, -74, -31, 32, 75, 128]
    y = _select(u, bounds, [-127, div_trunc(u, 4) - 88, u - 32, 2 * u, u + 32, div_trunc(u, 4) + 88, 127])
    g = _select(u, bounds, [127, 8, 2, 1, 2, 8, 127])
    return y, g


def pocket_sigmoid_table(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pocketSigmoid on the scaled input ``u`` (int64): returns ``(y, G)`` (pocketnn.md sec. 1.2, table)."""
    bounds = [-127, -74, -31, 32, 75, 128]
    y = _select(
        u, bounds, [1, div_trunc(u, 8) + 20, div_trunc(u, 2) + 48, u + 64, div_trunc(u, 2) + 80, div_trunc(u, 8) + 108, 127]
    )
    g = _select(u, bounds, [127, 8, 2, 1, 2, 8, 127])
    return y, g


class IntActivation(nn.Module):
    """Base of every integer activation: the derivative protocol of the module docstring.

    A subclass computes its forward, calls :meth:`_keep` with what its derivative needs (kept in training mode
    only), and gives :meth:`_state_of` (that state from input values), :meth:`_inv_slope_of` (G from the state)
    and :meth:`_slope_of` (eighths from the state).
    """

    def __init__(self) -> None:
        super().__init__()
        self.kept: torch.Tensor | None = None

    def _keep(self, state: torch.Tensor) -> None:
        self.kept = state if self.training else None

    def _kept(self) -> torch.Tensor:
        if self.kept is None:
            raise RuntimeError(f"{type(self).__name__}: the slopes need a training-mode forward pass first")
        return self.kept

    def _state_of(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _inv_slope_of(self, state: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _slope_of(self, state: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def inv_slope(self) -> torch.Tensor:
        """PocketNN's G of the last training-mode forward: int32, shape of the output."""
        return self._inv_slope_of(self._kept())

    @property
    def slope(self) -> torch.Tensor:
        """The derivative relative to the centre piece, in eighths (0 where saturated): int32, shape of the output."""
        return self._slope_of(self._kept())

    def backward(self, grad: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """``div_trunc(grad, G)``: the error ``grad`` (shape of the output, integer) through the activation, at the
        input of the last training-mode forward, or at the input values ``at`` (shape of ``grad``)."""
        check_integer(grad, f"{type(self).__name__} grad")
        state = self._kept() if at is None else self._state_of(at)
        if state.shape != grad.shape:
            raise ValueError(f"{type(self).__name__}.backward: grad {tuple(grad.shape)} and input "
                             f"{tuple(state.shape)} differ")
        return div_trunc(grad, self._inv_slope_of(state))


class _TableActivation(IntActivation):
    """Shared machinery: ``u = scale(z)``, clamp to the table domain [-128, 128], gather ``y`` / ``G`` / slope;
    the kept state is the table index."""

    U_MIN, U_MAX = -128, 128
    _table_fn = None  # (u int64) -> (y, G)
    _saturated_g = 127

    def __init__(self, divisor: int, shift: int | None) -> None:
        super().__init__()
        if shift is None and divisor <= 0:
            raise ValueError(f"{type(self).__name__}: the input divisor must be positive, got {divisor}")
        if shift is not None and shift < 0:
            raise ValueError(f"{type(self).__name__}: shift must be >= 0, got {shift}")
        self.divisor, self.shift = divisor, shift
        u = torch.arange(self.U_MIN, self.U_MAX + 1, dtype=torch.int64)
        y, g = type(self)._table_fn(u)
        slope = torch.where(g == self._saturated_g, 0, div_trunc(2 * SLOPE_ONE + g, 2 * g))  # round(8 / G)
        # Constants of the definition, not state: rebuilt by __init__, kept out of state_dict.
        self.register_buffer("y_table", y.to(torch.int8), persistent=False)
        self.register_buffer("inv_slope_table", g.to(torch.int32), persistent=False)
        self.register_buffer("slope_table", slope.to(torch.int32), persistent=False)

    def scale(self, z: torch.Tensor) -> torch.Tensor:
        """``u``: ``div_trunc(z, divisor)`` (PocketNN) or ``shift_round(z, shift)`` (round to nearest)."""
        return div_trunc(z, self.divisor) if self.shift is None else shift_round(z, self.shift)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_integer(z, f"{type(self).__name__} input")
        idx = self._state_of(z)
        self._keep(idx)
        return _lookup(self.y_table, idx)

    def _state_of(self, z: torch.Tensor) -> torch.Tensor:
        """The table index of ``z``: (...) int, in [0, 256]."""
        return self.scale(z).clamp(self.U_MIN, self.U_MAX) - self.U_MIN

    def _inv_slope_of(self, idx: torch.Tensor) -> torch.Tensor:
        return _lookup(self.inv_slope_table, idx)

    def _slope_of(self, idx: torch.Tensor) -> torch.Tensor:
        return _lookup(self.slope_table, idx)

    def _scale_repr(self) -> str:
        return f"u = trunc(z / {self.divisor})" if self.shift is None else f"u = round(z / 2**{self.shift})"


class PocketTanh(_TableActivation):
    """pocketTanh (pocketnn.md sec. 1.1): a 7-piece integer tanh, output in [-127, 127].

    Args:
        fan_in: the layer's fan-in; PocketNN scales by ``u = T(z / (256 * fan_in))``.
        shift: if given, scale by ``u = shift_round(z, shift)`` (rounded division by ``2**shift``) instead; the
            improved DFA mode uses this.

    Shapes: z (...) integer -> y (...) int8. Read as reals (x = u/64, tanh(x) ~ y/128) it is tanh on about [-2, 2]
    with slope 1 at 0. G: 1, 2, 8 and 127 (saturated); slope: 8, 4, 1, 0.
    """

    _table_fn = staticmethod(pocket_tanh_table)

    def __init__(self, fan_in: int = 1, *, shift: int | None = None) -> None:
        self.fan_in = fan_in
        super().__init__(256 * fan_in, shift)

    def extra_repr(self) -> str:
        return f"{self._scale_repr()}, y = pocket_tanh(u) int8 in [-127, 127], G in {{1, 2, 8, 127}}"


class PocketSigmoid(_TableActivation):
    """pocketSigmoid (pocketnn.md sec. 1.2): a 7-piece integer sigmoid, output in [1, 127], y(0) = 64.

    Args:
        shift: if given, ``u = shift_round(z, shift)``; default PocketNN's ``u = T(z / 256)`` (no fan-in factor).

    Shapes: z (...) integer -> y (...) int8. Here G is the exact inverse slope (1, 2, 8) except 127 when
    saturated; slope: 8, 4, 1, 0.
    """

    _table_fn = staticmethod(pocket_sigmoid_table)

    def __init__(self, *, shift: int | None = None) -> None:
        super().__init__(256, shift)

    def extra_repr(self) -> str:
        return f"{self._scale_repr()}, y = pocket_sigmoid(u) int8 in [1, 127], G in {{1, 2, 8, 127}}"


class _DirectActivation(IntActivation):
    """Activations evaluated directly on ``z`` (no table): the kept state is ``z`` itself."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_integer(z, f"{type(self).__name__} input")
        self._keep(z)
        return self._forward(z)

    def _state_of(self, z: torch.Tensor) -> torch.Tensor:
        return z


class PocketReLU8(_DirectActivation):
    """pocketReLU8Bit (pocketnn.md sec. 1.3): ``y = clamp(z, 0, 127)``, no scaling.

    Shapes: z (...) integer -> y (...) int8. G = 1 on 0 <= z <= 127, else INT_MAX; slope 8 there, else 0.
    """

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.clamp(0, 127).to(torch.int8)

    def _inv_slope_of(self, z: torch.Tensor) -> torch.Tensor:
        return torch.where((z >= 0) & (z <= 127), 1, INT_MAX).to(torch.int32)

    def _slope_of(self, z: torch.Tensor) -> torch.Tensor:
        return torch.where((z >= 0) & (z <= 127), SLOPE_ONE, 0).to(torch.int32)

    def extra_repr(self) -> str:
        return "y = clamp(z, 0, 127) int8, G in {1, INT_MAX}"


class PocketLeakyReLU(_DirectActivation):
    """pocketLeakyReLU (pocketnn.md sec. 1.3): slope 1/5 below 0 (truncated), saturating at +-32767.

    ``z < -32767 -> -32767``; ``-32767 <= z < 0 -> T(z / 5)``; ``0 <= z < 32767 -> z``; else ``32767``.
    Shapes: z (...) integer -> y (...) int32. G: INT_MAX, 5, 1, INT_MAX; slope: 0, 2 (8/5 rounded), 8, 0.
    """

    LIMIT = 32767

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.to(torch.int64)
        y = torch.where(z < 0, div_trunc(z.clamp(min=-self.LIMIT), 5), z.clamp(max=self.LIMIT))
        return torch.where(z < -self.LIMIT, -self.LIMIT, y).to(torch.int32)

    def _piece(self, z: torch.Tensor, values: tuple[int, int, int, int]) -> torch.Tensor:
        out = torch.where(z < 0, values[1], values[2])
        out = torch.where(z < -self.LIMIT, values[0], out)
        return torch.where(z >= self.LIMIT, values[3], out).to(torch.int32)

    def _inv_slope_of(self, z: torch.Tensor) -> torch.Tensor:
        return self._piece(z, (INT_MAX, 5, 1, INT_MAX))

    def _slope_of(self, z: torch.Tensor) -> torch.Tensor:
        return self._piece(z, (0, 2, SLOPE_ONE, 0))

    def extra_repr(self) -> str:
        return "y = z (z >= 0), T(z / 5) (z < 0), saturated to +-32767, int32; G in {1, 5, INT_MAX}"


class PocketRescale(IntActivation):
    """PocketNN's ``rescale`` (pocketnn.md sec. 1.3), a linear output: ``y = T(z / 256)``, G = 1.

    Args:
        shift: if given, ``y = shift_round(z, shift)`` instead (the improved DFA mode's class scores).
        bits: saturate ``y`` to this symmetric width (G = INT_MAX and slope 0 where it saturates).

    Shapes: z (...) integer -> y (...) int16 (``bits <= 16``) or int32.
    """

    def __init__(self, *, shift: int | None = None, bits: int = 16) -> None:
        super().__init__()
        if shift is not None and shift < 0:
            raise ValueError(f"PocketRescale: shift must be >= 0, got {shift}")
        if not 2 <= bits <= 32:
            raise ValueError(f"PocketRescale: bits must be in 2..32, got {bits}")
        self.shift, self.bits = shift, bits
        self.dtype = torch.int16 if bits <= 16 else torch.int32

    def _scale(self, z: torch.Tensor) -> torch.Tensor:
        return div_trunc(z, 256) if self.shift is None else shift_round(z, self.shift)

    def _linear(self, u: torch.Tensor) -> torch.Tensor:
        lo, hi = int_range(self.bits)
        return (u >= lo) & (u <= hi)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_integer(z, "PocketRescale input")
        u = self._scale(z)
        if self.training:
            self._keep(self._linear(u))
        else:
            self.kept = None
        return saturate(u, self.bits).to(self.dtype)

    def _state_of(self, z: torch.Tensor) -> torch.Tensor:
        """Where ``z`` is on the linear piece (bool, shape of ``z``)."""
        return self._linear(self._scale(z))

    def _inv_slope_of(self, linear: torch.Tensor) -> torch.Tensor:
        return torch.where(linear, 1, INT_MAX).to(torch.int32)

    def _slope_of(self, linear: torch.Tensor) -> torch.Tensor:
        return torch.where(linear, SLOPE_ONE, 0).to(torch.int32)

    def extra_repr(self) -> str:
        scale = "trunc(z / 256)" if self.shift is None else f"round(z / 2**{self.shift})"
        return f"y = {scale} saturated to {self.bits} bits, {str(self.dtype).removeprefix('torch.')}; G = 1"
