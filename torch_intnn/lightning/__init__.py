"""The only place Lightning is imported: LightningModules, DataModules and the CLI."""

from torch_intnn.lightning.datamodules import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    IntDataModule,
    MNISTDataModule,
)
from torch_intnn.lightning.float_module import FloatClassifier
from torch_intnn.lightning.module import IntegerClassifier

__all__ = ["IntegerClassifier", "FloatClassifier", "IntDataModule", "MNISTDataModule", "FashionMNISTDataModule", "CIFAR10DataModule"]
