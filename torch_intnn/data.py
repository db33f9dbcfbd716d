"""torchvision datasets as integer tensors, an honest train/validation split, and a resumable batch loader.

Nothing here is floating point: images stay uint8 (N, C, H, W) and labels int64 (N,). torchvision is imported
only when a dataset is loaded, so ``import torch_intnn`` stays free of it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from torch_intnn.nn._draws import counter_generator
from torch_intnn.ops._checks import error_summary

__all__ = [
    "DATA_ENV", "DATASETS", "DATASET_INFO", "DatasetInfo", "DatasetUnavailable", "dataset_info", "resolve_root",
    "load_split", "split_files", "verify_files", "train_val_split", "BatchLoader",
]

DATA_ENV = "TORCH_INTNN_DATA"
VAL_SPLIT_SEED = 12345  # fixed, independent of the run seed: every run validates on the same images


@dataclass(frozen=True)
class DatasetInfo:
    """Everything the package knows of one dataset; every module that needs a fact of a dataset reads it here.

    Attributes:
        name: the package's name (``"mnist"``, ``"fmnist"``, ``"cifar10"``).
        torchvision: the ``torchvision.datasets`` class that reads it.
        datamodule: the :mod:`torch_intnn.lightning` DataModule serving it.
        shape: (C, H, W) of one image.
        train_size, test_size: images in the published splits.
        mean, std: per-channel mean and standard deviation of the training pixels in [0, 1] (the float twins'
            input normalisation; the integer models compute theirs from the data).
        crop_padding, flip: NITRO-D's augmentation for the dataset (random crop after zero padding by this many
            pixels; random horizontal flip), nitro_d.md sec. 7.
        files: the files torchvision reads, relative to the data root: (train files, test files).
        published: (size in bytes, MD5) of each published file (:func:`verify_files`).
    """

    name: str
    torchvision: str
    datamodule: str
    shape: tuple[int, int, int]
    train_size: int
    test_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int
    flip: bool
    files: tuple[tuple[str, ...], tuple[str, ...]]
    published: dict[str, tuple[int, str]]


def _idx_files(folder: str, md5s: tuple[str, str, str, str]) -> dict:
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    sizes = (47040016, 60008, 7840016, 10008)
    files = tuple(f"{folder}/raw/{n}" for n in names)
    return dict(files=(files[:2], files[2:]), published=dict(zip(files, zip(sizes, md5s))))


_CIFAR = "cifar-10-batches-py"
# The digests are of the extracted published files (the CIFAR-10 ones are torchvision's own; for MNIST and
# Fashion-MNIST torchvision keeps only those of the .gz downloads).
DATASET_INFO: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist", "MNIST", "MNISTDataModule", (1, 28, 28), 60000, 10000, (0.1307,), (0.3081,), 2, False,
        **_idx_files("MNIST", ("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
                               "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"))),
    "fmnist": DatasetInfo(
        "fmnist", "FashionMNIST", "FashionMNISTDataModule", (1, 28, 28), 60000, 10000, (0.2860,), (0.3530,), 2, True,
        **_idx_files("FashionMNIST", ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                                      "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"))),
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR10", "CIFAR10DataModule", (3, 32, 32), 50000, 10000, (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616), 4, True,
        files=(tuple(f"{_CIFAR}/{b}" for b in (*(f"data_batch_{i}" for i in range(1, 6)), "batches.meta")),
               (f"{_CIFAR}/test_batch", f"{_CIFAR}/batches.meta")),
        published={f"{_CIFAR}/{name}": entry for name, entry in {
            "batches.meta": (158, "5ff9c542aee3614f3951f8cda6e48888"),
            "data_batch_1": (31035704, "c99cafc152244af753f735de768cd75f"),
            "data_batch_2": (31035320, "d4bba439e000b95fd0a9bffe97cbabec"),
            "data_batch_3": (31035999, "54ebc095f3ab1f0389bbae665268c751"),
            "data_batch_4": (31035696, "634d18415352ddfa80567beed471001a"),
            "data_batch_5": (31035623, "482c414d41f54cd18b22e5b47cb7c3cb"),
            "test_batch": (31035526, "40351d587109b95175f43aff81a1287e"),
        }.items()}),
}
DATASETS = tuple(DATASET_INFO)


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; ``ValueError`` naming the known datasets otherwise."""
    if name not in DATASET_INFO:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASET_INFO[name]


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

    return getattr(tvd, dataset_info(name).torchvision)


_verified: set[tuple] = set()  # (path, size, mtime) of files whose MD5 matched in this process


def split_files(name: str, train: bool) -> list[str]:
    """The files torchvision reads for one split, relative to the data root."""
    return list(dataset_info(name).files[0 if train else 1])


def verify_files(name: str, root: Path, files: list[str]) -> None:
    """Check each file of the published dataset against its known MD5 before it is read.

    A file of the published file's size must have its MD5 (bytes changed in place are caught); a file of another
    size is not the published one (a truncated copy, or a dataset of one's own in the same format, as the tests
    write) and is left to torchvision's reader, whose errors :func:`load_split` reports naming the file.
    Raises ``DatasetUnavailable`` naming the file, the expected and the actual digest.
    """
    published = dataset_info(name).published
    for rel in files:
        path = root / rel
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if rel not in published or stat.st_size != published[rel][0] or key in _verified:
            continue
        digest = hashlib.md5()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        if digest.hexdigest() != published[rel][1]:
            raise DatasetUnavailable(
                f"{name}: '{path}' is damaged: its MD5 is {digest.hexdigest()}, the published file's is "
                f"{published[rel][1]}. Replace it with the torchvision file (for example, delete it and let "
                f"torchvision download it again)."
            )
        _verified.add(key)


def load_split(name: str, root: str | os.PathLike | None = None, train: bool = True, download: bool = True):
    """Load a whole split as integer tensors.

    Missing files are downloaded by torchvision when ``download`` (folders the failed attempt created are
    removed again); present files are checked (:func:`verify_files`) and read, never downloaded over.

    Returns:
        images: (N, C, H, W) uint8 (C = 1 for MNIST and Fashion-MNIST, 3 for CIFAR-10); labels: (N,) int64.
    Raises:
        DatasetUnavailable: files missing (and not downloadable) or damaged; the message names the file or the
            root, and how to set the root.
    """
    cls = _torchvision_class(name)
    path = resolve_root(root)
    files = split_files(name, train)
    missing = [rel for rel in files if not (path / rel).is_file()]
    if missing:
        if not download:
            raise _missing(name, path, missing, "downloading is off")
        created = [d for d in (path / missing[0]).parents if not d.exists()]
        try:
            cls(str(path), train=train, download=True)
        except Exception as failed:
            for d in created:  # deepest first: leave nothing behind where nothing was asked for
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
            raise _missing(name, path, missing, f"the download failed ({error_summary(failed)})") from failed
    verify_files(name, path, files)
    try:
        ds = cls(str(path), train=train, download=False)
    except Exception as err:  # torchvision raises RuntimeError, ValueError, pickle errors... for damaged files
        raise DatasetUnavailable(
            f"{name}: could not read {', '.join(repr(str(path / f)) for f in files)} ({error_summary(err)}); the files "
            "are damaged or not in torchvision's format"
        ) from err
    return _to_tensors(name, ds, path, files)


def _to_tensors(name: str, ds, path: Path, files: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    where = ", ".join(repr(str(path / f)) for f in files)
    try:
        if name == "cifar10":
            images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> NCHW
            labels = torch.as_tensor(ds.targets, dtype=torch.int64)
        else:
            images = ds.data.unsqueeze(1).contiguous()  # (N, 28, 28) -> (N, 1, 28, 28)
            labels = ds.targets.to(torch.int64)
    except Exception as err:
        raise DatasetUnavailable(f"{name}: {where} could not be read as images and labels ({error_summary(err)})") from err
    if images.dtype != torch.uint8 or len(images) != len(labels) or len(images) == 0:
        raise DatasetUnavailable(f"{name}: {where} hold {len(images)} images of dtype {images.dtype} and "
                                 f"{len(labels)} labels; expected as many uint8 images as labels")
    if int(labels.min()) < 0 or int(labels.max()) > 9:
        raise DatasetUnavailable(f"{name}: {where} hold labels outside 0..9: [{int(labels.min())}, "
                                 f"{int(labels.max())}]")
    return images, labels


def _missing(name: str, path: Path, missing: list[str], why: str) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"{name}: no usable dataset under data root '{path.resolve()}': {', '.join(missing)} missing, and {why}. "
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
        return torch.randperm(len(self.images), generator=counter_generator(self.seed, epoch))

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
