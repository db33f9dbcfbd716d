"""``IntLinear``: an integer fully connected layer, weights in an int32 buffer."""

from __future__ import annotations

import torch

from torch_intnn.nn._weight_layer import IntWeightLayer
from torch_intnn.ops.backend import Backend
from torch_intnn.ops.limbs import Limbs, split_rhs
from torch_intnn.ops.matmul import int_matmul

__all__ = ["IntLinear"]


class IntLinear(IntWeightLayer):
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
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"IntLinear needs positive sizes, got {in_features} -> {out_features}")
        super().__init__((out_features, in_features), in_features, bias, weight_bits=weight_bits,
                         input_bits=input_bits, init=init, generator=generator, backend=backend)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._take_input(x, 2, "(N, in_features)", 1, self.in_features, "features")
        z = int_matmul(x, self.weight_limbs(), a_bits=self.input_bits, backend=self.backend)
        return self._with_bias(z, x, (-1,))

    def _split_weight(self, weight: torch.Tensor) -> Limbs:
        """``weight.T`` (in_features, out_features) split into int8 limbs."""
        return split_rhs(weight.T, self.weight_bits)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, {self._arithmetic_repr()}"
