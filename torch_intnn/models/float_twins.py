"""Float twins of the integer models: the same layers in float32, for backprop, float DFA and float LES.

A twin takes the same raw uint8 images as its integer model and normalises them the usual way
(``(x / 255 - mean) / std`` per channel). Its layers are grouped into ``blocks`` (each one a trainable unit a
local rule can address: linear or conv, activation, optional pooling) and an ``output`` layer, so that
backprop, DFA and local-error learning run on one model definition.

Twins are registered as ``<integer name>_float`` with ``kind="float"`` and ``twin_of=<integer name>``, one for
every integer model registered with a ``layout`` (:func:`twin_of` builds it from that layout, so the
architecture is written once, beside the integer model).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from torch_intnn.data import dataset_info
from torch_intnn.ops import crop_flip
from torch_intnn.models import nitro, pocketnn  # noqa: F401  (the integer models the twins are built from)
from torch_intnn.models._registry import list_models, model_info, register_model

__all__ = ["FloatNet", "mlp_twin", "cnn_twin", "twin_of"]


class FloatNet(nn.Module):
    """``blocks`` (a list of trainable units) followed by an ``output`` linear layer.

    With ``augment``, training-mode inputs get the integer model's augmentation for the dataset first: a random
    crop after zero padding by ``crop_padding`` pixels and, where the dataset flips, a left-right flip with
    probability 1/2 (the same kernel, :func:`torch_intnn.ops.crop_flip`; offsets from torch's global generator,
    which Lightning's ``seed_everything`` seeds).

    Shapes: x (N, C, H, W) uint8 -> scores (N, num_classes) float32. ``features(x)`` returns every block's
    output as well, for the local rules.
    """

    def __init__(self, blocks: list[nn.Module], output: nn.Module, dataset: str, augment: bool = False) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.output = output
        info = dataset_info(dataset)
        mean, std = info.mean, info.std
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        self.crop_padding, self.flip = (info.crop_padding, info.flip) if augment else (0, False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - self.mean) / self.std

    def augmented(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` randomly cropped and flipped in training mode (see the class docstring), else ``x``."""
        if not self.training or not (self.crop_padding or self.flip):
            return x
        n, pad = x.shape[0], self.crop_padding
        dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device)
        flip = torch.randint(0, 2, (n,), device=x.device).bool() if self.flip else None
        return crop_flip(x, pad, dy, dx, flip)

    def features(self, x: torch.Tensor, detach_between: bool = False) -> list[torch.Tensor]:
        """Block outputs; with ``detach_between`` no gradient crosses from one block into the previous one."""
        h, outs = self.normalize(self.augmented(x)), []
        for block in self.blocks:
            h = block(h.detach() if detach_between else h)
            outs.append(h)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(x)[-1])


def _act(name: str) -> nn.Module:
    return {"tanh": nn.Tanh(), "relu": nn.ReLU(), "leaky4": nn.LeakyReLU(0.25)}[name]


def mlp_twin(sizes: list[int], activation: str, dataset: str, seed: int = 0, dropout: float = 0.0,
             augment: bool = False) -> FloatNet:
    """MLP ``sizes[0] - ... - sizes[-1]``: a flatten joins the first block. ``dropout`` > 0 ends every hidden
    block with ``nn.Dropout(dropout)`` (no weights: the architecture stays the integer model's); ``augment``: as
    :class:`FloatNet`."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    torch.manual_seed(seed)
    blocks = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-2], sizes[1:-1])):
        layers = [nn.Flatten()] if i == 0 else []
        tail = [nn.Dropout(dropout)] if dropout else []
        blocks.append(nn.Sequential(*layers, nn.Linear(n_in, n_out), _act(activation), *tail))
    output = nn.Linear(sizes[-2], sizes[-1])
    if len(sizes) == 2:
        output = nn.Sequential(nn.Flatten(), output)
    return FloatNet(blocks, output, dataset, augment)


def cnn_twin(
    convs: list[int | str], fc: list[int], in_shape: tuple[int, int, int], activation: str, dataset: str,
    seed: int = 0, dropout: float = 0.0, augment: bool = False,
) -> FloatNet:
    """VGG-style CNN: ``convs`` lists 3x3 conv widths with ``"P"`` for a 2x2 max pool (joined to the block before);
    then flatten, the ``fc`` hidden widths, and the output layer. ``dropout`` > 0 puts ``nn.Dropout(dropout)``
    where the integer model puts its dropouts: before the last max pool and after every FC block; ``augment``:
    as :class:`FloatNet`."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    torch.manual_seed(seed)
    c, h, w = in_shape
    blocks: list[nn.Sequential] = []
    last_pool = max((i for i, v in enumerate(convs) if v == "P"), default=None)
    for i, item in enumerate(convs):
        if item == "P":
            if i == last_pool and dropout:
                blocks[-1].append(nn.Dropout(dropout))
            blocks[-1].append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
            continue
        blocks.append(nn.Sequential(nn.Conv2d(c, item, 3, padding=1, bias=False), _act(activation)))
        c = item
    n_in = c * h * w
    for i, width in enumerate(fc):
        layers = [nn.Flatten()] if i == 0 else []
        tail = [nn.Dropout(dropout)] if dropout else []
        blocks.append(nn.Sequential(*layers, nn.Linear(n_in, width, bias=False), _act(activation), *tail))
        n_in = width
    output = nn.Linear(n_in, 10, bias=False)
    if not fc:  # the output layer reads the last conv block's pooled maps directly
        output = nn.Sequential(nn.Flatten(), output)
    return FloatNet(blocks, output, dataset, augment)


def twin_of(name: str, seed: int = 0, **options) -> FloatNet:
    """The float32 twin of the registered integer model ``name``, built from the ``layout`` it was registered
    with (``kind`` ``"mlp"`` with ``sizes``, or ``"cnn"`` with ``convs`` and ``fc``; ``activation`` is the float
    analogue of its integer activation: tanh for pocketTanh, leaky ReLU 1/4 for NITRO-ReLU)."""
    info = model_info(name)
    layout, dataset = info["layout"], info["dataset"]
    if layout["kind"] == "mlp":
        return mlp_twin(list(layout["sizes"]), layout["activation"], dataset, seed=seed, **options)
    return cnn_twin(list(layout["convs"]), list(layout["fc"]), dataset_info(dataset).shape, layout["activation"],
                    dataset, seed=seed, **options)


def _register_twins() -> None:
    for name in list_models(kind="integer"):
        info = model_info(name)
        if "layout" not in info:
            continue
        register_model(f"{name}_float", kind="float", twin_of=name, dataset=info["dataset"],
                       input_shape=info["input_shape"], num_classes=info["num_classes"],
                       )(functools.partial(twin_of, name))


_register_twins()
