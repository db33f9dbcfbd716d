"""NITRO-D's local-loss blocks and learning heads (nitro_d.md secs. 1, 4 and 5).

A block is ``forward layer (Linear or 3x3 Conv, no bias) -> NitroScaling(256 * fan_in) -> NitroReLU``, and
owns a learning *head* ``[MaxPool (kh, kw)] -> flatten -> Linear(d -> classes) -> NitroScaling(256 * d)``
that turns the block's output into class scores for the block's own loss. Error flows from the head into the
block's forward layer and stops there: no block ever computes a gradient for its input.

The products and gradients go through the layers' own methods (``IntLinear`` / ``IntConv2d`` forward,
``weight_grad``, ``input_grad``), built with ``narrow=True``: their weights declare the tightest width the current
values provably fit (:func:`~torch_intnn.ops._checks.value_bits`), so int8 activations take one int8 limb, int32
weights within 16 bits take two, and results stay int32 whenever the widths prove it. Exact either way.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from torch_intnn.nn.conv import IntConv2d
from torch_intnn.nn.linear import IntLinear
from torch_intnn.nn.nitro import NitroReLU, NitroScaling
from torch_intnn.ops._checks import value_bits
from torch_intnn.ops.backend import Backend
from torch_intnn.ops.pool import max_pool2d
from torch_intnn.ops.rounding import saturate

__all__ = ["pool_to_d", "NitroHead", "NitroLinearBlock", "NitroConvBlock"]


def pool_to_d(channels: int, height: int, width: int, d: int) -> tuple[int, int]:
    """The head's max-pool kernel (kh, kw): the paper's pool-to-d rule (nitro_d.md sec. 4).

    Start from (1, 1) and double kh and kw alternately, kh first, until ``C * ceil(H/kh) * ceil(W/kw) <= d``.
    CIFAR-10 VGG8B conv1 (128, 32, 32) with d = 4096 -> (8, 4).
    """
    kh = kw = 1
    turn_h = True
    while channels * math.ceil(height / kh) * math.ceil(width / kw) > d:
        if kh >= height and kw >= width:
            raise ValueError(f"pool_to_d: {channels} channels alone exceed d={d}; raise d")
        if (turn_h and kh < height) or kw >= width:
            kh *= 2
        else:
            kw *= 2
        turn_h = not turn_h
    return kh, kw


class NitroHead(nn.Module):
    """A learning head, or the output layer: ``[MaxPool] -> flatten -> Linear(d -> classes) -> NitroScaling``.

    Args:
        in_shape: shape of one input sample: (C, H, W) for a conv block, (features,) otherwise.
        num_classes: outputs.
        d_max: for a (C, H, W) input, max-pool with :func:`pool_to_d` down to at most ``d_max`` features
            (the paper's ``d^lr = 4096``; padding never wins, first maximum on ties); ``None`` flattens without
            pooling.
        input_bits: declared width of the inputs (8 after NITRO-ReLU, 16 after a wide dropout).
        generator: seeded generator for the integer Kaiming init of the weights.

    Shapes: h (N, *in_shape) integer -> y_hat (N, classes) int8. ``backward(delta)`` with delta (N, classes)
    int8 returns the weight gradient (classes, d) and, unless ``input_grad=False``, the gradient at the pooled
    features (N, d) int32, computed with the weights *before* the update; :meth:`select` and :meth:`scatter`
    move between the pooled features and the (N, *in_shape) input.
    """

    def __init__(
        self,
        in_shape: tuple[int, ...],
        num_classes: int = 10,
        d_max: int | None = None,
        *,
        input_bits: int = 8,
        generator: torch.Generator | None = None,
        backend: Backend | str = Backend.AUTO,
    ) -> None:
        super().__init__()
        self.in_shape, self.input_bits = tuple(in_shape), input_bits
        self.kernel = pool_to_d(*in_shape, d_max) if len(in_shape) == 3 and d_max else (1, 1)
        if len(in_shape) == 3:
            c, h, w = in_shape
            d = c * math.ceil(h / self.kernel[0]) * math.ceil(w / self.kernel[1])
        else:
            d = math.prod(in_shape)
        self.d = d
        self.linear = IntLinear(d, num_classes, bias=False, input_bits=input_bits, generator=generator,
                                backend=backend, narrow=True)
        self.scaling = NitroScaling(256 * d)
        self._where: torch.Tensor | None = None

    @property
    def pools(self) -> bool:
        return self.kernel != (1, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        where = None
        if self.pools:
            if self.training:
                p, where = max_pool2d(h, self.kernel, ceil_mode=True, return_positions=True)
                where = where.reshape(where.shape[0], -1)
            else:
                p = max_pool2d(h, self.kernel, ceil_mode=True)
        else:
            p = h
        p = p.reshape(p.shape[0], -1)  # (N, d), features in (C, H_out, W_out) order; kept by the linear layer
        self._where = where  # (N, d) NHWC offsets of the maxima (training only)
        return self.scaling(self.linear(p))

    def backward(self, delta: torch.Tensor, input_grad: bool = True):
        """Weight gradient ``delta^T p`` and, if asked, the gradient ``delta W`` at the pooled features p."""
        if self.linear.input is None:
            raise RuntimeError("NitroHead.backward needs a training-mode forward pass first")
        grad_w = self.linear.weight_grad(delta, 8)  # (classes, d)
        self.linear.clear_kept()
        return grad_w, self.linear.input_grad(delta, 8) if input_grad else None  # (N, d)

    def select(self, x: torch.Tensor) -> torch.Tensor:
        """Values of ``x`` (N, *in_shape), e.g. the block's pre-activation, where the last pooling took its maxima.

        Returns (N, d) in feature order. Reads only N * d elements (the input is NHWC-contiguous, as conv
        outputs are, or gets copied).
        """
        if self._where is None:
            return x.reshape(x.shape[0], -1)
        flat = x.permute(0, 2, 3, 1).reshape(-1)
        return flat.gather(0, self._where.view(-1)).view(self._where.shape)  # 3x faster than flat[where] here

    def scatter(self, g: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The transpose of :meth:`select` (max-unpooling): (N, d) -> (N, *in_shape), zero off the maxima.

        ``dtype`` (default ``g``'s) is the result's: a narrower one that holds every value of ``g`` halves or
        quarters the passes over the mostly zero result. A pooled result is ``channels_last``, the layout
        :func:`torch_intnn.ops.conv2d_weight` reads directly.
        """
        dtype = dtype or g.dtype
        if self._where is None:
            return g.view(g.shape[0], *self.in_shape).to(dtype)
        c, h, w = self.in_shape
        full = torch.zeros(g.shape[0] * h * w * c, dtype=dtype, device=g.device)
        full.scatter_(0, self._where.reshape(-1), g.reshape(-1).to(dtype))  # the positions are distinct
        self._where = None
        return full.view(g.shape[0], h, w, c).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        pool = f"maxpool {self.kernel} (ceil) -> " if self.pools else ""
        return f"in={self.in_shape}: {pool}d={self.d}"


class _NitroBlock(nn.Module):
    """Shared machinery: the forward, which keeps its output for the head, and the block-local backward."""

    layer: IntLinear | IntConv2d
    head: NitroHead

    def __init__(self, layer: IntLinear | IntConv2d, head: NitroHead, fan_in: int, k: int) -> None:
        super().__init__()
        self.layer = layer
        self.scaling = NitroScaling(256 * fan_in)
        self.act = NitroReLU(k)
        self.head = head
        self.output: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.scaling(self.layer(x)))  # the layer keeps x (and a conv its columns) in training
        self.output = h if self.training else None
        return h

    def backward(self, delta: torch.Tensor, combine: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """From the head's error ``delta`` (N, classes) int8 to ``(head weight grad, forward weight grad)``.

        Follows nitro_d.md sec. 5: ``G_lr = delta^T p``; ``g_p = delta W_lr`` (pre-update ``W_lr``);
        ``g_z = T(unpool(g_p) / q(s))`` (NITRO-ReLU backward; scaling backward is the identity); then the forward
        layer's ``G = g_z^T x`` (Linear) or its convolution analogue. The head must have run on ``self.output``.
        The ReLU backward maps 0 to 0 element-wise, so it runs on the d pooled positions before unpooling.

        ``combine``, if given, maps ``g_p`` (N, d) int32 to the gradient the block trains on (a rule adds another
        loss's gradient at the pooled features there, the similarity loss); its result is saturated to int32.
        The head's weight gradient stays the head's own.
        """
        if self.output is None:
            raise RuntimeError(f"{type(self).__name__}.backward needs a training-mode forward pass first")
        grad_head, grad_p = self.head.backward(delta)
        if combine is not None:
            grad_p = saturate(combine(grad_p), 32).to(torch.int32)
        grad_p = self.act.backward(grad_p, at=self.head.select(self.act.kept))
        grad_bits = value_bits(grad_p, 32)  # unpooling adds only zeros: measured on the d pooled positions
        if grad_bits <= 16:  # held in int8 or int16 and declared as wide, so no product re-measures the values
            dtype = torch.int8 if grad_bits <= 8 else torch.int16
            grad_bits = 8 if grad_bits <= 8 else 16
        else:
            dtype = grad_p.dtype
        grad_z = self.scaling.backward(self.head.scatter(grad_p, dtype))
        grad_fwd = self.layer.weight_grad(grad_z, grad_bits)
        self.layer.clear_kept()  # free the caches of this step
        self.output = self.act.kept = None
        return grad_head, grad_fwd


class NitroLinearBlock(_NitroBlock):
    """Fully connected local-loss block: ``Linear(in -> out) -> NitroScaling(256 * in) -> NitroReLU -> head``.

    The head has no pooling, so its d is ``out_features`` (nitro_d.md sec. 4).

    Args:
        in_features, out_features: sizes of the forward layer (no bias).
        num_classes: outputs of the head.
        input_bits: declared width of the inputs (8, or 16 after a wide dropout).
        k: NITRO-ReLU slope inverse.
        generator: seeded generator; the forward weights are drawn first, then the head's.

    Shapes: x (N, in_features) int8/int16 -> h (N, out_features) int8.
    """

    def __init__(self, in_features: int, out_features: int, num_classes: int = 10, *, input_bits: int = 8,
                 k: int = 4, generator: torch.Generator | None = None, backend: Backend | str = Backend.AUTO) -> None:
        layer = IntLinear(in_features, out_features, bias=False, input_bits=input_bits, generator=generator,
                          backend=backend, narrow=True)
        head = NitroHead((out_features,), num_classes, generator=generator, backend=backend)
        super().__init__(layer, head, in_features, k)


class NitroConvBlock(_NitroBlock):
    """Convolutional local-loss block: ``Conv3x3(pad 1) -> NitroScaling(256 * 9 C_in) -> NitroReLU -> head``.

    The head max-pools the (C_out, H, W) output down to at most ``d_max`` features (:func:`pool_to_d`).
    ``positions_per_unit = floor(H * W / (kh * kw))`` is the factor by which the paper's *intended* per-layer
    amplification exceeds 640 (nitro_d.md sec. 4, "intended amp"); the learning rule decides whether to use it.

    Args:
        in_channels, out_channels: channels of the 3x3 convolution (stride 1, padding 1, no bias).
        size: (H, W) of the input (and output) maps.
        d_max: the head's feature budget (4096 in the paper).
        num_classes, input_bits, k, generator: as :class:`NitroLinearBlock`.

    Shapes: x (N, C_in, H, W) int8/int16 -> h (N, C_out, H, W) int8 (``channels_last`` memory).
    """

    def __init__(self, in_channels: int, out_channels: int, size: tuple[int, int], num_classes: int = 10, *,
                 d_max: int = 4096, input_bits: int = 8, k: int = 4,
                 generator: torch.Generator | None = None, backend: Backend | str = Backend.AUTO) -> None:
        layer = IntConv2d(in_channels, out_channels, 3, 1, bias=False, input_bits=input_bits, generator=generator,
                          backend=backend, narrow=True)
        head = NitroHead((out_channels, *size), num_classes, d_max, generator=generator, backend=backend)
        super().__init__(layer, head, 9 * in_channels, k)
        kh, kw = self.head.kernel
        self.positions_per_unit = max(1, size[0] * size[1] // (kh * kw))
