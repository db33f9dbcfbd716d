"""Integer ``nn.Module``s: int32 buffers, no Parameters, no autograd; forward only."""

from torch_intnn.nn.activations import PocketLeakyReLU, PocketReLU8, PocketRescale, PocketSigmoid, PocketTanh
from torch_intnn.nn.conv import IntConv2d
from torch_intnn.nn.linear import IntLinear
from torch_intnn.nn.nitro import IntDropout, NitroReLU, NitroScaling
from torch_intnn.nn.nitro_blocks import NitroConvBlock, NitroHead, NitroLinearBlock
from torch_intnn.nn.nitro_input import IntRandomCropFlip, NitroStandardize
from torch_intnn.nn.nitro_net import NitroNet
from torch_intnn.nn.pool import IntAvgPool2d, IntFlatten, IntMaxPool2d
from torch_intnn.nn.transforms import ToIntTensor

__all__ = [
    "IntLinear", "IntConv2d", "IntMaxPool2d", "IntAvgPool2d", "IntFlatten", "ToIntTensor",
    "NitroScaling", "NitroReLU", "IntDropout", "NitroHead", "NitroLinearBlock", "NitroConvBlock",
    "IntRandomCropFlip", "NitroStandardize", "NitroNet",
    "PocketTanh", "PocketSigmoid", "PocketReLU8", "PocketLeakyReLU", "PocketRescale",
]
