"""Safe checkpoint reading: tensors and plain containers only, with errors that say what is wrong; an integrity
digest of the integer training state, and a check of every tensor against the module that loads it."""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from torch_intnn.ops._checks import error_summary

__all__ = [
    "AtomicCheckpointIO", "BestAndLastCheckpoint", "CheckpointError", "DIGEST_KEY", "check_state", "load_checkpoint",
    "state_digest",
]

DIGEST_KEY = "intnn_digest"  # the checkpoint entry holding state_digest() of what was saved


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
            f"them ({error_summary(err)})"
        ) from err
    except Exception as err:  # torch.load raises many kinds for damaged files (RuntimeError, EOFError, IndexError...)
        raise CheckpointError(f"checkpoint '{path}' is truncated or corrupted ({error_summary(err)})") from err
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint '{path}' is not a Lightning checkpoint (no 'state_dict' entry)")
    return ckpt


def state_digest(checkpoint: dict) -> dict[str, str]:
    """SHA-256 digests of a checkpoint's ``state_dict`` and, if present, ``optimizer_states`` (the weights,
    feedback matrices, counters, residuals and param groups): every tensor's name, dtype, shape and bytes, and
    every other value's ``repr``, in sorted order. Written with an integer checkpoint, checked when it is loaded,
    so a byte changed inside the file (which ``torch.load`` reads without complaint) is caught."""
    parts = {"state_dict": checkpoint["state_dict"]}
    if "optimizer_states" in checkpoint:
        parts["optimizer_states"] = checkpoint["optimizer_states"]
    return {name: _hash(value).hexdigest() for name, value in parts.items()}


def _hash(value, h=None):
    h = h or hashlib.sha256()
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().reshape(-1)
        h.update(f"tensor {t.dtype} {tuple(value.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, dict):
        h.update(b"{")
        for key in sorted(value, key=repr):
            h.update(repr(key).encode() + b":")
            _hash(value[key], h)
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for item in value:
            _hash(item, h)
        h.update(b"]")
    else:
        h.update(repr(value).encode() + b";")
    return h


def check_state(checkpoint: dict, module: torch.nn.Module, where: str) -> None:
    """Refuse, with a :class:`CheckpointError` naming ``where`` and the reason, an integer checkpoint whose
    digest is missing or wrong, or whose ``state_dict`` does not match ``module``'s: missing or extra keys, or a
    tensor of another dtype or shape (``load_state_dict`` would cast a float or int64 weight silently), or a
    weight outside its layer's declared ``weight_bits``. Nothing is loaded here; call it before loading."""
    saved = checkpoint.get(DIGEST_KEY)
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where} has no integrity digest ('{DIGEST_KEY}'); torch_intnn writes one with every "
                              "integer checkpoint, so this file was not written by it or was altered")
    actual = state_digest(checkpoint)
    for part, digest in actual.items():
        if saved.get(part) != digest:
            raise CheckpointError(f"{where}: the {part} do not match the integrity digest written with them "
                                  "(the file was altered or damaged after it was saved)")
    state, expected = checkpoint["state_dict"], module.state_dict()
    missing, extra = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or extra:
        raise CheckpointError(f"{where} does not fit this model: missing {missing or 'none'}, unexpected "
                              f"{extra or 'none'}")
    for key, ref in expected.items():
        t = state[key]
        if not isinstance(t, torch.Tensor) or t.dtype != ref.dtype or t.shape != ref.shape:
            got = f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise CheckpointError(f"{where}: '{key}' is {got}, but this model holds {ref.dtype} {tuple(ref.shape)}")
    prefix = {id(m): name for name, m in module.named_modules()}
    for m in module.modules():
        bits = getattr(m, "weight_bits", None)
        for attr in ("weight", "bias"):
            key = f"{prefix[id(m)]}.{attr}".lstrip(".")
            if bits is None or key not in state or state[key].numel() == 0:
                continue
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            t_min, t_max = (int(v) for v in torch.aminmax(state[key]))
            if t_min < lo or t_max > hi:
                raise CheckpointError(f"{where}: '{key}' spans [{t_min}, {t_max}], outside its layer's declared "
                                      f"{bits}-bit range [{lo}, {hi}]")


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

    def load_state_dict(self, state_dict: dict) -> None:
        """Lightning keeps the best score and paths of a resumed run only when the checkpoint folder is spelt as
        it was; here the same folder reached by another path (absolute against relative, another working
        directory, the run folder moved) counts as the same run, with the saved paths rebased onto it."""
        old = state_dict.get("dirpath")
        if old is not None and self.dirpath is not None and old != self.dirpath and _same_run_folder(old, self.dirpath):
            rebase = lambda path: str(Path(self.dirpath) / Path(path).name) if path else path  # noqa: E731
            state_dict = {
                **state_dict, "dirpath": self.dirpath, "best_model_path": rebase(state_dict.get("best_model_path")),
                "kth_best_model_path": rebase(state_dict.get("kth_best_model_path")),
                "last_model_path": rebase(state_dict.get("last_model_path")),
                "best_k_models": {rebase(k): v for k, v in (state_dict.get("best_k_models") or {}).items()},
            }
        super().load_state_dict(state_dict)

    def _save_last_if_behind(self, trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):  # skips steps already saved
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def _same_run_folder(a: str, b: str) -> bool:
    """Whether two checkpoint folders are the same run's: the same real path, or the same last three parts
    (``<run name>/<version>/checkpoints``)."""
    pa, pb = Path(a), Path(b)
    return os.path.realpath(pa) == os.path.realpath(pb) or pa.parts[-3:] == pb.parts[-3:]
