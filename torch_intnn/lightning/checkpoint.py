"""Safe checkpoint reading: tensors and plain containers only, with errors that say what is wrong."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

__all__ = ["CheckpointError", "load_checkpoint"]


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
