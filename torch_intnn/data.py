"""torchvision datasets as integer tensors, an honest train/validation split, and a resumable batch loader.

Nothing here is floating point: images stay uint8 (N, C, H, W) and labels int64 (N,). torchvision is imported
only when a dataset is loaded, so ``import torch_intnn`` stays free of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = [
    "DATA_ENV", "DATASETS", "DatasetUnavailable", "resolve_root", "load_split", "train_val_split", "BatchLoader",
]

DATA_ENV = "TORCH_INTNN_DATA"
DATASETS = ("mnist", "fmnist", "cifar10")
VAL_SPLIT_SEED = 12345  # fixed, independent of the run seed: every run validates on the same images


class DatasetUnavailable(RuntimeError):
    """The dataset is neither under the data root nor downloadable."""


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$TORCH_INTNN_DATA``, else ``./data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path("data")


def _torchvision_class(name: str):
    import torchvision.datasets as tvd

    classes = {"mnist": tvd.MNIST, "fmnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}
    if name not in classes:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return classes[name]


def load_split(name: str, root: str | os.PathLike | None = None, train: bool = True, download: bool = True):
    """Load a whole split as integer tensors.

    Returns:
        images: (N, C, H, W) uint8 (C = 1 for MNIST and Fashion-MNIST, 3 for CIFAR-10); labels: (N,) int64.
    Raises:
        DatasetUnavailable: the files are missing or corrupt and could not be downloaded; the message names the
            root and how to set it.
    """
    cls = _torchvision_class(name)
    path = resolve_root(root)
    try:
        ds = cls(str(path), train=train, download=False)
    except Exception as missing:  # torchvision raises RuntimeError for missing or corrupt files
        if not download:
            raise _unavailable(name, path, missing) from missing
        try:
            ds = cls(str(path), train=train, download=True)
        except Exception as failed:
            raise _unavailable(name, path, failed) from failed
    return _to_tensors(name, ds, path)


def _to_tensors(name: str, ds, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        if name == "cifar10":
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> NCHW
            labels = torch.as_tensor(ds.targets, dtype=torch.int64)
        else:
            images = ds.data.unsqueeze(1).contiguous()  # (N, 28, 28) -> (N, 1, 28, 28)
            labels = ds.targets.to(torch.int64)
    except Exception as err:
        raise _unavailable(name, path, err) from err
    if images.dtype != torch.uint8 or len(images) != len(labels) or len(images) == 0:
        raise _unavailable(name, path, ValueError(f"read {len(images)} images and {len(labels)} labels"))
    if int(labels.min()) < 0 or int(labels.max()) > 9:
        raise _unavailable(name, path, ValueError(f"labels outside 0..9: [{int(labels.min())}, {int(labels.max())}]"))
    return images, labels


def _unavailable(name: str, path: Path, cause: Exception) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"{name}: no usable dataset under data root '{path.resolve()}' and the download failed ({cause}). "
        f"Put the torchvision files there, or point the root elsewhere with --data.root DIR or the environment "
        f"variable {DATA_ENV}=DIR."
    )


def train_val_split(n: int, val_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) of a training set of ``n`` images: ``val_size`` images chosen by a fixed seed."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}), got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


class BatchLoader:
    """Batches of in-memory integer tensors, reshuffled each epoch from ``(seed, epoch)``, resumable mid-epoch.

    Indexing whole batches of one tensor is far cheaper than a ``DataLoader`` collating single samples, which
    matters when an epoch takes about a second. Each new iteration is a new epoch, whether the previous one ran
    to its end or was left after ``len(loader)`` batches (as Lightning leaves it, never asking for the batch that
    would end the generator), unless :meth:`set_epoch` named the epoch first: Lightning calls it at the start of
    every training epoch, as for a ``DistributedSampler``, so the order follows the trainer's epoch also after a
    resume at an epoch boundary (where Lightning restores no loader state). ``state_dict()`` holds the epoch and
    the position in it, so a run resumed mid-epoch continues at the exact next batch.

    Yields (images (B, C, H, W) uint8, labels (B,) int64).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.epoch, self.position = 0, 0  # position: batches already yielded in `epoch`
        self._started = False  # an iteration of `epoch` has begun, so the next fresh one is the next epoch
        self._resumed = False  # load_state_dict was called: the next iteration continues at `position`

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The sample order of ``epoch``: a permutation drawn from ``(seed, epoch)`` (identity without shuffle)."""
        if not self.shuffle:
            return torch.arange(len(self.images))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.images), generator=gen)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration serve ``epoch``'s order (from its start, unless resuming inside it)."""
        if epoch != self.epoch:
            self.epoch, self.position, self._resumed = epoch, 0, False
        if not self._resumed:
            self._started = False

    # Lightning tells a loader its epoch through ``loader.sampler.set_epoch`` (or ``loader.batch_sampler``'s):
    # this loader is its own sampler, and has no batch sampler.
    batch_sampler = None

    @property
    def sampler(self) -> BatchLoader:
        return self

    def __iter__(self):
        if self._resumed:
            if self.position >= len(self):  # saved after the last batch of its epoch
                self.epoch, self.position = self.epoch + 1, 0
        else:
            if self._started:
                self.epoch += 1
            self.position = 0
        self._resumed, self._started = False, True
        order = self.order(self.epoch)
        while self.position < len(self):
            idx = order[self.position * self.batch_size : (self.position + 1) * self.batch_size]
            self.position += 1
            yield self.images[idx], self.labels[idx]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position <= len(self):
            raise ValueError(f"loader state {state} is outside this loader (epoch >= 0, position in [0, {len(self)}])")
        self.epoch, self.position = epoch, position
        self._resumed = True
