"""Integer weight initialisers, each drawing from an explicit ``torch.Generator`` (so a seed fixes the model)."""

from __future__ import annotations

import math

import torch

__all__ = ["uniform_int_", "uniform_nonzero_int_", "kaiming_uniform_int_bound"]


def uniform_int_(t: torch.Tensor, bound: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``t`` in place with integers drawn uniformly from [-bound, bound]."""
    vals = torch.randint(-bound, bound + 1, t.shape, generator=generator, dtype=torch.int64)
    return t.copy_(vals)


def uniform_nonzero_int_(t: torch.Tensor, bound: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``t`` with integers uniform on [-bound, bound] without 0 (PocketNN's feedback and "He" init, sec. 4.1)."""
    if bound < 1:
        raise ValueError(f"uniform_nonzero_int_ needs bound >= 1, got {bound}")
    vals = torch.randint(-bound, bound, t.shape, generator=generator, dtype=torch.int64)
    vals = torch.where(vals >= 0, vals + 1, vals)  # [-b, b-1] -> [-b, -1] U [1, b]
    return t.copy_(vals)


def kaiming_uniform_int_bound(fan_in: int, cap: int = 64) -> int:
    """NITRO-D's integer Kaiming-uniform bound for leaky ReLU slope 1/4 (nitro_d.md sec. 7).

    ``min(cap, floor(1372 * 128 * 1732 / (isqrt(fan_in) * 10**6)))``: 784 -> 10, 100 -> 30, 9 -> 64 (capped).
    """
    return min(cap, (1372 * 128 * 1732) // (math.isqrt(fan_in) * 10**6))
