"""Integer max and average pooling, with the max-pool backward that local learning rules need."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from torch_intnn.ops import fused
from torch_intnn.ops._checks import check_integer, check_rank
from torch_intnn.ops.rounding import div_floor, div_round, div_trunc

__all__ = ["max_pool2d", "max_unpool2d", "avg_pool2d"]

_DIVIDE = {"trunc": div_trunc, "floor": div_floor, "round": div_round}


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _pad_to_multiple(x: torch.Tensor, kh: int, kw: int, value: int) -> torch.Tensor:
    ph, pw = (-x.shape[2]) % kh, (-x.shape[3]) % kw
    return F.pad(x, (0, pw, 0, ph), value=value) if ph or pw else x


def _windows(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """(N, C, H, W) with H, W multiples of the kernel -> (N, C, H/kh, W/kw, kh*kw)."""
    n, c, h, w = x.shape
    win = x.reshape(n, c, h // kh, kh, w // kw, kw).permute(0, 1, 2, 4, 3, 5)
    return win.reshape(n, c, h // kh, w // kw, kh * kw)


def max_pool2d(
    x: torch.Tensor,
    kernel_size: int | tuple[int, int],
    *,
    ceil_mode: bool = False,
    return_indices: bool = False,
    return_positions: bool = False,
):
    """Non-overlapping max pooling (stride = kernel), the first maximum winning ties.

    Computed as a running ``torch.maximum`` over the kh*kw window slices of the NHWC memory: each pass is a
    vectorised element-wise op over (N, H/kh, W/kw, C), where a reduction over a small window dimension is not
    vectorised (about 10x slower at the sizes of VGG8B on CPU).

    Args:
        x: (N, C, H, W) integer; ``channels_last`` memory avoids a copy.
        ceil_mode: pad H and W up to multiples of the kernel with the dtype's minimum (so padding never wins),
            as NITRO-D's learning heads need; otherwise trailing rows and columns are dropped, as ``F.max_pool2d``.
        return_indices: also return the window position (0..kh*kw-1, row-major) of each maximum, for
            :func:`max_unpool2d`.
        return_positions: also return, for every output, the offset of its window's first maximum in the NHWC
            memory of ``x`` (``((n * H + row) * W + col) * C + c``), for gathering and scattering.
    Returns:
        (N, C, H_out, W_out) values, dtype of ``x`` (in ``channels_last`` memory for a ``channels_last`` ``x``);
        then the int64 indices and positions asked for, of the same shape.
    """
    check_integer(x, "max_pool2d input")
    check_rank(x, 4, "max_pool2d input", "(N, C, H, W)")
    kh, kw = _pair(kernel_size)
    n, c, h, w = x.shape
    if not return_indices and x.dtype == torch.int8 and kh * kw <= 256 and fused.runs_on(x) and (
            ceil_mode or (h % kh == 0 and w % kw == 0)):  # one pass, the same values and positions
        return fused.max_pool8(x, kh, kw) if return_positions else fused.max_pool8_values(x, kh, kw)
    xn = x.permute(0, 2, 3, 1)  # (N, H, W, C): a view of channels_last memory
    if ceil_mode:
        ph, pw = (-h) % kh, (-w) % kw
        if ph or pw:
            xn = F.pad(xn, (0, 0, 0, pw, 0, ph), value=torch.iinfo(x.dtype).min)
    else:
        xn = xn[:, : h // kh * kh, : w // kw * kw]
    ho, wo = xn.shape[1] // kh, xn.shape[2] // kw
    win = xn.reshape(n, ho, kh, wo, kw, c)
    best = win[:, :, 0, :, 0]
    track = return_indices or return_positions
    idx = torch.zeros(best.shape, dtype=torch.int16, device=x.device) if track else None
    for t in range(1, kh * kw):
        cand = win[:, :, t // kw, :, t % kw]
        if track:
            better = (cand > best).to(torch.int16)  # strict: the first maximum wins ties
            idx += better * (t - idx)
        best = torch.maximum(best, cand)
    if kh * kw == 1:
        best = best.contiguous()
    values = best.permute(0, 3, 1, 2)
    if not track:
        return values
    idx = idx.to(torch.int64)
    out = [values]
    if return_indices:
        out.append(idx.permute(0, 3, 1, 2))
    if return_positions:
        di = div_floor(idx, kw)
        row = torch.arange(ho, device=x.device).view(1, ho, 1, 1) * kh + di
        col = torch.arange(wo, device=x.device).view(1, 1, wo, 1) * kw + (idx - di * kw)
        pos = ((torch.arange(n, device=x.device).view(n, 1, 1, 1) * h + row) * w + col) * c
        out.append((pos + torch.arange(c, device=x.device).view(1, 1, 1, c)).permute(0, 3, 1, 2))
    return tuple(out)


def max_unpool2d(
    grad: torch.Tensor, indices: torch.Tensor, kernel_size: int | tuple[int, int], input_size: tuple[int, int]
) -> torch.Tensor:
    """Backward of :func:`max_pool2d`: route each gradient to its window's maximum, zeros elsewhere.

    Args:
        grad: (N, C, H_out, W_out) integer. indices: as returned by ``max_pool2d(..., return_indices=True)``.
        input_size: (H, W) of the pooled input; padded or dropped borders get zeros.
    Returns:
        (N, C, H, W), dtype of ``grad``.
    """
    check_integer(grad, "max_unpool2d grad")
    kh, kw = _pair(kernel_size)
    n, c, ho, wo = grad.shape
    full = grad.new_zeros(n, c, ho, wo, kh * kw).scatter_(-1, indices.unsqueeze(-1), grad.unsqueeze(-1))
    full = full.view(n, c, ho, wo, kh, kw).permute(0, 1, 2, 4, 3, 5).reshape(n, c, ho * kh, wo * kw)
    h, w = input_size
    if ho * kh < h or wo * kw < w:
        full = F.pad(full, (0, max(0, w - wo * kw), 0, max(0, h - ho * kh)))
    return full[:, :, :h, :w]


def avg_pool2d(x: torch.Tensor, kernel_size: int | tuple[int, int], *, rounding: str = "floor") -> torch.Tensor:
    """Non-overlapping average pooling: the window sum divided by kh*kw with the named rounding rule.

    Args:
        x: (N, C, H, W) integer; trailing rows and columns that do not fill a window are dropped.
        rounding: ``"floor"``, ``"trunc"`` or ``"round"`` (see :mod:`torch_intnn.ops.rounding`).
    Returns:
        (N, C, H_out, W_out), dtype of ``x`` (int64 for uint8 inputs).
    """
    check_integer(x, "avg_pool2d input")
    check_rank(x, 4, "avg_pool2d input", "(N, C, H, W)")
    if rounding not in _DIVIDE:
        raise ValueError(f"avg_pool2d: rounding must be one of {sorted(_DIVIDE)}, got {rounding!r}")
    kh, kw = _pair(kernel_size)
    x = x[:, :, : x.shape[2] // kh * kh, : x.shape[3] // kw * kw]
    sums = _windows(x, kh, kw).sum(-1)  # int64 for every integer input
    out = _DIVIDE[rounding](sums, kh * kw)
    return out.to(x.dtype) if x.dtype != torch.uint8 else out
