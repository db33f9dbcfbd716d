"""NITRO-D models (nitro_d.md sec. 8): the paper's MLP1-4, VGG8B and VGG11B, and a small CNN for a 1-hour budget.

Every model takes raw uint8 images (N, C, H, W) and returns int8 class scores (N, 10); it is trained by the
``"nitro"`` learning rule (:mod:`torch_intnn.learning.nitro`). Its layout::

    uint8 -> IntRandomCropFlip (train only) -> NitroStandardize -> stages -> output NitroHead -> int8 scores

where ``stages`` holds local-loss blocks (each with its own learning head), plain 2x2 max-pools, flattens and
integer dropouts. Call ``model.fit_input(train_images)`` once before training (integer mean and MAD).

Every factory takes ``seed`` (all weights come from ``torch.Generator().manual_seed(seed)``) and ``width_div``,
which divides every hidden width and channel count (tests build ``width_div=16`` versions in milliseconds).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from torch_intnn.data import dataset_info
from torch_intnn.models._registry import register_model
from torch_intnn.nn.nitro import IntDropout
from torch_intnn.nn.nitro_blocks import NitroConvBlock, NitroHead, NitroLinearBlock
from torch_intnn.nn.nitro_input import IntRandomCropFlip, NitroStandardize
from torch_intnn.nn.nitro_net import NitroNet
from torch_intnn.nn.pool import IntFlatten, IntMaxPool2d

__all__ = ["NitroNet", "build_nitro_mlp", "build_nitro_cnn", "VGG8B", "VGG11B", "SMALL_CNN", "nitro_mlp1", "nitro_mlp2",
           "nitro_mlp3", "nitro_mlp3_fmnist", "nitro_mlp4", "nitro_vgg8b", "nitro_vgg8b_mnist", "nitro_vgg8b_fmnist",
           "nitro_vgg11b", "nitro_small_cnn", "nitro_small_cnn_mnist", "nitro_small_cnn_fmnist"]


#: Conv layouts: ints are 3x3 conv blocks with that many filters, "P" a 2x2 max-pool (LES 1x width).
VGG8B = (128, 256, "P", 256, 512, "P", 512, "P", 512, "P")
VGG11B = (128, 128, 128, 256, "P", 256, 512, "P", 512, 512, "P", 512, "P")
#: The small CNN: VGG8B's conv layout at a quarter of the width, and no FC block: the output layer reads the
#: 128 x 2 x 2 (CIFAR) or 128 x 1 x 1 (28 x 28) pooled features. An FC block with amp 640 learns far slower than
#: the convs (its gradient sums 64 samples, a conv's 64 * H * W positions), which a 1-hour budget cannot afford.
SMALL_CNN = (32, 64, "P", 64, 128, "P", 128, "P", 128, "P")

_RELU_MAX = 91  # largest NITRO-ReLU output (k = 4): what a dropout after a block can receive


def _augment(dataset: str, augment: bool) -> IntRandomCropFlip:
    info = dataset_info(dataset)
    return IntRandomCropFlip(info.crop_padding, info.flip) if augment else IntRandomCropFlip(0, False)


def build_nitro_mlp(dataset: str, hidden: Sequence[int], *, seed: int = 0, dropout_pct: int = 0,
                    augment: bool = False, ensemble: bool = False, num_classes: int = 10, k: int = 4) -> NitroNet:
    """An MLP of local-loss blocks ``hidden`` with a dropout after every block (nitro_d.md secs. 7-8)."""
    gen = torch.Generator().manual_seed(seed)
    shape = dataset_info(dataset).shape
    n_in, bits, stages = shape[0] * shape[1] * shape[2], 8, []
    for width in hidden:
        stages.append(NitroLinearBlock(n_in, width, num_classes, input_bits=bits, k=k, generator=gen))
        n_in = width
        if dropout_pct:
            stages.append(IntDropout(dropout_pct, in_max=_RELU_MAX))
            bits = stages[-1].out_bits
        else:
            bits = 8
    output = NitroHead((n_in,), num_classes, input_bits=bits, generator=gen)
    return NitroNet(_augment(dataset, augment), NitroStandardize(shape[0], flatten=True), stages, output, ensemble)


def build_nitro_cnn(dataset: str, layout: Sequence[int | str], fc: Sequence[int], *, seed: int = 0,
                    d_max: int = 4096, dropout_pct: int = 0, augment: bool = True, ensemble: bool = False,
                    num_classes: int = 10, k: int = 4) -> NitroNet:
    """A VGG-style net: conv blocks and pools by ``layout``, then FC blocks ``fc``, then the output layer.

    As the paper, with ``dropout_pct`` one dropout goes before the last max-pool of the feature extractor and
    one after every FC block (nitro_d.md sec. 7). The FC blocks' heads use d = their width.
    """
    gen = torch.Generator().manual_seed(seed)
    c, h, w = dataset_info(dataset).shape
    last_pool = max((i for i, v in enumerate(layout) if v == "P"), default=None)
    stages: list[nn.Module] = []
    bits = 8
    for i, v in enumerate(layout):
        if i == last_pool and dropout_pct:
            stages.append(IntDropout(dropout_pct, in_max=_RELU_MAX))
            bits = stages[-1].out_bits
        if v == "P":
            stages.append(IntMaxPool2d(2))
            h, w = h // 2, w // 2
        else:
            stages.append(NitroConvBlock(c, int(v), (h, w), num_classes, d_max=d_max, input_bits=bits, k=k,
                                         generator=gen))
            c, bits = int(v), 8
    stages.append(IntFlatten())
    n_in = c * h * w
    for width in fc:
        stages.append(NitroLinearBlock(n_in, width, num_classes, input_bits=bits, k=k, generator=gen))
        n_in, bits = width, 8
        if dropout_pct:
            stages.append(IntDropout(dropout_pct, in_max=_RELU_MAX))
            bits = stages[-1].out_bits
    output = NitroHead((n_in,), num_classes, input_bits=bits, generator=gen)
    return NitroNet(_augment(dataset, augment), NitroStandardize(dataset_info(dataset).shape[0]), stages, output, ensemble)


def _div(widths: Sequence, width_div: int) -> list:
    if width_div < 1:
        raise ValueError(f"width_div must be >= 1, got {width_div}")
    return [v if v == "P" else max(1, int(v) // width_div) for v in widths]


def _options(name: str, defaults: dict, options: dict) -> dict:
    """A factory's keyword arguments over its defaults; an argument it does not take is a ``TypeError``."""
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"{name}: unknown arguments {sorted(unknown)}; it takes seed, width_div and {sorted(defaults)}")
    return {**defaults, **options}


def _mlp(name: str, dataset: str, hidden: Sequence[int], seed: int, width_div: int, options: dict,
         **defaults) -> NitroNet:
    return build_nitro_mlp(dataset, _div(hidden, width_div), seed=seed, **_options(name, defaults, options))


def _cnn(name: str, dataset: str, layout: Sequence, fc: Sequence[int], seed: int, width_div: int, options: dict,
         **defaults) -> NitroNet:
    return build_nitro_cnn(dataset, _div(layout, width_div), _div(fc, width_div), seed=seed,
                           **_options(name, defaults, options))


def _info(dataset: str, paper: str, layout: dict) -> dict:
    """Registry metadata: ``layout`` is the architecture the float twin is built from (models/float_twins.py)."""
    return dict(kind="integer", rule="nitro", dataset=dataset, input_shape=dataset_info(dataset).shape,
                num_classes=10, paper=paper, layout={**layout, "activation": "leaky4"})  # NITRO-ReLU ~ leaky 1/4


def _mlp_layout(dataset: str, hidden: Sequence[int]) -> dict:
    c, h, w = dataset_info(dataset).shape
    return dict(kind="mlp", sizes=(c * h * w, *hidden, 10))


_MLP = dict(dropout_pct=0, augment=False, ensemble=False)
_VGG = dict(d_max=4096, augment=True, ensemble=False)
_SMALL = dict(d_max=4096, augment=True, ensemble=True)


@register_model(**_info("mnist", "MLP1 784-100-50-10", _mlp_layout("mnist", (100, 50))))
def nitro_mlp1(seed: int = 0, width_div: int = 1, **options) -> NitroNet:
    """NITRO-D's MLP1 784-100-50-10 on MNIST (nitro_d.md sec. 8): no augmentation, no dropout."""
    return _mlp("nitro_mlp1", "mnist", (100, 50), seed, width_div, options, **_MLP)


@register_model(**_info("fmnist", "MLP2 784-200-100-50-10", _mlp_layout("fmnist", (200, 100, 50))))
def nitro_mlp2(seed: int = 0, width_div: int = 1, **options) -> NitroNet:
    """NITRO-D's MLP2 784-200-100-50-10 on Fashion-MNIST (nitro_d.md sec. 8): no augmentation, no dropout."""
    return _mlp("nitro_mlp2", "fmnist", (200, 100, 50), seed, width_div, options, **_MLP)


@register_model(**_info("mnist", "MLP3 784-1024x3-10", _mlp_layout("mnist", (1024,) * 3)))
def nitro_mlp3(seed: int = 0, width_div: int = 1, **options) -> NitroNet:
    """NITRO-D's MLP3 784-1024x3-10 on MNIST (nitro_d.md sec. 8), with random crops."""
    return _mlp("nitro_mlp3", "mnist", (1024,) * 3, seed, width_div, options, **{**_MLP, "augment": True})


@register_model(**_info("fmnist", "MLP3 784-1024x3-10", _mlp_layout("fmnist", (1024,) * 3)))
def nitro_mlp3_fmnist(seed: int = 0, width_div: int = 1, **options) -> NitroNet:
    """NITRO-D's MLP3 784-1024x3-10 on Fashion-MNIST (nitro_d.md sec. 8), with random crops and flips."""
    return _mlp("nitro_mlp3_fmnist", "fmnist", (1024,) * 3, seed, width_div, options, **{**_MLP, "augment": True})


@register_model(**_info("cifar10", "MLP4 3072-3000x3-10", _mlp_layout("cifar10", (3000,) * 3)))
def nitro_mlp4(seed: int = 0, width_div: int = 1, **options) -> NitroNet:
    """NITRO-D's MLP4 3072-3000x3-10 on CIFAR-10 (nitro_d.md sec. 8): crops and flips, 10 % dropout."""
    return _mlp("nitro_mlp4", "cifar10", (3000,) * 3, seed, width_div, options, dropout_pct=10, augment=True,
                ensemble=False)


_VGG8B_LAYOUT = dict(kind="cnn", convs=VGG8B, fc=(1024,))


@register_model(**_info("cifar10", "VGG8B", _VGG8B_LAYOUT))
def nitro_vgg8b(seed: int = 0, width_div: int = 1, **options) -> NitroNet:
    """NITRO-D's VGG8B on CIFAR-10 (nitro_d.md sec. 8): crops and flips, 15 % dropout."""
    return _cnn("nitro_vgg8b", "cifar10", VGG8B, (1024,), seed, width_div, options, dropout_pct=15, **_VGG)


@register_model(**_info("mnist", "VGG8B", _VGG8B_LAYOUT))
def nitro_vgg8b_mnist(seed: int = 0, width_div: int = 1, **options) -> NitroNet:
    """NITRO-D's VGG8B on MNIST (nitro_d.md sec. 8): random crops, no dropout."""
    return _cnn("nitro_vgg8b_mnist", "mnist", VGG8B, (1024,), seed, width_div, options, dropout_pct=0, **_VGG)


@register_model(**_info("fmnist", "VGG8B", _VGG8B_LAYOUT))
def nitro_vgg8b_fmnist(seed: int = 0, width_div: int = 1, **options) -> NitroNet:
    """NITRO-D's VGG8B on Fashion-MNIST (nitro_d.md sec. 8): crops and flips, 10 % dropout."""
    return _cnn("nitro_vgg8b_fmnist", "fmnist", VGG8B, (1024,), seed, width_div, options, dropout_pct=10, **_VGG)


@register_model(**_info("cifar10", "VGG11B", dict(kind="cnn", convs=VGG11B, fc=(1024,))))
def nitro_vgg11b(seed: int = 0, width_div: int = 1, **options) -> NitroNet:
    """NITRO-D's VGG11B on CIFAR-10 (nitro_d.md sec. 8): crops and flips, no dropout."""
    return _cnn("nitro_vgg11b", "cifar10", VGG11B, (1024,), seed, width_div, options, dropout_pct=0, **_VGG)


_SMALL_LAYOUT = dict(kind="cnn", convs=SMALL_CNN, fc=())


@register_model(**_info("cifar10", "small CNN (VGG8B convs / 4)", _SMALL_LAYOUT))
def nitro_small_cnn(seed: int = 0, width_div: int = 1, **options) -> NitroNet:
    """The small CNN (:data:`SMALL_CNN`: nitro_d.md sec. 8's VGG8B convs at a quarter width, no FC block) on
    CIFAR-10: crops and flips, 10 % dropout, predictions from the sum of all heads."""
    return _cnn("nitro_small_cnn", "cifar10", SMALL_CNN, (), seed, width_div, options, dropout_pct=10, **_SMALL)


@register_model(**_info("mnist", "small CNN (VGG8B convs / 4)", _SMALL_LAYOUT))
def nitro_small_cnn_mnist(seed: int = 0, width_div: int = 1, **options) -> NitroNet:
    """The small CNN (:data:`SMALL_CNN`, after nitro_d.md sec. 8's VGG8B) on MNIST: random crops, no dropout,
    predictions from the sum of all heads."""
    return _cnn("nitro_small_cnn_mnist", "mnist", SMALL_CNN, (), seed, width_div, options, dropout_pct=0, **_SMALL)


@register_model(**_info("fmnist", "small CNN (VGG8B convs / 4)", _SMALL_LAYOUT))
def nitro_small_cnn_fmnist(seed: int = 0, width_div: int = 1, **options) -> NitroNet:
    """The small CNN (:data:`SMALL_CNN`, after nitro_d.md sec. 8's VGG8B) on Fashion-MNIST: crops and flips,
    10 % dropout, predictions from the sum of all heads."""
    return _cnn("nitro_small_cnn_fmnist", "fmnist", SMALL_CNN, (), seed, width_div, options, dropout_pct=10,
                **_SMALL)
