"""``NitroNet``: a NITRO-D network, the model the ``"nitro"`` rule trains (nitro_d.md secs. 1 and 8)::

    uint8 -> IntRandomCropFlip (train only) -> NitroStandardize -> stages -> output NitroHead -> int8 scores

``stages`` holds local-loss blocks (each with its own learning head), plain max-pools, flattens and integer
dropouts. The paper's models are built by :mod:`torch_intnn.models.nitro`; :meth:`NitroNet.from_sequential`
reads the same layout from a plain ``nn.Sequential``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from torch_intnn.nn.nitro import IntDropout
from torch_intnn.nn.nitro_blocks import NitroHead, _NitroBlock
from torch_intnn.nn.nitro_input import IntRandomCropFlip, NitroStandardize
from torch_intnn.nn.pool import IntAvgPool2d, IntFlatten, IntMaxPool2d

__all__ = ["NitroNet"]

_STAGES = (_NitroBlock, IntDropout, IntMaxPool2d, IntAvgPool2d, IntFlatten)  # what may stand between the ends


class NitroNet(nn.Module):
    """A NITRO-D network: augmentation, standardisation, ``stages``, output layer (see the module docstring).

    ``forward(x, generator=None)``: x (N, C, H, W) uint8 -> int8 scores (N, num_classes) of the output layer. In
    training mode the augmentation and dropouts draw from ``generator`` (the rule passes one seeded from its seed
    and step counter) and every block keeps what its local backward needs.

    With ``ensemble=True`` the eval-mode scores are the int16 sum of every learning head's int8 scores and the
    output layer's: the heads are trained anyway, and early heads learn faster than the output layer, which
    sits at the end of a chain of greedily trained blocks (the paper notes that heads 5-6 of VGG8B beat the
    output layer on Fashion-MNIST, nitro_d.md sec. 10). Training-mode forward is unchanged.
    """

    def __init__(self, augment: IntRandomCropFlip, standardize: NitroStandardize, stages: Sequence[nn.Module],
                 output: NitroHead, ensemble: bool = False) -> None:
        super().__init__()
        self.augment, self.standardize = augment, standardize
        self.stages = nn.ModuleList(stages)
        self.output = output
        self.ensemble = ensemble

    @property
    def blocks(self) -> list[_NitroBlock]:
        """The local-loss blocks, in forward order."""
        return [m for m in self.stages if isinstance(m, _NitroBlock)]

    def fit_input(self, images: torch.Tensor) -> None:
        """Integer standardisation statistics from the training images (N, C, H, W) uint8."""
        self.standardize.fit(images)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = self.standardize(self.augment(x, generator))
        summed = self.ensemble and not self.training
        total = None
        for stage in self.stages:
            x = stage(x, generator) if isinstance(stage, IntDropout) else stage(x)
            if summed and isinstance(stage, _NitroBlock):
                scores = stage.head(x).to(torch.int16)
                total = scores if total is None else total + scores
        out = self.output(x)
        return out if total is None else total + out.to(torch.int16)

    def extra_repr(self) -> str:
        return "eval scores: sum of all heads and the output layer (int16)" if self.ensemble else ""

    @classmethod
    def from_sequential(cls, seq: nn.Sequential, ensemble: bool = False) -> "NitroNet":
        """The NitroNet of a plain ``nn.Sequential`` laid out as the module docstring says: an optional
        :class:`IntRandomCropFlip`, a :class:`NitroStandardize`, then blocks (``NitroLinearBlock``,
        ``NitroConvBlock``) with dropouts, pools and flattens between, and a :class:`NitroHead` last (the output
        layer). The modules are ``seq``'s own, not copies: training the NitroNet trains ``seq``. ``ensemble``: as
        the class's (the rule, handed a Sequential, builds it without).

        Raises ``TypeError`` naming the first module that does not fit that layout, or the missing end.
        """
        items = list(seq.named_children())
        augment = IntRandomCropFlip(0, False)
        if items and isinstance(items[0][1], IntRandomCropFlip):
            augment = items.pop(0)[1]
        if not items or not isinstance(items[0][1], NitroStandardize):
            raise TypeError("the nitro rule trains an nn.Sequential that starts with NitroStandardize (after an "
                            "optional IntRandomCropFlip): it turns the raw uint8 pixels into int8")
        standardize = items.pop(0)[1]
        if not items or not isinstance(items[-1][1], NitroHead):
            raise TypeError("the nitro rule trains an nn.Sequential that ends with a NitroHead (the output layer)")
        output = items.pop()[1]
        for name, module in items:
            if not isinstance(module, _STAGES):
                raise TypeError(f"the nitro rule cannot train through {type(module).__name__} '{name}': between "
                                "NitroStandardize and the output NitroHead it takes NitroLinearBlock and "
                                "NitroConvBlock (an IntLinear or IntConv2d inside one), IntDropout, pools and "
                                "IntFlatten")
        if not any(isinstance(module, _NitroBlock) for _, module in items):
            raise TypeError("the nitro rule needs at least one NitroLinearBlock or NitroConvBlock before the output "
                            "NitroHead")
        return cls(augment, standardize, [module for _, module in items], output, ensemble)
