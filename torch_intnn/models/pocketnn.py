"""PocketNN's integer MLPs (pocketnn.md sec. 9), trained by integer DFA (:mod:`torch_intnn.learning.dfa`).

Registered: ``pocketnn_mlp_mnist`` (784-100-50-10) and ``pocketnn_mlp_fmnist`` (784-200-100-50-10). Both take RAW
uint8 images (N, 1, 28, 28) and return integer class scores (N, 10). One class, two arithmetics:

``variant="faithful"`` -- PocketNN exactly: raw pixels 0..255, all weights and biases 0, pocketTanh on every layer
(the output too) with ``u = T(z / (256 * fan_in))``; scores are the output tanh in [-127, 127] (int8).

``variant="improved"`` -- each layer is written in fixed point with a named unit (``input_one``, ``weight_one``):

* input: standardised by a rounded affine map fitted on the training set (:meth:`fit_input`), ``32`` = one
  standard deviation, int8, so the first product is one int8 limb;
* weights: ``2**13`` = 1.0 (int16 range, so +-4.0), LeCun-uniform init ``+-floor(2**13 * sqrt(3 / fan_in))``;
* hidden layers: pocketTanh with ``u = round(z / 2**s)``, ``s`` chosen so that ``u = 64 * z_real`` (the scale on
  which pocketTanh approximates tanh), outputs ``128`` = 1.0;
* output: linear class scores (logits) ``16`` = one nat (:class:`~torch_intnn.nn.activations.PocketRescale`), int16,
  for the integer softmax cross-entropy of the improved DFA rule.

Each layer keeps its bias in the units of its pre-activation ``z`` (``input_one * weight_one`` = 1.0).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from torch_intnn.data import dataset_info
from torch_intnn.models._registry import register_model
from torch_intnn.nn.activations import PocketRescale, PocketTanh
from torch_intnn.nn.init import uniform_int_
from torch_intnn.nn.linear import IntLinear
from torch_intnn.ops._checks import check_integer
from torch_intnn.ops.rounding import shift_round

__all__ = ["PocketInput", "PocketMLP", "pocketnn_mlp_mnist", "pocketnn_mlp_fmnist"]

STD_ONE = 32  # improved input: one standard deviation of the training pixels
ACT_ONE = 128  # pocketTanh output for 1.0
WEIGHT_ONE = 2**13  # improved weights: 1.0
LOGIT_ONE = 16  # improved class scores: one nat
RAW_ONE = 64  # improved arithmetic on raw pixels (an ablation): pixel / 64 is the real input, in [0, 4]
_U_ONE = 64  # pocketTanh's input scale: u = 64 * x approximates 128 * tanh(x) (pocketnn.md sec. 1.1)
_GAIN_SHIFT = 8  # the standardisation gain is a fixed-point multiplier with 8 fractional bits


class PocketInput(nn.Module):
    """Raw uint8 images (N, C, H, W) -> flat integer features (N, C*H*W).

    Args:
        mode: ``"raw"``: uint8 pixels unchanged (PocketNN). ``"standardize"``: int8
            ``clamp(shift_round(gain * (x - mean), 8), -127, 127)`` with ``gain = round(32 * 2**8 / std)``, so 32 is
            one standard deviation. ``mean`` and ``gain`` are buffers set by :meth:`fit_input` (before it: mean
            128, std 64); the map is applied as a 256-entry table (``table``, also a buffer), one gather per pixel.
    """

    def __init__(self, mode: str = "raw") -> None:
        super().__init__()
        if mode not in ("raw", "standardize"):
            raise ValueError(f"PocketInput mode must be 'raw' or 'standardize', got {mode!r}")
        self.mode = mode
        self.register_buffer("mean", torch.tensor(128, dtype=torch.int32))
        self.register_buffer("gain", torch.tensor(STD_ONE * (1 << _GAIN_SHIFT) // 64, dtype=torch.int32))
        self.register_buffer("table", torch.zeros(256, dtype=torch.int8))
        self._fill_table()

    def _fill_table(self) -> None:
        v = torch.arange(256, dtype=torch.int32)
        self.table.copy_(shift_round((v - self.mean) * self.gain, _GAIN_SHIFT).clamp_(-127, 127))

    @torch.no_grad()
    def fit_input(self, images: torch.Tensor) -> None:
        """Integer mean and standard deviation of ``images`` (uint8, any shape), rounded; no-op for ``"raw"``."""
        if images.dtype != torch.uint8:
            raise TypeError(f"fit_input expects the raw uint8 training images, got dtype {images.dtype}")
        if self.mode == "raw":
            return
        n = images.numel()
        counts = torch.bincount(images.reshape(-1), minlength=256)  # exact statistics from the histogram
        values = torch.arange(256, dtype=torch.int64)
        total, total_sq = int((counts * values).sum()), int((counts * values * values).sum())
        mean = (2 * total + n) // (2 * n)  # Python ints: round half up
        var = max(1, (total_sq - 2 * mean * total + mean * mean * n) // n)
        std = math.isqrt(var)
        self.mean.fill_(mean)
        self.gain.fill_(max(1, (2 * STD_ONE * (1 << _GAIN_SHIFT) + std) // (2 * std)))
        self._fill_table()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            check_integer(x, "PocketInput")
            raise TypeError(f"PocketInput expects raw uint8 images (N, C, H, W), got dtype {x.dtype}")
        x = x.reshape(x.shape[0], -1)
        if self.mode == "raw":
            return x
        return self.table.index_select(0, x.reshape(-1).to(torch.int32)).view(x.shape)

    def extra_repr(self) -> str:
        if self.mode == "raw":
            return "uint8 pixels 0..255, flattened"
        return (
            f"int8 = clamp(round({int(self.gain)} * (x - {int(self.mean)}) / 2**{_GAIN_SHIFT}), -127, 127) "
            f"by table: {STD_ONE} = one std"
        )


class PocketMLP(nn.Module):
    """An integer MLP in PocketNN's layout: input transform, then (IntLinear, activation) per layer.

    Args:
        sizes: layer widths, input first (e.g. ``(784, 100, 50, 10)``).
        variant: ``"faithful"`` or ``"improved"`` (module docstring); sets the defaults of the options below.
        input: ``"raw"`` or ``"standardize"`` (:class:`PocketInput`).
        init: ``"zeros"`` (PocketNN) or ``"lecun"`` (uniform on +-floor(weight_one * sqrt(3 / fan_in)), from the
            seeded generator).
        output: ``"tanh"`` (pocketTanh scores in [-127, 127]) or ``"linear"`` (logits, ``LOGIT_ONE`` per nat).
        bias: biases on every layer (faithful: yes; improved: no, as NITRO-D: in z units a useful bias would not
            fit the 16-bit weight range, and float DFA with ±1 px augmentation scores the same without, 97.87 vs
            97.79 % test in /tmp experiments).
        seed: seeds every random initial value.

    Attributes read by the DFA rule: ``linears`` and ``acts`` (``nn.ModuleList``, one pair per layer, output last);
    ``input_one[k]`` and ``weight_one`` (the integers meaning 1.0 at layer k's input and in its weights; 1 in the
    faithful variant, whose units are PocketNN's).

    Shapes: x (N, C, H, W) uint8 -> scores (N, sizes[-1]) int8 (tanh output) or int16 (linear output).
    """

    def __init__(
        self,
        sizes: tuple[int, ...],
        *,
        variant: str = "improved",
        input: str | None = None,
        init: str | None = None,
        output: str | None = None,
        bias: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if variant not in ("faithful", "improved"):
            raise ValueError(f"PocketMLP variant must be 'faithful' or 'improved', got {variant!r}")
        faithful = variant == "faithful"
        input = input or ("raw" if faithful else "standardize")
        init = init or ("zeros" if faithful else "lecun")
        output = output or ("tanh" if faithful else "linear")
        bias = faithful if bias is None else bias
        if init not in ("zeros", "lecun") or output not in ("tanh", "linear"):
            raise ValueError(f"PocketMLP: init must be 'zeros' or 'lecun' and output 'tanh' or 'linear', got {init!r}, {output!r}")
        self.sizes, self.variant, self.init, self.output = tuple(sizes), variant, init, output
        gen = torch.Generator().manual_seed(seed)
        self.input = PocketInput(input)
        first_bits = 9 if input == "raw" else 8  # uint8 pixels need 9 signed bits; they take one offset limb anyway
        self.weight_one = 1 if faithful else WEIGHT_ONE
        if faithful:
            self.input_one = [1] * (len(sizes) - 1)  # PocketNN's own units; the faithful rule does not rescale
        else:
            self.input_one = [RAW_ONE if input == "raw" else STD_ONE] + [ACT_ONE] * (len(sizes) - 2)
        self.linears, self.acts = nn.ModuleList(), nn.ModuleList()
        last = len(sizes) - 2
        for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            lin = IntLinear(fan_in, fan_out, bias, weight_bits=16, input_bits=first_bits if k == 0 else 8, init="zeros")
            if init == "lecun":
                uniform_int_(lin.weight, math.isqrt(3 * self.weight_one**2 // fan_in), gen)
            self.linears.append(lin)
            self.acts.append(self._activation(fan_in, self.input_one[k], k == last, faithful))

    def _activation(self, fan_in: int, in_one: int, is_output: bool, faithful: bool) -> nn.Module:
        if is_output and self.output == "linear":
            # logits = LOGIT_ONE * z_real = z * LOGIT_ONE / (in_one * weight_one)
            return PocketRescale(shift=_log2(in_one * self.weight_one // LOGIT_ONE), bits=16)
        if faithful:
            return PocketTanh(fan_in)
        return PocketTanh(shift=_log2(in_one * self.weight_one // _U_ONE))  # u = 64 * z_real

    def fit_input(self, images: torch.Tensor) -> None:
        """Fit the input standardisation on the training images (uint8 (N, C, H, W)); no-op for raw input."""
        self.input.fit_input(images)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.input(x)
        for lin, act in zip(self.linears, self.acts):
            a = act(lin(a))
        return a


def _log2(v: int) -> int:
    if v <= 0 or v & (v - 1):
        raise ValueError(f"expected a positive power of two, got {v}")
    return v.bit_length() - 1


_INFO = dict(kind="integer", rule="dfa", num_classes=10)
_MNIST_SIZES, _FMNIST_SIZES = (784, 100, 50, 10), (784, 200, 100, 50, 10)


@register_model("pocketnn_mlp_mnist", dataset="mnist", input_shape=dataset_info("mnist").shape,
                layout=dict(kind="mlp", sizes=_MNIST_SIZES, activation="tanh"), **_INFO)
def pocketnn_mlp_mnist(seed: int = 0, variant: str = "improved", **kwargs) -> PocketMLP:
    """PocketNN's MNIST MLP 784-100-50-10 (84,060 parameters); see :class:`PocketMLP` for ``variant`` and options."""
    return PocketMLP(_MNIST_SIZES, variant=variant, seed=seed, **kwargs)


@register_model("pocketnn_mlp_fmnist", dataset="fmnist", input_shape=dataset_info("fmnist").shape,
                layout=dict(kind="mlp", sizes=_FMNIST_SIZES, activation="tanh"), **_INFO)
def pocketnn_mlp_fmnist(seed: int = 0, variant: str = "improved", **kwargs) -> PocketMLP:
    """PocketNN's Fashion-MNIST MLP 784-200-100-50-10 (182,660 parameters); see :class:`PocketMLP`."""
    return PocketMLP(_FMNIST_SIZES, variant=variant, seed=seed, **kwargs)
