"""NITRO-D's input side: per-image integer augmentation and integer standardisation of raw uint8 images.

Both are the first modules of a NITRO-D model, so a model takes raw pixels (N, C, H, W) uint8 like every
registered integer model (nitro_d.md sec. 7).
"""

from __future__ import annotations

import torch
from torch import nn

from torch_intnn.nn._draws import randint
from torch_intnn.ops._checks import check_integer, check_rank
from torch_intnn.ops.augment import crop_flip
from torch_intnn.ops.rounding import div_trunc, saturate

__all__ = ["IntRandomCropFlip", "NitroStandardize"]


class IntRandomCropFlip(nn.Module):
    """Per-image random crop (pad with 0, crop back) and horizontal flip of uint8 images; training mode only.

    Each image gets its own offsets ``dy, dx`` uniform in ``0..2*pad`` and its own coin for the flip (p = 1/2),
    drawn with ``torch.randint`` from the generator passed to ``forward`` (or taken from its
    :class:`~torch_intnn.nn._draws.Draws` in a compiled step). The paper draws one offset and one
    coin per *batch* and crops only half the batches (nitro_d.md sec. 7, quirk 4); per-image draws are the usual
    practice (torchvision ``RandomCrop(padding=pad)`` + ``RandomHorizontalFlip``) and give more varied batches.
    Padding is raw 0 (black), the MNIST background. Eval mode is the identity.

    Args:
        pad: crop padding in pixels (0: no crop).
        flip: also flip horizontally with probability 1/2.

    Shapes: x (N, C, H, W) uint8 -> same shape and dtype.
    """

    def __init__(self, pad: int = 0, flip: bool = False) -> None:
        super().__init__()
        if pad < 0:
            raise ValueError(f"IntRandomCropFlip needs pad >= 0, got {pad}")
        self.pad, self.flip = pad, flip

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training or (self.pad == 0 and not self.flip):
            return x
        if generator is None:
            raise ValueError("IntRandomCropFlip in training mode needs generator= (the learning rule passes one)")
        n, p = x.shape[0], self.pad
        dy = randint(0, 2 * p + 1, (n, 1), generator)
        dx = randint(0, 2 * p + 1, (n, 1), generator)
        flip = randint(0, 2, (n, 1), generator).bool() if self.flip else None
        return crop_flip(x, p, dy, dx, flip)

    def extra_repr(self) -> str:
        return f"per image: random crop pad={self.pad} (zero padding), flip={self.flip}; train mode only"


class NitroStandardize(nn.Module):
    """Integer standardisation: ``x' = clamp(T(gain * (x - 128 - mu) / mad), -127, 127)`` as int8.

    ``mu`` and ``mad`` are per-channel int64 buffers set by :meth:`fit` from training images: on the centred
    pixels ``x - 128``, ``mu = T(sum(x) / n)`` and ``mad = T(sum(|x - mu|) / n)`` (mean absolute deviation), all
    in int64 (nitro_d.md sec. 7; the paper fits on the first 25,000 images of a shuffled training set, this fits
    on every image it is given). ``gain = 51`` aims at a standard deviation of about 64, since std ~ 1.25 mad
    for Gaussian data. Before :meth:`fit` the buffers are ``mu = 0``, ``mad = gain``: plain centring,
    ``x' = clamp(x - 128, -127, 127)``.

    Args:
        channels: number of image channels.
        gain: the integer numerator (51 in the paper).
        flatten: flatten the result to (N, C*H*W) for an MLP.

    Shapes: x (N, C, H, W) uint8 -> (N, C, H, W) int8, or (N, C*H*W) int8 with ``flatten``.
    """

    def __init__(self, channels: int, gain: int = 51, flatten: bool = False) -> None:
        super().__init__()
        self.channels, self.gain, self.flatten = channels, gain, flatten
        self.register_buffer("mean", torch.zeros(channels, dtype=torch.int64))
        self.register_buffer("mad", torch.full((channels,), gain, dtype=torch.int64))

    @torch.no_grad()
    def fit(self, images: torch.Tensor, chunk: int = 4096) -> None:
        """Set ``mean`` and ``mad`` from ``images`` (N, C, H, W) uint8, in int64, ``chunk`` images at a time."""
        check_integer(images, "NitroStandardize.fit images")
        check_rank(images, 4, "NitroStandardize.fit images", "(N, C, H, W)")
        if images.dtype != torch.uint8 or images.shape[1] != self.channels:
            raise ValueError(f"NitroStandardize.fit expects uint8 images with {self.channels} channels, got "
                             f"{images.dtype} {tuple(images.shape)}")
        n = images.shape[0] * images.shape[2] * images.shape[3]
        total = torch.zeros(self.channels, dtype=torch.int64)
        for part in images.split(chunk):
            total += part.sum((0, 2, 3), dtype=torch.int64)
        mean = div_trunc(total - 128 * n, n)  # sum of the centred pixels x - 128
        dev = torch.zeros(self.channels, dtype=torch.int64)
        shift = (mean + 128).view(1, -1, 1, 1)
        for part in images.split(chunk):
            dev += (part.to(torch.int64) - shift).abs().sum((0, 2, 3))
        self.mean.copy_(mean)
        self.mad.copy_(div_trunc(dev, n).clamp(min=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_integer(x, "NitroStandardize input")
        check_rank(x, 4, "NitroStandardize input", "(N, C, H, W)")
        if x.dtype != torch.uint8:
            raise TypeError(f"NitroStandardize expects raw uint8 pixels, got dtype {x.dtype}")
        centred = x.to(torch.int32) - (self.mean + 128).to(torch.int32).view(1, -1, 1, 1)
        y = saturate(div_trunc(self.gain * centred, self.mad.to(torch.int32).view(1, -1, 1, 1)), 8).to(torch.int8)
        return y.flatten(1) if self.flatten else y

    def extra_repr(self) -> str:
        return (f"x' = clamp(T({self.gain} * (x - 128 - mean) / mad), -127, 127) -> int8, "
                f"mean={self.mean.tolist()}, mad={self.mad.tolist()}, flatten={self.flatten}")
