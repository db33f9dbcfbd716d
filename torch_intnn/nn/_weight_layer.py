"""What every integer weight layer shares: the int32 weight (and bias) buffers within a declared width, the
declared input width, the GEMM backend, the cached int8-limb split of the weight, and the kept training input."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torch_intnn.nn._split_cache import SplitCache
from torch_intnn.nn.init import kaiming_uniform_int_bound, uniform_int_
from torch_intnn.ops._checks import check_fits, check_integer, check_rank
from torch_intnn.ops.backend import Backend
from torch_intnn.ops.limbs import effective_bits
from torch_intnn.ops.matmul import result_dtype, with_bias_dtype

__all__ = ["IntWeightLayer"]


class IntWeightLayer(nn.Module):
    """Base of :class:`~torch_intnn.nn.IntLinear` and :class:`~torch_intnn.nn.IntConv2d`.

    Subclasses give the weight's shape and fan-in, and :meth:`_split_weight` (the weight in the limb layout their
    kernel takes); the base creates the buffers, draws the initial weights, keeps the split between calls while
    the weight is unchanged, checks inputs and adds the bias in a dtype that provably holds the sum.
    """

    def __init__(self, weight_shape: tuple[int, ...], fan_in: int, bias: bool, *, weight_bits: int, input_bits: int,
                 init: str, generator: torch.Generator | None, backend: Backend | str) -> None:
        super().__init__()
        self.weight_bits, self.input_bits, self.backend = weight_bits, input_bits, Backend(backend)
        self.fan_in = fan_in  # products summed into each output (the GEMM's K)
        self.register_buffer("weight", torch.zeros(weight_shape, dtype=torch.int32))
        self.register_buffer("bias", torch.zeros(weight_shape[0], dtype=torch.int32) if bias else None)
        self.input: torch.Tensor | None = None
        self._weight_split: SplitCache[Any] = SplitCache()
        if init == "kaiming":
            uniform_int_(self.weight, kaiming_uniform_int_bound(fan_in), generator)
        elif init != "zeros":
            raise ValueError(f"{type(self).__name__} init must be 'zeros' or 'kaiming', got {init!r}")

    def _split_weight(self, weight: torch.Tensor) -> Any:
        raise NotImplementedError

    def weight_limbs(self) -> Any:
        """The weight split into int8 limbs for the layer's kernel, cached while the buffer is unchanged."""
        return self._weight_split.get(self.weight, self._split_weight)

    def invalidate_weight_split(self) -> None:
        """Forget the cached split (needed only after writes that bypass the version counter, e.g. ``.data``)."""
        self._weight_split.invalidate()

    def _take_input(self, x: torch.Tensor, rank: int, layout: str, dim: int, size: int, what: str) -> None:
        """Check ``x`` (integer, ``rank`` dimensions, ``size`` along ``dim``, within the declared input width) and
        keep it for the learning rule in training mode."""
        name = type(self).__name__
        check_integer(x, f"{name} input")
        check_rank(x, rank, f"{name} input", layout)
        if x.shape[dim] != size:
            raise ValueError(f"{name}: expected {size} input {what}, got {x.shape[dim]}")
        check_fits(x, effective_bits(x.dtype, self.input_bits), f"{name} input")  # uint8 pixels: always 9 bits
        self.input = x if self.training else None

    def _with_bias(self, z: torch.Tensor, x: torch.Tensor, view: tuple[int, ...]) -> torch.Tensor:
        """``z + bias`` (bias viewed as ``view``), widened to int64 unless the sum provably fits int32."""
        if self.bias is None:
            return z
        check_fits(self.bias, self.weight_bits, f"{type(self).__name__} bias")
        z = with_bias_dtype(z, self.fan_in, effective_bits(x.dtype, self.input_bits), self.weight_bits)
        return z + self.bias.view(view)

    def _arithmetic_repr(self) -> str:
        dtype = result_dtype(self.fan_in + (self.bias is not None), self.input_bits, self.weight_bits)
        backend = "" if self.backend is Backend.AUTO else f", backend={self.backend.value}"
        return f"int{self.input_bits} x int{self.weight_bits} -> exact {str(dtype).removeprefix('torch.')} sums{backend}"
