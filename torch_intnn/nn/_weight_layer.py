"""What every integer weight layer shares: the int32 weight (and bias) buffers within a declared width, the
declared input width, the GEMM backend, the width its products declare for the weight (``narrow``), the cached
int8-limb split of the weight, and the kept training input."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from torch_intnn.nn._split_cache import SplitCache
from torch_intnn.nn.init import kaiming_uniform_int_bound, uniform_int_
from torch_intnn.ops._checks import check_fits, check_integer, check_rank, value_bits
from torch_intnn.ops.backend import Backend, resolve_backend
from torch_intnn.ops.limbs import effective_bits
from torch_intnn.ops.matmul import result_dtype, with_bias_dtype

__all__ = ["IntWeightLayer"]


class IntWeightLayer(nn.Module):
    """Base of :class:`~torch_intnn.nn.IntLinear` and :class:`~torch_intnn.nn.IntConv2d`.

    Subclasses give the weight's shape and fan-in, :meth:`_split_weight` (the weight in the limb layout their
    kernel takes) and the gradient methods (``weight_grad``; ``IntLinear.input_grad``); the base creates the
    buffers, draws the initial weights, keeps the split between calls while the weight is unchanged, checks
    inputs, adds the bias in a dtype that provably holds the sum, and says what the products declare
    (:meth:`product_bits`).

    ``narrow=True`` makes the products declare the width the weight's current values fit instead of
    ``weight_bits`` (measured once per weight version): exact either way, and fewer limbs and int32 sums while
    the values are small (NITRO-D's blocks and heads).
    """

    def __init__(self, weight_shape: tuple[int, ...], fan_in: int, bias: bool, *, weight_bits: int, input_bits: int,
                 init: str, generator: torch.Generator | None, backend: Backend | str, narrow: bool = False) -> None:
        super().__init__()
        self.weight_bits, self.input_bits, self.backend = weight_bits, input_bits, Backend(backend)
        self.narrow = narrow
        self.fan_in = fan_in  # products summed into each output (the GEMM's K)
        self.register_buffer("weight", torch.zeros(weight_shape, dtype=torch.int32))
        self.register_buffer("bias", torch.zeros(weight_shape[0], dtype=torch.int32) if bias else None)
        self.input: torch.Tensor | None = None
        self._weight_split: SplitCache[Any] = SplitCache()
        self._weight_width: SplitCache[int] = SplitCache()  # narrow: the width of the weight's values
        if init == "kaiming":
            uniform_int_(self.weight, kaiming_uniform_int_bound(fan_in), generator)
        elif init != "zeros":
            raise ValueError(f"{type(self).__name__} init must be 'zeros' or 'kaiming', got {init!r}")

    def _split_weight(self, weight: torch.Tensor) -> Any:
        raise NotImplementedError

    def product_bits(self) -> int:
        """The signed width the layer's products declare for the weight: ``weight_bits``, or with ``narrow`` the
        width its current values fit (:func:`~torch_intnn.ops._checks.value_bits`, once per weight version)."""
        if not self.narrow:
            return self.weight_bits
        return self._weight_width.get(self.weight, lambda w: value_bits(w, self.weight_bits))

    def weight_limbs(self) -> Any:
        """The weight split into int8 limbs (at :meth:`product_bits`) for the layer's kernel, cached while the
        buffer is unchanged."""
        return self._weight_split.get(self.weight, self._split_weight)

    def _multiplies_limbs(self, x: torch.Tensor, work: int) -> bool:
        """Whether a product of ``work`` multiply-adds on ``x``'s device runs on ``Backend.INT_MM``, which
        multiplies int8 limbs (so the cached split saves work); the other backends multiply the values."""
        return resolve_backend(self.backend, x.device, work) is Backend.INT_MM

    def invalidate_weight_split(self) -> None:
        """Forget the cached split (needed only after writes that bypass the version counter, e.g. ``.data``)."""
        self._weight_split.invalidate()
        self._weight_width.invalidate()

    def _kept_input(self, what: str) -> torch.Tensor:
        if self.input is None:
            raise RuntimeError(f"{type(self).__name__}.{what} needs a training-mode forward pass first")
        return self.input

    def clear_kept(self) -> None:
        """Free what the last training-mode forward kept for the gradients."""
        self.input = None

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
        narrow = " (narrower while the weight's values fit)" if self.narrow else ""
        return (f"int{self.input_bits} x int{self.weight_bits} -> exact {str(dtype).removeprefix('torch.')} "
                f"sums{narrow}{backend}")
