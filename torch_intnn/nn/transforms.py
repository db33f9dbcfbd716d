"""Integer input transforms: images to integer tensors with no floating-point step."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["ToIntTensor"]


class ToIntTensor(nn.Module):
    """A PIL image, NumPy array or uint8 tensor -> an integer (C, H, W) tensor, usable in a torchvision pipeline.

    Unlike ``torchvision.transforms.ToTensor`` it never divides: pixels stay the integers 0..255 (``uint8``), or
    with ``center=True`` become ``pixel - 128`` in [-128, 127] (``int8``), which an int8 GEMM takes directly.

    Example::

        transforms.Compose([transforms.RandomCrop(28, padding=2), ToIntTensor(center=True)])
    """

    def __init__(self, center: bool = False) -> None:
        super().__init__()
        self.center = center

    def forward(self, pic) -> torch.Tensor:
        """Raises ``TypeError`` naming the dtype (and a PIL image's mode) for anything but uint8 pixels: a float
        or wider integer image is never truncated or wrapped into 0..255."""
        if isinstance(pic, torch.Tensor):
            t = pic
        else:
            array = np.asarray(pic)  # no dtype: a PIL image of mode F, I or I;16 keeps its own
            if array.dtype != np.uint8:
                mode = f" (PIL mode {pic.mode})" if hasattr(pic, "mode") else ""
                raise TypeError(f"ToIntTensor expects uint8 pixels, got dtype {array.dtype}{mode}; convert the "
                                "image to 8-bit pixels (e.g. PIL mode L or RGB) first")
            t = torch.from_numpy(array.copy())
            t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)  # HWC -> CHW
        if t.dtype != torch.uint8:
            raise TypeError(f"ToIntTensor expects uint8 pixels, got dtype {t.dtype}")
        if self.center:
            return (t.to(torch.int16) - 128).to(torch.int8)
        return t.contiguous()

    def extra_repr(self) -> str:
        return "uint8 -> int8 (pixel - 128)" if self.center else "uint8 -> uint8 (0..255)"
