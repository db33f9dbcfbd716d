"""Resume is the same run: a training process killed with SIGKILL at a random moment and resumed from its last
checkpoint ends with a state_dict bit-identical to the uninterrupted run's."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

JOB = Path(__file__).with_name("resume_job.py")
STEPS = 300


def _run(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(JOB.parent)}
    return subprocess.Popen([sys.executable, str(JOB), *map(str, args)], env=env, **kw)


@pytest.mark.parametrize("model,rule", [("toy_linear", "toy")])
def test_sigkill_mid_epoch_then_resume_is_bit_identical(fake_root, tmp_path, model, rule):
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    assert _run([fake_root, ref, STEPS, model, rule]).wait(timeout=300) == 0
    last = crash / "ckpt" / "last.ckpt"
    proc = _run([fake_root, crash, STEPS, model, rule])
    target = random.randint(25, STEPS - 60)  # a random step, almost always inside an epoch (20 steps each)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if last.exists() and torch.load(last, weights_only=True)["global_step"] >= target:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the job ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = torch.load(last, weights_only=True)
    assert 0 < saved["global_step"] < STEPS
    assert _run([fake_root, crash, STEPS, model, rule, last]).wait(timeout=300) == 0
    expected = torch.load(ref / "final.pt", weights_only=True)
    resumed = torch.load(crash / "final.pt", weights_only=True)
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key


@pytest.mark.parametrize("model,rule", [("toy_linear", "toy"), ("pocketnn_mlp_mnist", "dfa"), ("nitro_mlp1", "nitro")])
def test_resume_from_a_mid_epoch_checkpoint_is_bit_identical(fake_root, tmp_path, model, rule):
    """In-process twin of the SIGKILL test for every rule: stop at step 33 (an epoch has 20 steps), resume to 60.
    The DFA and NITRO-D rules draw augmentation (and NITRO-D dropout) from their step counter."""
    from resume_job import train

    expected = train(fake_root, tmp_path / "ref", 60, model, rule)
    train(fake_root, tmp_path / "part", 33, model, rule)
    last = tmp_path / "part" / "ckpt" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 33
    resumed = train(fake_root, tmp_path / "part", 60, model, rule, ckpt_path=last)
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key


class _RecordBatches(pl.Callback):
    """The labels of every training batch, per epoch: the order in which the loader served the data."""

    def __init__(self) -> None:
        self.epochs: dict[int, list[torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.epochs.setdefault(trainer.current_epoch, []).append(batch[1].clone())


def _fit_recording(root, out: Path, max_steps: int, seed: int = 7, ckpt_path=None) -> _RecordBatches:
    from torch_intnn.lightning import IntegerClassifier, MNISTDataModule

    record = _RecordBatches()
    every_step = pl.callbacks.ModelCheckpoint(dirpath=out, every_n_train_steps=1, save_last=True, save_top_k=0)
    trainer = pl.Trainer(max_steps=max_steps, callbacks=[every_step, record], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=out)
    model = IntegerClassifier("toy_linear", rule="toy", seed=seed)
    trainer.fit(model, MNISTDataModule(root=str(root), batch_size=50, val_size=200, seed=seed), ckpt_path=ckpt_path)
    return record


def test_lightning_reshuffles_every_epoch_and_a_resume_continues_the_order(fake_root, tmp_path):
    """Lightning never asks for the batch that ends the loader's generator: each epoch must still be reshuffled
    (20 batches an epoch here), and a run resumed mid-epoch must see the uninterrupted run's order."""
    full = _fit_recording(fake_root, tmp_path / "full", 60)
    orders = [torch.cat(full.epochs[e]) for e in range(3)]
    assert all(len(o) == 1000 for o in orders)
    assert sorted(orders[0].tolist()) == sorted(orders[1].tolist()) == sorted(orders[2].tolist())
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])

    _fit_recording(fake_root, tmp_path / "part", 27)  # stops 7 batches into epoch 1
    resumed = _fit_recording(fake_root, tmp_path / "part", 60, ckpt_path=tmp_path / "part" / "last.ckpt")
    assert [len(resumed.epochs[e]) for e in (1, 2)] == [13, 20]
    assert torch.equal(torch.cat(resumed.epochs[1]), torch.cat(full.epochs[1][7:]))
    assert torch.equal(torch.cat(resumed.epochs[2]), orders[2])


def test_resume_from_an_end_of_epoch_checkpoint_starts_the_next_epochs_order(fake_root, tmp_path):
    full = _fit_recording(fake_root, tmp_path / "full", 40)
    _fit_recording(fake_root, tmp_path / "part", 20)  # exactly one epoch
    resumed = _fit_recording(fake_root, tmp_path / "part", 40, ckpt_path=tmp_path / "part" / "last.ckpt")
    assert torch.equal(torch.cat(resumed.epochs[1]), torch.cat(full.epochs[1]))


def test_the_data_order_follows_the_seed(fake_root, tmp_path):
    a = _fit_recording(fake_root, tmp_path / "a", 5, seed=1)
    b = _fit_recording(fake_root, tmp_path / "b", 5, seed=2)
    assert not torch.equal(torch.cat(a.epochs[0]), torch.cat(b.epochs[0]))


def _cli(args, cwd):
    """``intnn`` in a process of its own, with the toy model registered."""
    env = {**os.environ, "PYTHONPATH": str(JOB.parent)}
    code = "import sys, toy; from torch_intnn.cli import main; main(sys.argv[1:])"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("moment", ["random", "final test"])
def test_a_cli_run_killed_at_any_moment_and_resumed_ends_as_the_uninterrupted_run(fake_root, tmp_path, moment):
    """SIGKILL during training (after a random number of epochs) or during the final test evaluation, then the
    README's resume command: the same results.json (timings aside), best checkpoint and weights."""
    from test_module import _assert_same_results, _toy_recipe

    recipe = _toy_recipe(tmp_path, max_epochs=6)
    args = ["fit", "--config", recipe, "--data.root", fake_root, "--threads", 1]
    assert _cli(args, tmp_path).wait(timeout=300) == 0  # version_0: uninterrupted
    run = tmp_path / "logs" / "toy_recipe" / "version_1"
    last = run / "checkpoints" / "last.ckpt"
    if moment == "final test":
        assert _cli([*args, "--trainer.callbacks+=toy.KillAtTest"], tmp_path).wait(timeout=300) == -signal.SIGKILL
        assert torch.load(last, weights_only=True)["global_step"] == 120 and not (run / "results.json").exists()
    else:
        proc = _cli(args, tmp_path)
        target = random.randint(1, 5) * 20  # kill once the checkpoint of a random epoch is written
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            try:
                if torch.load(last, weights_only=True)["global_step"] >= target:
                    break
            except Exception:  # not written yet, or being replaced
                pass
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _cli([*args, "--ckpt_path", last], tmp_path).wait(timeout=300) == 0
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0", "version_1"]
    _assert_same_results(run.parent / "version_0", run)
    expected = torch.load(run.parent / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    resumed = torch.load(last, weights_only=True)["state_dict"]
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)
