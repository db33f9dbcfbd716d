"""Float twins of the integer models: the same layers in float32, for backprop, float DFA and float LES.

A twin takes the same raw uint8 images as its integer model and normalises them the usual way
(``(x / 255 - mean) / std`` per channel). Its layers are grouped into ``blocks`` (each one a trainable unit a
local rule can address: linear or conv, activation, optional pooling) and an ``output`` layer, so that
backprop, DFA and local-error learning run on one model definition.

Twins are registered as ``<integer name>_float`` with ``kind="float"`` and ``twin_of=<integer name>``.
"""

from __future__ import annotations

import torch
from torch import nn

from torch_intnn.data import dataset_info
from torch_intnn.models._registry import register_model

__all__ = ["FloatNet", "mlp_twin", "cnn_twin", "TWIN_SPECS"]

class FloatNet(nn.Module):
    """``blocks`` (a list of trainable units) followed by an ``output`` linear layer.

    Shapes: x (N, C, H, W) uint8 -> scores (N, num_classes) float32. ``features(x)`` returns every block's
    output as well, for the local rules.
    """

    def __init__(self, blocks: list[nn.Module], output: nn.Module, dataset: str) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.output = output
        info = dataset_info(dataset)
        mean, std = info.mean, info.std
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - self.mean) / self.std

    def features(self, x: torch.Tensor, detach_between: bool = False) -> list[torch.Tensor]:
        """Block outputs; with ``detach_between`` no gradient crosses from one block into the previous one."""
        h, outs = self.normalize(x), []
        for block in self.blocks:
            h = block(h.detach() if detach_between else h)
            outs.append(h)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(x)[-1])


def _act(name: str) -> nn.Module:
    return {"tanh": nn.Tanh(), "relu": nn.ReLU(), "leaky4": nn.LeakyReLU(0.25)}[name]


def mlp_twin(sizes: list[int], activation: str, dataset: str, seed: int = 0, dropout: float = 0.0) -> FloatNet:
    """MLP ``sizes[0] - ... - sizes[-1]``: a flatten joins the first block. ``dropout`` > 0 ends every hidden
    block with ``nn.Dropout(dropout)`` (no weights: the architecture stays the integer model's)."""
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
    return FloatNet(blocks, output, dataset)


def cnn_twin(
    convs: list[int | str], fc: list[int], in_shape: tuple[int, int, int], activation: str, dataset: str, seed: int = 0
) -> FloatNet:
    """VGG-style CNN: ``convs`` lists 3x3 conv widths with ``"P"`` for a 2x2 max pool (joined to the block before);
    then flatten, the ``fc`` hidden widths, and the output layer."""
    torch.manual_seed(seed)
    c, h, w = in_shape
    blocks: list[nn.Sequential] = []
    for item in convs:
        if item == "P":
            blocks[-1].append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
            continue
        blocks.append(nn.Sequential(nn.Conv2d(c, item, 3, padding=1, bias=False), _act(activation)))
        c = item
    n_in = c * h * w
    for i, width in enumerate(fc):
        layers = [nn.Flatten()] if i == 0 else []
        blocks.append(nn.Sequential(*layers, nn.Linear(n_in, width, bias=False), _act(activation)))
        n_in = width
    output = nn.Linear(n_in, 10, bias=False)
    if not fc:  # the output layer reads the last conv block's pooled maps directly
        output = nn.Sequential(nn.Flatten(), output)
    return FloatNet(blocks, output, dataset)


_VGG8B = [128, 256, "P", 256, 512, "P", 512, "P", 512, "P"]
_VGG11B = [128, 128, 128, 256, "P", 256, 512, "P", 512, 512, "P", 512, "P"]
_SMALL_CNN = [32, 64, "P", 64, 128, "P", 128, "P", 128, "P"]


def _mlp(sizes, activation, dataset):
    return mlp_twin, dict(sizes=sizes, activation=activation, dataset=dataset)


def _cnn(convs, fc, dataset):
    return cnn_twin, dict(convs=convs, fc=fc, in_shape=dataset_info(dataset).shape, activation="leaky4", dataset=dataset)


# integer model name -> (builder, kwargs): the architecture of each integer model, in float32. PocketNN nets
# use tanh as pocketTanh approximates it; NITRO-D nets use leaky ReLU with slope 1/4 as NITRO-ReLU does.
TWIN_SPECS: dict[str, tuple] = {
    "pocketnn_mlp_mnist": _mlp([784, 100, 50, 10], "tanh", "mnist"),
    "pocketnn_mlp_fmnist": _mlp([784, 200, 100, 50, 10], "tanh", "fmnist"),
    "nitro_mlp1": _mlp([784, 100, 50, 10], "leaky4", "mnist"),
    "nitro_mlp2": _mlp([784, 200, 100, 50, 10], "leaky4", "fmnist"),
    "nitro_mlp3": _mlp([784, 1024, 1024, 1024, 10], "leaky4", "mnist"),
    "nitro_mlp3_fmnist": _mlp([784, 1024, 1024, 1024, 10], "leaky4", "fmnist"),
    "nitro_mlp4": _mlp([3072, 3000, 3000, 3000, 10], "leaky4", "cifar10"),
    "nitro_vgg8b": _cnn(_VGG8B, [1024], "cifar10"),
    "nitro_vgg8b_mnist": _cnn(_VGG8B, [1024], "mnist"),
    "nitro_vgg8b_fmnist": _cnn(_VGG8B, [1024], "fmnist"),
    "nitro_vgg11b": _cnn(_VGG11B, [1024], "cifar10"),
    "nitro_small_cnn": _cnn(_SMALL_CNN, [], "cifar10"),
    "nitro_small_cnn_mnist": _cnn(_SMALL_CNN, [], "mnist"),
    "nitro_small_cnn_fmnist": _cnn(_SMALL_CNN, [], "fmnist"),
}


def _register_twins() -> None:
    for name, (builder, spec) in TWIN_SPECS.items():
        def factory(seed: int = 0, _b=builder, _s=spec, **options):
            return _b(seed=seed, **_s, **options)

        register_model(
            f"{name}_float", kind="float", twin_of=name, dataset=spec["dataset"],
            input_shape=spec.get("in_shape", dataset_info(spec["dataset"]).shape), num_classes=10,
        )(factory)


_register_twins()
