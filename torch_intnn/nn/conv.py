"""``IntConv2d``: an integer 3x3-style convolution (stride 1), weights in an int32 buffer."""

from __future__ import annotations

import torch
from torch import nn

from torch_intnn.nn._split_cache import SplitCache
from torch_intnn.nn.init import kaiming_uniform_int_bound, uniform_int_
from torch_intnn.nn.linear import _sum_dtype
from torch_intnn.ops import conv as conv_ops
from torch_intnn.ops._checks import check_fits, check_integer, check_rank
from torch_intnn.ops.backend import Backend
from torch_intnn.ops.limbs import effective_bits
from torch_intnn.ops.matmul import with_bias_dtype

__all__ = ["IntConv2d"]


class IntConv2d(nn.Module):
    """Exact stride-1 integer convolution through im2col on int8 limbs (:func:`torch_intnn.ops.conv.conv2d`).

    Args:
        in_channels, out_channels, kernel_size, padding, bias: as ``torch.nn.Conv2d`` (stride 1, dilation 1,
            groups 1 only).
        weight_bits, input_bits, init, generator, backend: as :class:`torch_intnn.nn.IntLinear`.

    Shapes: x (N, C_in, H, W) integer -> (N, C_out, H_out, W_out) int32 or int64, in ``channels_last`` memory.
    The training-mode input is kept in ``self.input``. The weight's int8 limbs are cached as in
    :class:`torch_intnn.nn.IntLinear`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        padding: int = 1,
        bias: bool = False,
        *,
        weight_bits: int = 16,
        input_bits: int = 8,
        init: str = "kaiming",
        generator: torch.Generator | None = None,
        backend: Backend | str = Backend.AUTO,
    ) -> None:
        super().__init__()
        if min(in_channels, out_channels, kernel_size) <= 0 or padding < 0:
            raise ValueError(
                f"IntConv2d needs positive channels and kernel and padding >= 0, got "
                f"{in_channels} -> {out_channels}, kernel {kernel_size}, padding {padding}"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding = kernel_size, padding
        self.weight_bits, self.input_bits, self.backend = weight_bits, input_bits, Backend(backend)
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.register_buffer("weight", torch.zeros(shape, dtype=torch.int32))
        self.register_buffer("bias", torch.zeros(out_channels, dtype=torch.int32) if bias else None)
        self.input: torch.Tensor | None = None
        self._weight_split: SplitCache[conv_ops.ConvWeight] = SplitCache()
        if init == "kaiming":
            uniform_int_(self.weight, kaiming_uniform_int_bound(in_channels * kernel_size**2), generator)
        elif init != "zeros":
            raise ValueError(f"IntConv2d init must be 'zeros' or 'kaiming', got {init!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_integer(x, "IntConv2d input")
        check_rank(x, 4, "IntConv2d input", "(N, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"IntConv2d: expected {self.in_channels} input channels, got {x.shape[1]}")
        check_fits(x, effective_bits(x.dtype, self.input_bits), "IntConv2d input")  # uint8 pixels: always 9 bits
        self.input = x if self.training else None
        z = conv_ops.conv2d(x, self.weight_limbs(), self.padding, x_bits=self.input_bits, backend=self.backend)
        if self.bias is None:
            return z
        check_fits(self.bias, self.weight_bits, "IntConv2d bias")
        k = self.in_channels * self.kernel_size**2
        z = with_bias_dtype(z, k, effective_bits(x.dtype, self.input_bits), self.weight_bits)
        return z + self.bias.view(1, -1, 1, 1)

    def weight_limbs(self) -> conv_ops.ConvWeight:
        """The weight split into int8 limbs for :func:`~torch_intnn.ops.conv2d`, cached while unchanged."""
        return self._weight_split.get(self.weight, lambda w: conv_ops.split_conv_weight(w, self.weight_bits))

    def invalidate_weight_split(self) -> None:
        """Forget the cached split (needed only after writes that bypass the version counter, e.g. ``.data``)."""
        self._weight_split.invalidate()

    def weight_grad(self, grad_out: torch.Tensor, grad_bits: int | None = None) -> torch.Tensor:
        """Integer weight gradient from the error at this layer's output and the kept training input."""
        if self.input is None:
            raise RuntimeError("IntConv2d.weight_grad needs a training-mode forward pass first")
        return conv_ops.conv2d_weight(
            self.input, grad_out, self.kernel_size, self.padding, x_bits=self.input_bits, grad_bits=grad_bits,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, padding={self.padding}, "
            f"bias={self.bias is not None}, int{self.input_bits} x int{self.weight_bits} -> exact "
            f"{_sum_dtype(self.in_channels * self.kernel_size**2, self)} sums"
        )
