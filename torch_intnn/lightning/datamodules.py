"""LightningDataModules for MNIST, Fashion-MNIST and CIFAR-10 as integer tensors.

Every module yields raw ``uint8`` images (N, C, H, W) and ``int64`` labels: the model's first layer decides how
to turn pixels into its integer inputs, so one DataModule serves integer and float models alike. The validation
split is taken from the training set (a fixed subset, :func:`torch_intnn.data.train_val_split`); the test set is
only read by ``trainer.test``.
"""

from __future__ import annotations

import lightning.pytorch as pl

from torch_intnn.data import BatchLoader, load_split, resolve_root, train_val_split
from torch_intnn.ops._checks import check_int_arg

__all__ = ["IntDataModule", "MNISTDataModule", "FashionMNISTDataModule", "CIFAR10DataModule"]

_SPLITS = ("test", "val", "train")


class IntDataModule(pl.LightningDataModule):
    """Integer images of one torchvision dataset.

    Args:
        dataset: ``"mnist"``, ``"fmnist"`` or ``"cifar10"``.
        root: data root; default ``$TORCH_INTNN_DATA``, else ``./data``. Missing data is downloaded when there is
            internet; otherwise the error names the root and how to set it.
        batch_size: training batch size.
        eval_batch_size: batch size for validation and test (no effect on results).
        val_size: images of the training set held out for validation (model selection, schedules).
        train_subset: if set, train on only this many images (quick runs and tests).
        seed: seed of the per-epoch shuffle (each epoch's order is drawn from ``(seed, epoch)``); default:
            ``seed_everything``'s value under ``intnn fit``, else 0.
        predict_split: the split ``intnn predict`` (``trainer.predict``) reads: ``"test"``, ``"val"`` or
            ``"train"`` (the training images left after the validation split, in their stored order).
    """

    dataset = "mnist"

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        train_subset: int | None = None,
        seed: int | None = None,
        predict_split: str = "test",
    ) -> None:
        super().__init__()
        if predict_split not in _SPLITS:
            raise ValueError(f"predict_split must be one of {', '.join(_SPLITS)}, got {predict_split!r}")
        self.predict_split = predict_split
        check_int_arg("batch_size", batch_size, 1)
        check_int_arg("eval_batch_size", eval_batch_size, 1)
        check_int_arg("val_size", val_size, 0)
        if train_subset is not None:
            check_int_arg("train_subset (None = the whole training split)", train_subset, 1)
        if seed is not None:
            check_int_arg("seed", seed)
        self.root = root
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.train_subset, self.seed = val_size, train_subset, 0 if seed is None else seed
        self._train: BatchLoader | None = None

    def prepare_data(self) -> None:
        load_split(self.dataset, self.root, train=True)
        load_split(self.dataset, self.root, train=False)

    def setup(self, stage: str | None = None) -> None:
        reads_train = stage in ("fit", "validate", None) or (stage == "predict" and self.predict_split != "test")
        if reads_train and not hasattr(self, "train_images"):
            images, labels = load_split(self.dataset, self.root, train=True)
            train_idx, val_idx = train_val_split(len(images), self.val_size)
            if self.train_subset is not None:
                if self.train_subset > len(train_idx):
                    raise ValueError(f"train_subset must be at most the {len(train_idx)} training images left "
                                     f"after the validation split, got {self.train_subset}")
                train_idx = train_idx[: self.train_subset]
            self.train_images, self.train_labels = images[train_idx], labels[train_idx]
            self.val_images, self.val_labels = images[val_idx], labels[val_idx]
        reads_test = stage in ("test", None) or (stage == "predict" and self.predict_split == "test")
        if reads_test and not hasattr(self, "test_images"):
            self.test_images, self.test_labels = load_split(self.dataset, self.root, train=False)

    def train_dataloader(self) -> BatchLoader:
        if self._train is None:
            self._train = BatchLoader(self.train_images, self.train_labels, self.batch_size, shuffle=True, seed=self.seed)
        return self._train

    def val_dataloader(self) -> BatchLoader:
        return BatchLoader(self.val_images, self.val_labels, self.eval_batch_size)

    def test_dataloader(self) -> BatchLoader:
        return BatchLoader(self.test_images, self.test_labels, self.eval_batch_size)

    def predict_dataloader(self) -> BatchLoader:
        """The ``predict_split`` images with their labels, in order (no shuffle)."""
        split = self.predict_split
        return BatchLoader(getattr(self, f"{split}_images"), getattr(self, f"{split}_labels"), self.eval_batch_size)

    def describe(self) -> str:
        return f"{self.dataset} at {resolve_root(self.root).resolve()}"


class MNISTDataModule(IntDataModule):
    dataset = "mnist"


class FashionMNISTDataModule(IntDataModule):
    dataset = "fmnist"


class CIFAR10DataModule(IntDataModule):
    dataset = "cifar10"

