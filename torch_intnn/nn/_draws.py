"""Random integers drawn ahead of a compiled training step.

Dynamo cannot trace ``torch.Generator``, so a compiled step cannot draw its augmentation and dropout masks
itself. Modules that draw call :func:`randint` with the ``generator`` they were given; that is either a
``torch.Generator`` (eager: draw now) or a :class:`Draws` (compiled: hand out the next tensor drawn ahead, in
the same order, from the same generator, so the values are the same bit for bit). :class:`DrawRecorder`
learns the sequence of draws of a forward pass (bounds, shapes, dtypes) once, from a one-image forward.
:func:`counter_generator` is the one seed mixer: every stream of randomness (a rule's steps, a loader's
epochs) is seeded from ``(seed, counter)`` by it, so a resumed run, which restores the counter, draws the same.
"""

from __future__ import annotations

import torch

__all__ = ["Draws", "DrawRecorder", "counter_generator", "randint"]

_MIX = 1_000_003  # prime; (seed, counter) pairs with counters below it never share a generator seed


def counter_generator(seed: int, counter: int) -> torch.Generator:
    """A ``torch.Generator`` seeded from ``(seed, counter)``: ``seed * 1_000_003 + counter`` (mod 2**64)."""
    return torch.Generator().manual_seed((seed * _MIX + counter) % (1 << 64))


class Draws:
    """Tensors drawn ahead, handed out in order by :func:`randint`."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.tensors, self.next = list(tensors), 0

    def take(self) -> torch.Tensor:
        t = self.tensors[self.next]
        self.next += 1
        return t


class DrawRecorder:
    """A generator stand-in that draws from ``generator`` and records ``(low, high, shape, dtype)`` per draw."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator, self.plan = generator, []

    def randint(self, low: int, high: int, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        self.plan.append((low, high, tuple(shape), dtype))
        return torch.randint(low, high, shape, generator=self.generator, dtype=dtype, device=self.generator.device)

    @staticmethod
    def draw(plan: list[tuple], batch: int, generator: torch.Generator) -> Draws:
        """Draw a recorded ``plan`` for a batch of ``batch`` images (every draw has the batch as dim 0)."""
        return Draws([torch.randint(lo, hi, (batch, *shape[1:]), generator=generator, dtype=dtype, device=generator.device)
                      for lo, hi, shape, dtype in plan])


def randint(low: int, high: int, shape: tuple, generator, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """``torch.randint(low, high, shape, generator=generator, dtype=dtype)``, or the next tensor of a
    :class:`Draws`, or a recorded draw of a :class:`DrawRecorder`."""
    if isinstance(generator, Draws):
        return generator.take()
    if isinstance(generator, DrawRecorder):
        return generator.randint(low, high, shape, dtype)
    return torch.randint(low, high, shape, generator=generator, dtype=dtype, device=generator.device)
