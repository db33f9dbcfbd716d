"""Shared fixtures: a small synthetic dataset written in torchvision's own MNIST file format, and the ATen op
a compiled integer step multiplies with on this machine."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "lightning"))  # the toy model and rule used by Lightning tests


def write_idx(path: Path, data: torch.Tensor) -> None:
    """Write a uint8 tensor as an IDX file (the MNIST format: magic, dims, then the bytes)."""
    magic = 0x0800 | data.dim()  # 0x08: unsigned byte
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in data.shape)
    path.write_bytes(header + data.contiguous().numpy().tobytes())


def synthetic_digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable 28x28 uint8 images: class c lights a bar at row 2c+4, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 40, (n, 28, 28), generator=g)
    rows = 2 * labels + 4
    images[torch.arange(n), rows] += 200
    return images.clamp(0, 255).to(torch.uint8), labels.to(torch.uint8)


def make_mnist_root(root: Path, folder: str = "MNIST", n_train: int = 1200, n_test: int = 300) -> Path:
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = synthetic_digits(n, seed)
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    """A torchvision data root holding small synthetic MNIST and FashionMNIST splits."""
    make_mnist_root(tmp_path, "MNIST")
    make_mnist_root(tmp_path, "FashionMNIST")
    return tmp_path


@pytest.fixture
def gemm_op() -> str:
    """The GEMM op in a compiled integer graph: ``_int_mm``, the madd16 kernel's op, or int32 ``mm`` where the CPU
    backend is ``int32``."""
    from torch_intnn.ops import Backend, default_backend

    return {Backend.INT_MM: "aten._int_mm.default",
            Backend.MADD16: "torch_intnn.madd16_mm.default"}.get(default_backend("cpu"), "aten.mm.default")
