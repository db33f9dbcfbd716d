"""Per-image translation with zero fill and left-right mirroring of integer images: the one kernel behind the
DFA rule's random shifts and NITRO-D's random crop and flip (the rules draw the offsets, this applies them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from torch_intnn.ops._checks import check_integer, check_rank

__all__ = ["crop_flip"]


def crop_flip(x: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor,
              flip: torch.Tensor | None = None) -> torch.Tensor:
    """Crop each image back to its size from its zero-padded copy, then mirror it left-right where ``flip``.

    ``out[n, c, i, j] = xp[n, c, dy[n] + i, dx[n] + j']`` with ``xp`` the images zero-padded by ``pad`` on every
    side and ``j' = W - 1 - j`` where ``flip[n]``, else ``j``: a translation by ``(pad - dy, pad - dx)`` pixels.

    Args:
        x: (N, C, H, W) integer images.
        pad: padding in pixels; offsets lie in ``0..2*pad``.
        dy, dx: (N,) or (N, 1) integer offsets. flip: (N,) or broadcastable bool, or None.
    Returns:
        (N, C, H, W), dtype of ``x``.
    """
    check_integer(x, "crop_flip images")
    check_rank(x, 4, "crop_flip images", "(N, C, H, W)")
    n, c, h, w = x.shape
    dy, dx = dy.reshape(n, 1).to(x.device), dx.reshape(n, 1).to(x.device)
    cols = dx + torch.arange(w, device=x.device)  # (N, W): source column in the padded image
    if flip is not None:
        cols = torch.where(flip.reshape(n, 1).to(x.device), cols.flip(1), cols)
    rows = dy + torch.arange(h, device=x.device)  # (N, H)
    xp = F.pad(x, (pad, pad, pad, pad)) if pad else x
    idx_n = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    idx_c = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return xp[idx_n, idx_c, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]
