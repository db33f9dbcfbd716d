"""Integer ``nn.Module``s: int32 buffers, no Parameters, no autograd; forward only."""

from torch_intnn.nn.conv import IntConv2d
from torch_intnn.nn.linear import IntLinear
from torch_intnn.nn.pool import IntAvgPool2d, IntFlatten, IntMaxPool2d
from torch_intnn.nn.transforms import ToIntTensor

__all__ = ["IntLinear", "IntConv2d", "IntMaxPool2d", "IntAvgPool2d", "IntFlatten", "ToIntTensor"]
