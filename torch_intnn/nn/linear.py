"""``IntLinear``: an integer fully connected layer, weights in an int32 buffer."""

from __future__ import annotations

import torch
from torch import nn

from torch_intnn.nn.init import kaiming_uniform_int_bound, uniform_int_
from torch_intnn.ops._checks import check_fits, check_integer, check_rank
from torch_intnn.ops.matmul import int_matmul

__all__ = ["IntLinear"]


class IntLinear(nn.Module):
    """``z = x @ weight.T + bias``, exact, on int8 limbs of :func:`torch_intnn.ops.matmul.int_matmul`.

    Args:
        in_features, out_features: as ``torch.nn.Linear``.
        bias: keep an int32 bias buffer (added after the product, before any scaling).
        weight_bits: signed width the weights are kept within (the learning rule saturates to it); 16 takes two
            int8 limbs, 8 takes one.
        input_bits: declared width of the inputs (8 for activations in [-128, 127]; uint8 pixels always take
            one limb).
        init: ``"zeros"`` or ``"kaiming"`` (NITRO-D's integer Kaiming-uniform, sec. 7 of nitro_d.md).
        generator: the seeded generator the initial weights are drawn from.

    Shapes: x (N, in_features) integer -> z (N, out_features) int32 or int64 (int64 whenever the declared widths
    cannot prove that ``in_features`` products fit int32). In training mode the input is kept in ``self.input``
    for the learning rule; in eval mode nothing is kept.
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
    ) -> None:
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"IntLinear needs positive sizes, got {in_features} -> {out_features}")
        self.in_features, self.out_features = in_features, out_features
        self.weight_bits, self.input_bits = weight_bits, input_bits
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int32))
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.int32) if bias else None)
        self.input: torch.Tensor | None = None
        if init == "kaiming":
            uniform_int_(self.weight, kaiming_uniform_int_bound(in_features), generator)
        elif init != "zeros":
            raise ValueError(f"IntLinear init must be 'zeros' or 'kaiming', got {init!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_integer(x, "IntLinear input")
        check_rank(x, 2, "IntLinear input", "(N, in_features)")
        if x.shape[1] != self.in_features:
            raise ValueError(f"IntLinear: expected {self.in_features} input features, got {x.shape[1]}")
        check_fits(x, self.input_bits, "IntLinear input")
        self.input = x if self.training else None
        z = int_matmul(x, self.weight.T, a_bits=self.input_bits, b_bits=self.weight_bits)
        return z + self.bias if self.bias is not None else z

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, "
            f"int{self.input_bits} x int{self.weight_bits} -> exact int32/int64 sums"
        )
