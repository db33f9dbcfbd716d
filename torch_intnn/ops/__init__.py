"""Stateless integer kernels. The only place integer arithmetic is spelled out; exact by contract."""

from torch_intnn.ops.augment import crop_flip
from torch_intnn.ops.backend import Backend, default_backend, set_default_backend
from torch_intnn.ops.conv import ConvWeight, conv2d, conv2d_weight, im2col, split_conv_weight
from torch_intnn.ops.limbs import Limbs, split_int8, split_lhs, split_rhs
from torch_intnn.ops.matmul import int_matmul, result_dtype
from torch_intnn.ops.pool import avg_pool2d, max_pool2d, max_unpool2d
from torch_intnn.ops.rounding import div_floor, div_pow2, div_round, div_trunc, int_range, saturate, shift_round

__all__ = [
    "Backend", "default_backend", "set_default_backend", "crop_flip",
    "int_matmul", "Limbs", "split_lhs", "split_rhs", "split_int8", "result_dtype",
    "im2col", "ConvWeight", "split_conv_weight", "conv2d", "conv2d_weight",
    "max_pool2d", "max_unpool2d", "avg_pool2d",
    "div_trunc", "div_floor", "div_round", "div_pow2", "shift_round", "saturate", "int_range",
]
