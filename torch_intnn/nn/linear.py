"""``IntLinear``: an integer fully connected layer, weights in an int32 buffer."""

from __future__ import annotations

import torch
from torch import nn

from torch_intnn.nn._split_cache import SplitCache
from torch_intnn.nn.init import kaiming_uniform_int_bound, uniform_int_
from torch_intnn.ops._checks import check_fits, check_integer, check_rank
from torch_intnn.ops.backend import Backend
from torch_intnn.ops.limbs import Limbs, effective_bits, split_rhs
from torch_intnn.ops.matmul import int_matmul, result_dtype, with_bias_dtype

__all__ = ["IntLinear"]


class IntLinear(nn.Module):
    """``z = x @ weight.T + bias``, exact, on int8 limbs of :func:`torch_intnn.ops.matmul.int_matmul`.

    Args:
        in_features, out_features: as ``torch.nn.Linear``.
        bias: keep an int32 bias buffer (added after the product, before any scaling), within ``weight_bits``.
        weight_bits: signed width the weights are kept within (the learning rule saturates to it); 16 takes two
            int8 limbs, 8 takes one.
        input_bits: declared width of the inputs (8 for activations in [-128, 127]; uint8 pixels always take
            one limb).
        init: ``"zeros"`` or ``"kaiming"`` (NITRO-D's integer Kaiming-uniform, sec. 7 of nitro_d.md).
        generator: the seeded generator the initial weights are drawn from.
        backend: the GEMM backend of its products (:class:`~torch_intnn.ops.backend.Backend`; ``"auto"``: the
            device's default).

    Shapes: x (N, in_features) integer -> z (N, out_features) int32 or int64 (int64 whenever the declared widths
    cannot prove that ``in_features`` products, plus the bias, fit int32). In training mode the input is kept in
    ``self.input`` for the learning rule; in eval mode nothing is kept.

    The int8 limbs of the weight are cached between calls while the buffer is unchanged (see
    :mod:`torch_intnn.nn._split_cache`); after writing ``weight`` through ``.data``, call
    :meth:`invalidate_weight_split`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        weight_bits: int = 16,
        input_bits: int = 8,
        init: str = "kaiming",
        generator: torch.Generator | None = None,
        backend: Backend | str = Backend.AUTO,
    ) -> None:
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"IntLinear needs positive sizes, got {in_features} -> {out_features}")
        self.in_features, self.out_features = in_features, out_features
        self.weight_bits, self.input_bits, self.backend = weight_bits, input_bits, Backend(backend)
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int32))
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.int32) if bias else None)
        self.input: torch.Tensor | None = None
        self._weight_split: SplitCache[Limbs] = SplitCache()
        if init == "kaiming":
            uniform_int_(self.weight, kaiming_uniform_int_bound(in_features), generator)
        elif init != "zeros":
            raise ValueError(f"IntLinear init must be 'zeros' or 'kaiming', got {init!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_integer(x, "IntLinear input")
        check_rank(x, 2, "IntLinear input", "(N, in_features)")
        if x.shape[1] != self.in_features:
            raise ValueError(f"IntLinear: expected {self.in_features} input features, got {x.shape[1]}")
        check_fits(x, effective_bits(x.dtype, self.input_bits), "IntLinear input")  # uint8 pixels: always 9 bits
        self.input = x if self.training else None
        z = int_matmul(x, self.weight_limbs(), a_bits=self.input_bits, backend=self.backend)
        if self.bias is None:
            return z
        check_fits(self.bias, self.weight_bits, "IntLinear bias")
        x_bits = effective_bits(x.dtype, self.input_bits)
        return with_bias_dtype(z, self.in_features, x_bits, self.weight_bits) + self.bias

    def weight_limbs(self) -> Limbs:
        """``weight.T`` (in_features, out_features) split into int8 limbs, cached while the buffer is unchanged."""
        return self._weight_split.get(self.weight, lambda w: split_rhs(w.T, self.weight_bits))

    def invalidate_weight_split(self) -> None:
        """Forget the cached split (needed only after writes that bypass the version counter, e.g. ``.data``)."""
        self._weight_split.invalidate()

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, "
            f"int{self.input_bits} x int{self.weight_bits} -> exact {_sum_dtype(self.in_features, self)} sums"
            + ("" if self.backend is Backend.AUTO else f", backend={self.backend.value}")
        )


def _sum_dtype(k: int, layer: nn.Module) -> str:
    """The result dtype of ``k`` products at the layer's declared widths (plus its bias), for ``extra_repr``."""
    dtype = result_dtype(k + (layer.bias is not None), layer.input_bits, layer.weight_bits)
    return str(dtype).removeprefix("torch.")
