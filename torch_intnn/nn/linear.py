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
        narrow: declare the width the weight's current values fit, not ``weight_bits``
            (:meth:`~torch_intnn.nn._weight_layer.IntWeightLayer.product_bits`; exact either way).

    Shapes: x (N, in_features) integer -> z (N, out_features) int32 or int64 (int64 whenever the declared widths
    cannot prove that ``in_features`` products, plus the bias, fit int32). In training mode the input is kept in
    ``self.input`` for the learning rule (:meth:`weight_grad`); in eval mode nothing is kept.

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
        narrow: bool = False,
    ) -> None:
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"IntLinear needs positive sizes, got {in_features} -> {out_features}")
        super().__init__((out_features, in_features), in_features, bias, weight_bits=weight_bits,
                         input_bits=input_bits, init=init, generator=generator, backend=backend, narrow=narrow)
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._take_input(x, 2, "(N, in_features)", 1, self.in_features, "features")
        work = x.shape[0] * self.in_features * self.out_features
        # int_mm multiplies limbs: hand it the cached split; the other backends multiply the values themselves
        rhs = self.weight_limbs() if self._multiplies_limbs(x, work) else self.weight.T
        z = int_matmul(x, rhs, a_bits=self.input_bits, b_bits=self.product_bits(), backend=self.backend)
        return self._with_bias(z, x, (-1,))

    def weight_grad(self, grad_out: torch.Tensor, grad_bits: int | None = None) -> torch.Tensor:
        """``grad_out^T @ x``, the batch sum of the error at the output (N, out_features), whose values fit
        ``grad_bits`` signed bits, times the kept training input: (out_features, in_features), exact."""
        x = self._kept_input("weight_grad")
        return int_matmul(grad_out.T, x, a_bits=grad_bits, b_bits=self.input_bits, backend=self.backend)

    def input_grad(self, grad_out: torch.Tensor, grad_bits: int | None = None) -> torch.Tensor:
        """``grad_out @ weight``: the error at the output (N, out_features) brought to the input (N, in_features)
        through the current weight (call it before the update), exact."""
        return int_matmul(grad_out, self.weight, a_bits=grad_bits, b_bits=self.product_bits(), backend=self.backend)

    def _split_weight(self, weight: torch.Tensor) -> Limbs:
        """``weight.T`` (in_features, out_features) split into int8 limbs."""
        return split_rhs(weight.T, self.product_bits())

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, {self._arithmetic_repr()}"
