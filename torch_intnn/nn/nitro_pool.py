"""Max pooling on ``channels_last`` maps, as NITRO-D's conv blocks and heads produce and consume them.

Same results as :func:`torch_intnn.ops.max_pool2d` (non-overlapping windows, first maximum on ties, ceil mode
padding that never wins), computed as a running ``torch.maximum`` over the kh*kw window slices of the NHWC
memory: each pass is a vectorised element-wise op over (N, H/kh, W/kw, C), where a reduction over a small
window dimension is not vectorised (about 10x slower at the sizes of VGG8B on CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torch_intnn.ops._checks import check_integer, check_rank
from torch_intnn.ops.rounding import div_floor

__all__ = ["max_pool_nhwc", "NitroMaxPool2d"]


def max_pool_nhwc(x: torch.Tensor, kernel: tuple[int, int], *, ceil_mode: bool = False,
                  return_positions: bool = False):
    """Non-overlapping max pooling with stride = kernel.

    Args:
        x: (N, C, H, W) integer; ``channels_last`` memory avoids a copy.
        kernel: (kh, kw).
        ceil_mode: pad H and W up to multiples of the kernel with the dtype's minimum; otherwise trailing rows
            and columns are dropped.
        return_positions: also return, for every output, the offset of its window's first maximum in the
            NHWC memory of ``x`` (``((n * H + row) * W + col) * C + c``), for gathering and max-unpooling.
    Returns:
        (N, C, H_out, W_out) in ``channels_last`` memory, dtype of ``x``; and int64 positions of that shape.
    """
    check_integer(x, "max_pool_nhwc input")
    check_rank(x, 4, "max_pool_nhwc input", "(N, C, H, W)")
    kh, kw = kernel
    n, c, h, w = x.shape
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
    idx = torch.zeros(best.shape, dtype=torch.int16) if return_positions else None
    for t in range(1, kh * kw):
        cand = win[:, :, t // kw, :, t % kw]
        if return_positions:
            better = (cand > best).to(torch.int16)  # strict: the first maximum wins ties
            idx += better * (t - idx)
        best = torch.maximum(best, cand)
    if kh * kw == 1:
        best = best.contiguous()
    values = best.permute(0, 3, 1, 2)
    if not return_positions:
        return values
    idx = idx.to(torch.int64)
    di = div_floor(idx, kw)
    row = torch.arange(ho).view(1, ho, 1, 1) * kh + di
    col = torch.arange(wo).view(1, 1, wo, 1) * kw + (idx - di * kw)
    pos = ((torch.arange(n).view(n, 1, 1, 1) * h + row) * w + col) * c + torch.arange(c).view(1, 1, 1, c)
    return values, pos.permute(0, 3, 1, 2)


class NitroMaxPool2d(nn.Module):
    """2-D max pooling (stride = kernel, trailing rows/columns dropped) through :func:`max_pool_nhwc`.

    Shapes: (N, C, H, W) integer -> (N, C, H // k, W // k) in ``channels_last`` memory, what the next
    convolution's im2col reads without a copy. Same values as :class:`torch_intnn.nn.IntMaxPool2d`.
    """

    def __init__(self, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_nhwc(x, (self.kernel_size, self.kernel_size))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, exact, channels_last"
