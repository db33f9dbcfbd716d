"""Safe checkpoint reading: tensors and plain containers only, with errors that say what is wrong."""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "BestAndLastCheckpoint", "CheckpointError", "load_checkpoint"]


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: missing, truncated, corrupted or holding arbitrary objects."""


def load_checkpoint(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True)``: never unpickles arbitrary objects.

    Raises:
        CheckpointError: naming the path and the reason (missing, truncated/corrupted, disallowed object).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint '{path}' holds objects other than tensors and plain containers; refusing to unpickle "
            f"them ({str(err).splitlines()[0]})"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint '{path}' is truncated or corrupted ({str(err).splitlines()[0]})") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint '{path}' is not a Lightning checkpoint (no 'state_dict' entry)")
    return ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` that writes a checkpoint to a temporary file in the same folder, flushes it to
    disk and renames it over the target, so a crash during a save leaves the previous checkpoint intact; and
    that reads checkpoints with :func:`load_checkpoint` (never unpickling arbitrary objects)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return load_checkpoint(path)


class BestAndLastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is the state at the end of every epoch.

    With a ``monitor``, Lightning writes ``last.ckpt`` only when it also writes a new best checkpoint, so after
    the last improvement ``last.ckpt`` falls behind the run, and a resume from it repeats every epoch since. This
    subclass also writes it after each epoch that did not improve (the best checkpoints are kept as before).
    """

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_behind(trainer)

    def _save_last_if_behind(self, trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):  # skips steps already saved
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
