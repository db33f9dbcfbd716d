"""The int8-limb split of a weight buffer, kept between calls while the buffer is unchanged.

Splitting a weight (:func:`torch_intnn.ops.split_rhs`) costs a few passes over it. In inference, and whenever
a layer runs more than once between two updates, the split can be reused. The cache is keyed by the buffer's
storage address and its version counter (``Tensor._version``), which every in-place write through the tensor
or one of its views bumps (``copy_``, ``add_``, indexing assignment, ``load_state_dict``), and by the buffer
object itself, which ``.to(device)`` or re-registration replaces.

Writes that bypass the version counter (through ``weight.data`` or a NumPy view) must be followed by
``invalidate()``. Under ``torch.compile`` the cache is bypassed and the split becomes part of the graph.
"""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

import torch

from torch_intnn.ops._checks import holds_values

__all__ = ["SplitCache"]

T = TypeVar("T")


class SplitCache(Generic[T]):
    """Holds ``split(weight)`` for the last weight seen; recomputes it when the weight has changed."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: T | None = None

    @staticmethod
    def _key_of(weight: torch.Tensor) -> tuple | None:
        if not holds_values(weight):  # a fake or meta weight has no storage to key by: never cache it
            return None
        try:
            version = weight._version
        except RuntimeError:  # inference tensors carry no version counter: never cache them
            return None
        return id(weight), weight.data_ptr(), version, weight.device, weight.dtype, tuple(weight.shape)

    def get(self, weight: torch.Tensor, split: Callable[[torch.Tensor], T]) -> T:
        if torch.compiler.is_compiling():
            return split(weight)
        key = self._key_of(weight)
        if key is None or key != self._key:
            self.invalidate()  # so that a split that raises (values outside the width) leaves nothing stale
            self._value = split(weight)
            self._key = key
        return self._value

    def invalidate(self) -> None:
        self._key = self._value = None
