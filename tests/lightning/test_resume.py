"""Resume is the same run: a training process killed with SIGKILL at a random moment and resumed from its last
checkpoint ends with a state_dict bit-identical to the uninterrupted run's."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

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
