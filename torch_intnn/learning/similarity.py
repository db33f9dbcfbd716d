"""Integer similarity matching, the "sim" local loss (Nokland and Eidnes 2019, sec. 3), for NITRO-D's heads.

The loss compares the cosine similarities of a batch's features with those of its labels:

    L = sum_ij (R_ij - T_ij)**2,   R = C^ C^T,   C^_i = (p_i - mean(p_i)) / ||p_i - mean(p_i)||

where ``p`` (N, d) holds a block's pooled features (the learning head's input) and ``T`` the same similarity of
the one-hot labels: 1 for two samples of one class, ``-1 / (classes - 1)`` otherwise (centred one-hot vectors).
Its gradient at ``p_i`` is ``4 / ||c_i|| * P(sum_j E_ij C^_j - (sum_j E_ij R_ij) C^_i)``, with ``E = R - T``
and ``P`` the centring projection (the derivative of the normalisation and of the mean).

In integers (every step exact, no float), with ``ONE = SIM_ONE = 2**14`` the fixed point of 1.0:

* ``c = d * p - rowsum(p)``: ``d`` times the centred features, int64 (``|c| <= 2**22`` for ``|p| <= 256``,
  ``d <= 2**13``, so ``sum c**2 < 2**57``);
* the row norms to 29 or more significant bits: ``n = isqrt(sum_k c_k**2 * 4**up) = ||c|| 2**up`` with ``up``
  the largest shift keeping the squares below ``2**62`` (:func:`~torch_intnn.ops.rounding.bit_length`);
* ``u = div_round(ONE * c * 2**up, n)``: the unit rows, int16 (``|u_k| <= ONE``); a constant row has no norm,
  ``u = 0`` and no gradient;
* ``R = div_round(u u^T, ONE)`` (int_matmul; within 16 bits), ``T = ONE`` or ``-round(ONE / (classes - 1))``,
  ``E = R - T`` (within 17 bits), ``loss = sum E**2`` (int64, in units of ``ONE**-2``);
* ``H = E u - div_round((sum_j E_ij R_ij) u_i, ONE)``: ``ONE**2`` times the bracket above (``|H| <= N 2**31``);
* ``g = P(div_round(4 d H 2**GRAD_SHIFT, ONE**2 ||c||))`` with ``||c||`` to ``NORM_BITS`` fractional bits
  (``d H 2**NORM_BITS < 2**63`` for ``N <= MAX_BATCH``) and ``P(v) = v - div_round(sum(v), d)``: the gradient
  ``2**GRAD_SHIFT * dL/dp``, int64.

Rounding (of ``u``, ``R`` and the divisions) is the only approximation: against a float64 evaluation of the same
formula the gradient is within 1 % of its largest element plus 2 units (the test checks it on small cases).
"""

from __future__ import annotations

import torch

from torch_intnn.ops._checks import check_fits, check_integer, check_rank
from torch_intnn.ops.matmul import int_matmul
from torch_intnn.ops.rounding import bit_length, div_floor, div_pow2, div_round, isqrt

__all__ = ["sim_loss", "scale_like", "SIM_ONE", "GRAD_SHIFT", "MAX_FEATURES", "MAX_BATCH"]

SIM_SHIFT = 14
SIM_ONE = 1 << SIM_SHIFT  # the fixed point of unit rows and similarities: 1.0 is 2**14
GRAD_SHIFT = 16  # the gradient's fixed point: g = dL/dp * 2**16
MAX_FEATURES = 1 << 13  # d and N up to which every bound in the module docstring holds
MAX_BATCH = 1 << 8
NORM_BITS = 10  # fractional bits of the row norms in the gradient's division


def sim_loss(p: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer similarity-matching loss of the module docstring and its gradient at ``p``.

    Args:
        p: (N, d) integer features within 9 signed bits (int8 NITRO-ReLU outputs, or an int16 dropout's), d at
            most :data:`MAX_FEATURES`.
        y: (N,) int64 labels in ``[0, num_classes)``.
        num_classes: classes of the labels' one-hot similarity (at least 2).

    Returns:
        ``(g, loss)``: g (N, d) int64, ``2**GRAD_SHIFT * dL/dp`` (the gradient's sign: a rule subtracts it); loss
        a 0-d int64, ``sum E**2`` in units of ``SIM_ONE**-2``. N at most :data:`MAX_BATCH`.
    """
    check_integer(p, "sim_loss features")
    check_rank(p, 2, "sim_loss features", "(N, d)")
    check_fits(p, 9, "sim_loss features")
    n_rows, d = p.shape
    if d > MAX_FEATURES:
        raise ValueError(f"sim_loss: {d} features exceed the {MAX_FEATURES} its bounds hold for; pool further")
    if num_classes < 2 or n_rows > MAX_BATCH:
        raise ValueError(f"sim_loss needs num_classes >= 2 and at most {MAX_BATCH} samples, got {num_classes}, "
                         f"{n_rows}")
    one = SIM_ONE
    x = p.to(torch.int32)
    c = (d * x - x.sum(1, keepdim=True)).to(torch.int64)  # (N, d): d times the centred features
    squares = (c * c).sum(1, keepdim=True)  # (N, 1), below 2**55
    constant = squares == 0
    # each row's norm to 29 or more significant bits: the squares shifted up by an even amount to 2**60 or more
    up = div_floor(62 - bit_length(squares), 2)  # (N, 1), 0..31
    n = isqrt(torch.bitwise_left_shift(squares, 2 * up))  # ||c_i|| * 2**up_i
    divisor = n.masked_fill(constant, 1)
    u = div_round(torch.bitwise_left_shift(one * c, up), divisor).to(torch.int16)  # (N, d) units of 1/SIM_ONE
    r = div_round(int_matmul(u, u.T, a_bits=15, b_bits=15), one)  # (N, N) int64, within 16 bits
    same = y.view(-1, 1) == y.view(1, -1)
    other = -((2 * one + num_classes - 1) // (2 * (num_classes - 1)))  # -round(1 / (classes - 1)), Python ints
    e = r - torch.where(same, one, other)  # (N, N) int64, within 17 bits
    loss = (e * e).sum()
    radial = (e * r).sum(1, keepdim=True)  # (N, 1): sum_j E_ij R_ij
    h = int_matmul(e, u, a_bits=17, b_bits=15) - div_round(radial * u.to(torch.int64), one)  # SIM_ONE**2 x bracket
    # g = 4 d h / (SIM_ONE**2 ||c||) * 2**GRAD_SHIFT, ||c|| taken to NORM_BITS fractional bits (d h 2**NORM_BITS
    # < 2**63 for N <= MAX_BATCH)
    frac = up.clamp(max=NORM_BITS)
    norm = div_pow2(divisor, up - frac, "round").masked_fill(constant, 1)  # ||c|| * 2**frac
    g = div_round(torch.bitwise_left_shift(d * h, frac), norm * (1 << (2 * SIM_SHIFT - GRAD_SHIFT - 2)))
    g = g - div_round(g.sum(1, keepdim=True), d)  # the centring projection
    return g.masked_fill(constant, 0), loss


_RATIO_SHIFT = 10  # fractional bits of scale_like's ratio
_MAX_RATIO = 1 << 20  # its cap: |g| (below 2**31 for int32 results) times it stays far inside int64


def scale_like(g: torch.Tensor, ref: torch.Tensor, num: int, den: int) -> torch.Tensor:
    """``g`` rescaled to ``num / den`` times the mean magnitude of ``ref``: ``g * (num sum|ref|) / (den sum|g|)``,
    exact but for the ratio, taken to 10 fractional bits and capped at 2**20 (a ``g`` of nearly no magnitude is
    not blown up past it); 0 where ``g`` is all 0. int64, shape of ``g``.

    The rule weighs the similarity gradient against the prediction gradient of the same block this way: the two
    come in unrelated units (a block's ``d`` changes their ratio by orders of magnitude), so a fixed factor
    cannot weigh them alike in every block.
    """
    if num < 1 or den < 1 or num >= 1 << 12:
        raise ValueError(f"scale_like needs 1 <= num < 4096 and den >= 1, got {num}, {den}")
    size_g = g.abs().sum(dtype=torch.int64)
    size_ref = ref.abs().sum(dtype=torch.int64)
    ratio = div_round(torch.bitwise_left_shift(size_ref, _RATIO_SHIFT), size_g.clamp(min=1)).clamp(max=_MAX_RATIO)
    return div_round(g.to(torch.int64) * ratio * num, den << _RATIO_SHIFT)
