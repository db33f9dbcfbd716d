"""Integer 2-D convolution as im2col + :func:`int_matmul` (stride 1, dilation 1, groups 1).

The column matrix is built in NHWC order with each row laid out as (kh, kw, C): on this layout
``Tensor.unfold`` plus one copy is several times faster than the NCHW one (``F.unfold`` refuses integers).
Outputs come back as NCHW-shaped tensors in ``channels_last`` memory, so the next layer's im2col reads them
without a transpose.

Two layouts, one per pass:

* :func:`conv2d` (forward): ``y[n, f, i, j] = sum_{c,k,l} w[f, c, k, l] * x_pad[n, c, i+k, j+l]``
* :func:`conv2d_weight` (weight update): ``g_w[f, c, k, l] = sum_{n,i,j} g_y[n, f, i, j] * x_pad[n, c, i+k, j+l]``
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from torch_intnn.ops import fused
from torch_intnn.ops._checks import check_integer, check_rank
from torch_intnn.ops.limbs import Limbs, _split, declared_bits
from torch_intnn.ops.backend import Backend
from torch_intnn.ops.matmul import int_matmul

__all__ = ["im2col", "ConvWeight", "split_conv_weight", "conv2d", "conv2d_weight"]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def im2col(x: torch.Tensor, kernel_size: int | tuple[int, int], padding: int | tuple[int, int] = 0) -> torch.Tensor:
    """Columns of a stride-1 convolution.

    Args:
        x: (N, C, H, W) integer, any memory format (``channels_last`` avoids a copy).
    Returns:
        (N * H_out * W_out, kh * kw * C), rows ordered n, i, j and columns k, l, c; same dtype as ``x``.
    """
    check_integer(x, "im2col input")
    check_rank(x, 4, "im2col input", "(N, C, H, W)")
    kh, kw = _pair(kernel_size)
    ph, pw = _pair(padding)
    if fused.runs_on(x) and kh <= x.shape[2] + 2 * ph and kw <= x.shape[3] + 2 * pw:
        return fused.im2col(x, kh, kw, ph, pw)  # one pass over NHWC memory, no padded copy
    x = x.permute(0, 2, 3, 1)  # (N, H, W, C): a free view of channels_last memory
    if ph or pw:
        x = F.pad(x, (0, 0, pw, pw, ph, ph))
    if kh > x.shape[1] or kw > x.shape[2]:
        raise ValueError(f"im2col: kernel {kh}x{kw} is larger than the padded input {tuple(x.shape[1:3])}")
    cols = x.unfold(1, kh, 1).unfold(2, kw, 1)  # (N, Ho, Wo, C, kh, kw)
    cols = cols.permute(0, 1, 2, 4, 5, 3)  # (N, Ho, Wo, kh, kw, C)
    return cols.reshape(-1, kh * kw * cols.shape[-1])


def _columns_of(x: torch.Tensor, kernel_size: tuple[int, int], padding: int | tuple[int, int],
                columns: torch.Tensor | None) -> torch.Tensor:
    """``im2col(x, kernel_size, padding)``, or ``columns`` (the caller's copy of it) after a shape check."""
    if columns is None:
        return im2col(x, kernel_size, padding)
    check_integer(columns, "conv2d columns")
    (kh, kw), (ph, pw) = kernel_size, _pair(padding)
    rows = x.shape[0] * (x.shape[2] + 2 * ph - kh + 1) * (x.shape[3] + 2 * pw - kw + 1)
    if tuple(columns.shape) != (rows, kh * kw * x.shape[1]) or columns.dtype != x.dtype:
        raise ValueError(f"conv2d: columns {tuple(columns.shape)} {columns.dtype} are not im2col of the input "
                         f"{tuple(x.shape)} {x.dtype} (expected ({rows}, {kh * kw * x.shape[1]}))")
    return columns


def _weight_matrix(w: torch.Tensor) -> torch.Tensor:
    """(F, C, kh, kw) -> (F, kh * kw * C), the column order of :func:`im2col`."""
    return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)


class ConvWeight(NamedTuple):
    """A convolution weight (F, C, kh, kw) split once into the int8 limbs of its (kh*kw*C, F) matrix."""

    limbs: Limbs
    in_channels: int
    kernel_size: tuple[int, int]


def split_conv_weight(weight: torch.Tensor, bits: int | None = None) -> ConvWeight:
    """Split ``weight`` (F, C, kh, kw) integer, declared to fit ``bits`` signed bits, for :func:`conv2d`.

    A weight that does not change between calls can be split once (``IntConv2d`` caches it).
    """
    check_integer(weight, "conv2d weight")
    check_rank(weight, 4, "conv2d weight", "(F, C, kh, kw)")
    width = declared_bits(weight, bits, "conv2d weight")
    # (K, F) column-major: the limbs are cut from the contiguous (F, K) matrix in memory order.
    limbs = _split(_weight_matrix(weight).T, width, "rhs")
    return ConvWeight(limbs, weight.shape[1], (weight.shape[2], weight.shape[3]))


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor | ConvWeight,
    padding: int | tuple[int, int] = 0,
    *,
    x_bits: int | None = None,
    w_bits: int | None = None,
    columns: torch.Tensor | None = None,
    backend: Backend | str = Backend.AUTO,
) -> torch.Tensor:
    """Exact stride-1 integer convolution (cross-correlation, as ``F.conv2d``).

    Args:
        x: (N, C, H, W) integer.
        weight: (F, C, kh, kw) integer, or a :class:`ConvWeight` from :func:`split_conv_weight`.
        x_bits, w_bits: declared signed widths, as in :func:`int_matmul` (``w_bits`` is ignored for a
            :class:`ConvWeight`, which carries its own).
        columns: ``im2col(x, (kh, kw), padding)`` if the caller has it (it keeps it for the weight gradient).
        backend: the GEMM backend of :func:`~torch_intnn.ops.matmul.int_matmul`.
    Returns:
        (N, F, H_out, W_out) in ``channels_last`` memory; int32 or int64 by :func:`result_dtype` with
        K = C * kh * kw.
    """
    check_integer(x, "conv2d input")
    check_rank(x, 4, "conv2d input", "(N, C, H, W)")
    if not isinstance(weight, ConvWeight):
        weight = split_conv_weight(weight, w_bits)
    if x.shape[1] != weight.in_channels:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels, weight expects {weight.in_channels}")
    n = x.shape[0]
    kh, kw = weight.kernel_size
    ph, pw = _pair(padding)
    ho, wo = x.shape[2] + 2 * ph - kh + 1, x.shape[3] + 2 * pw - kw + 1
    x_width = declared_bits(x, x_bits, "conv2d input")  # checked on x: the columns repeat its values kh*kw times
    cols = _split(_columns_of(x, (kh, kw), (ph, pw), columns), x_width, "lhs")  # (N*Ho*Wo, K)
    y = int_matmul(cols, weight.limbs, backend=backend)  # (N*Ho*Wo, F)
    return y.view(n, ho, wo, -1).permute(0, 3, 1, 2)


def conv2d_weight(
    x: torch.Tensor,
    grad_out: torch.Tensor,
    kernel_size: int | tuple[int, int],
    padding: int | tuple[int, int] = 0,
    *,
    x_bits: int | None = None,
    grad_bits: int | None = None,
    columns: torch.Tensor | None = None,
    backend: Backend | str = Backend.AUTO,
) -> torch.Tensor:
    """Exact weight gradient of :func:`conv2d`, summed over the batch and all positions.

    Args:
        x: (N, C, H, W) integer, the forward input.
        grad_out: (N, F, H_out, W_out) integer, the error at the convolution's output.
        columns: ``im2col(x, kernel_size, padding)`` if the caller kept it from the forward pass.
        backend: the GEMM backend of :func:`~torch_intnn.ops.matmul.int_matmul`.
    Returns:
        (F, C, kh, kw), int32 or int64 by :func:`result_dtype` with K = N * H_out * W_out.
    """
    check_integer(x, "conv2d_weight input")
    check_integer(grad_out, "conv2d_weight grad_out")
    check_rank(grad_out, 4, "conv2d_weight grad_out", "(N, F, H_out, W_out)")
    kh, kw = _pair(kernel_size)
    cols = _columns_of(x, (kh, kw), padding, columns)  # (N*Ho*Wo, kh*kw*C)
    ph, pw = _pair(padding)
    expected = (x.shape[0], x.shape[2] + 2 * ph - kh + 1, x.shape[3] + 2 * pw - kw + 1)
    if (grad_out.shape[0], *grad_out.shape[2:]) != expected:
        raise ValueError(
            f"conv2d_weight: grad_out {tuple(grad_out.shape)} does not match input {tuple(x.shape)} "
            f"(expected (N, F, H_out, W_out) = ({expected[0]}, F, {expected[1]}, {expected[2]}))"
        )
    g = grad_out.permute(0, 2, 3, 1).reshape(-1, grad_out.shape[1])  # (N*Ho*Wo, F)
    cols = _split(cols, declared_bits(x, x_bits, "conv2d_weight input"), "rhs")
    gw = int_matmul(g.T, cols, a_bits=grad_bits, backend=backend)  # (F, kh*kw*C)
    return gw.view(-1, kh, kw, x.shape[1]).permute(0, 3, 1, 2)
