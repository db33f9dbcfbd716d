"""A small training job for the resume tests: python resume_job.py DATA_ROOT OUT MAX_STEPS MODEL RULE [CKPT]."""

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

import toy  # noqa: F401  (registers the toy model and rule)
from torch_intnn.lightning import IntegerClassifier, MNISTDataModule
from torch_intnn.lightning.checkpoint import AtomicCheckpointIO

# switch on every source of randomness a rule has: DFA's random shifts, NITRO-D's crops, flips and dropout
RANDOMNESS = {"dfa": ({}, {"augment_shift": 1}), "nitro": ({"augment": True, "dropout_pct": 10}, {})}


def train(root, out: Path, max_steps: int, model_name: str, rule: str, ckpt_path=None) -> dict:
    """Train to ``max_steps`` with a checkpoint after every step (``out/ckpt/last.ckpt``); returns the state_dict."""
    model_args, rule_args = RANDOMNESS.get(rule, ({}, {}))
    model = IntegerClassifier(model_name, model_args=model_args, rule=rule, rule_args=rule_args, seed=7)
    dm = MNISTDataModule(root=str(root), batch_size=50, val_size=200, seed=7)
    every_step = pl.callbacks.ModelCheckpoint(dirpath=out / "ckpt", every_n_train_steps=1, save_last=True,
                                              save_top_k=0)
    trainer = pl.Trainer(
        max_steps=max_steps, callbacks=[every_step], plugins=[AtomicCheckpointIO()], logger=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=out,
    )
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    return model.state_dict()


if __name__ == "__main__":
    torch.set_num_threads(1)
    root, out, steps, name, rule = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    state = train(root, out, steps, name, rule, sys.argv[6] if len(sys.argv) > 6 else None)
    torch.save(state, out / "final.pt")
