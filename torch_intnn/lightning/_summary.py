"""Lightning's model summary for integer models: counts their integer weights (buffers, not Parameters).

Lightning counts ``parameters()``, which an integer model has none of ("0 Total params"). Here the counts are
the integer tensors of ``state_dict()``: per layer, in total, and trainable = those the rule's optimizer updates;
the size is their bytes.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary import ModelSummary as Summary

__all__ = ["IntegerModelSummary"]


def _integer_elements(module: torch.nn.Module) -> int:
    return sum(t.numel() for t in module.state_dict().values() if isinstance(t, torch.Tensor) and not t.is_floating_point())


class _IntegerSummary(Summary):
    def __init__(self, model, max_depth: int, trained: list[torch.Tensor]) -> None:
        self._trained = trained
        super().__init__(model, max_depth=max_depth)

    @property
    def param_nums(self) -> list[int]:
        return [_integer_elements(layer._module) for layer in self._layer_summary.values()]

    @property
    def total_parameters(self) -> int:
        return _integer_elements(self._model)

    @property
    def trainable_parameters(self) -> int:
        return sum(t.numel() for t in self._trained)

    @property
    def model_size(self) -> float:
        tensors = [t for t in self._model.state_dict().values() if isinstance(t, torch.Tensor)]
        return sum(t.numel() * t.element_size() for t in tensors) / 1e6


class IntegerModelSummary(ModelSummary):
    """The model summary callback of :class:`~torch_intnn.lightning.IntegerClassifier` (module docstring); it
    takes the place of Lightning's, when there is one."""

    def _summary(self, trainer, pl_module) -> Summary:
        trained = [p for opt in trainer.optimizers for group in opt.param_groups for p in group["params"]]
        return _IntegerSummary(pl_module, self._max_depth, trained)
