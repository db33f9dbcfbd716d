"""Integer pooling and flatten modules."""

from __future__ import annotations

import torch
from torch import nn

from torch_intnn.ops import pool as pool_ops
from torch_intnn.ops._checks import check_integer

__all__ = ["IntMaxPool2d", "IntAvgPool2d", "IntFlatten"]


class IntMaxPool2d(nn.Module):
    """Non-overlapping max pooling (stride = kernel, trailing rows and columns dropped) on integer maps:
    (N, C, H, W) -> (N, C, H // k, W // k), in ``channels_last`` memory for a ``channels_last`` input (what
    NITRO-D's convolutions produce and their im2col reads without a copy); :func:`torch_intnn.ops.max_pool2d`."""

    def __init__(self, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_ops.max_pool2d(x, self.kernel_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, exact, channels_last"


class IntAvgPool2d(nn.Module):
    """Non-overlapping average pooling: window sum / k**2 with a named rounding (``floor``, ``trunc``, ``round``)."""

    def __init__(self, kernel_size: int = 2, rounding: str = "floor") -> None:
        super().__init__()
        if rounding not in ("floor", "trunc", "round"):
            raise ValueError(f"IntAvgPool2d: rounding must be 'floor', 'trunc' or 'round', got {rounding!r}")
        self.kernel_size, self.rounding = kernel_size, rounding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_ops.avg_pool2d(x, self.kernel_size, rounding=self.rounding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, divide by {self.kernel_size**2} rounding {self.rounding}"


class IntFlatten(nn.Flatten):
    """``torch.nn.Flatten`` that refuses floating-point input (flattening itself is dtype-agnostic)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_integer(x, "IntFlatten input")
        return super().forward(x)
