"""A small training job for the kill-and-resume test: python resume_job.py DATA_ROOT OUT MAX_STEPS MODEL RULE [CKPT]."""

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

import toy  # noqa: F401  (registers the toy model and rule)
from torch_intnn.lightning import IntegerClassifier, MNISTDataModule
from torch_intnn.lightning.checkpoint import AtomicCheckpointIO

root, out, max_steps, model_name, rule = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
ckpt_path = sys.argv[6] if len(sys.argv) > 6 else None
torch.set_num_threads(1)
model = IntegerClassifier(model_name, rule=rule, seed=7)
dm = MNISTDataModule(root=root, batch_size=50, val_size=200, seed=7)
every_step = pl.callbacks.ModelCheckpoint(dirpath=out / "ckpt", every_n_train_steps=1, save_last=True, save_top_k=0)
trainer = pl.Trainer(
    max_steps=max_steps, callbacks=[every_step], plugins=[AtomicCheckpointIO()], logger=False,
    enable_progress_bar=False, enable_model_summary=False, default_root_dir=out,
)
trainer.fit(model, dm, ckpt_path=ckpt_path)
torch.save(model.state_dict(), out / "final.pt")
