"""``IntConv2d``: an integer 3x3-style convolution (stride 1), weights in an int32 buffer."""

from __future__ import annotations

import torch

from torch_intnn.nn._weight_layer import IntWeightLayer
from torch_intnn.ops import conv as conv_ops
from torch_intnn.ops.backend import Backend

__all__ = ["IntConv2d"]


class IntConv2d(IntWeightLayer):
    """Exact stride-1 integer convolution through im2col on int8 limbs (:func:`torch_intnn.ops.conv.conv2d`).

    Args:
        in_channels, out_channels, kernel_size, padding, bias: as ``torch.nn.Conv2d``, with its defaults
            (padding 0, a bias); stride 1, dilation 1, groups 1 only.
        weight_bits, input_bits, init, generator, backend, narrow: as :class:`torch_intnn.nn.IntLinear`.

    Shapes: x (N, C_in, H, W) integer -> (N, C_out, H_out, W_out) int32 or int64, in ``channels_last`` memory.
    In training mode the input is kept in ``self.input`` and its im2col columns, built once for the forward
    product, in ``self.columns`` (:meth:`weight_grad` reads both). The weight's int8 limbs are cached as in
    :class:`torch_intnn.nn.IntLinear`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        bias: bool = True,
        *,
        weight_bits: int = 16,
        input_bits: int = 8,
        init: str = "kaiming",
        generator: torch.Generator | None = None,
        backend: Backend | str = Backend.AUTO,
        narrow: bool = False,
    ) -> None:
        if min(in_channels, out_channels, kernel_size) <= 0 or padding < 0:
            raise ValueError(
                f"IntConv2d needs positive channels and kernel and padding >= 0, got "
                f"{in_channels} -> {out_channels}, kernel {kernel_size}, padding {padding}"
            )
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), in_channels * kernel_size**2, bias,
                         weight_bits=weight_bits, input_bits=input_bits, init=init, generator=generator,
                         backend=backend, narrow=narrow)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.padding = kernel_size, padding
        self.columns: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._take_input(x, 4, "(N, C, H, W)", 1, self.in_channels, "channels")
        # built once in training: the weight gradient reads the same columns
        cols = conv_ops.im2col(x, self.kernel_size, self.padding) if self.training else None
        self.columns = cols
        z = conv_ops.conv2d(x, self.weight_limbs(), self.padding, x_bits=self.input_bits, columns=cols,
                            backend=self.backend)
        return self._with_bias(z, x, (1, -1, 1, 1))

    def _split_weight(self, weight: torch.Tensor) -> conv_ops.ConvWeight:
        """The weight split into int8 limbs for :func:`~torch_intnn.ops.conv2d`."""
        return conv_ops.split_conv_weight(weight, self.product_bits())

    def weight_grad(self, grad_out: torch.Tensor, grad_bits: int | None = None) -> torch.Tensor:
        """The batch sum of the error at the output (N, C_out, H_out, W_out), whose values fit ``grad_bits``
        signed bits, correlated with the kept training input: (C_out, C_in, k, k), exact."""
        x = self._kept_input("weight_grad")
        return conv_ops.conv2d_weight(x, grad_out, self.kernel_size, self.padding, x_bits=self.input_bits,
                                      grad_bits=grad_bits, columns=self.columns, backend=self.backend)

    def clear_kept(self) -> None:
        """Free the kept training input and its columns."""
        self.input = self.columns = None

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, padding={self.padding}, "
            f"bias={self.bias is not None}, {self._arithmetic_repr()}"
        )
