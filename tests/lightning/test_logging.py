"""Integer and float runs log the same TensorBoard tags in the same units, read back with EventAccumulator."""

import math

import lightning.pytorch as pl
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from torch_intnn.lightning import FloatClassifier, IntegerClassifier, MNISTDataModule

COMMON = {"train/acc", "train/loss", "train/lr", "val/acc", "hp_metric"}


def _fit(module, root, tmp_path, epochs=3):
    dm = MNISTDataModule(root=str(root), batch_size=50, val_size=200)
    logger = pl.loggers.TensorBoardLogger(tmp_path, name="run")
    trainer = pl.Trainer(max_epochs=epochs, limit_train_batches=4, enable_progress_bar=False,
                         enable_model_summary=False, logger=logger, default_root_dir=tmp_path)
    trainer.fit(module, dm)
    events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    return events


def _values(events, tag):
    return [e.value for e in events.Scalars(tag)]


@pytest.mark.parametrize("kind", ["integer", "float"])
def test_runs_log_the_common_tags_in_the_same_units(fake_root, tmp_path, kind):
    if kind == "integer":
        module = IntegerClassifier("pocketnn_mlp_mnist", rule="dfa", rule_args={"lr_inv": 512})
    else:
        module = FloatClassifier("pocketnn_mlp_mnist_float", lr=1e-3)
    events = _fit(module, fake_root, tmp_path)
    assert COMMON <= set(events.Tags()["scalars"])
    losses = _values(events, "train/loss")
    assert all(0.01 < v < 2 * math.log(10) for v in losses), losses  # cross-entropy in nats, not 1/16 nat
    lr = _values(events, "train/lr")[0]
    assert lr == pytest.approx(1 / 512 if kind == "integer" else 1e-3)
    val = _values(events, "val/acc")
    assert _values(events, "hp_metric")[-1] == pytest.approx(max(val))  # the best validation accuracy, not -1
    histograms = events.Tags()["histograms"]
    assert histograms and all(t.startswith("weights/") and t.endswith(("weight", "bias")) for t in histograms), histograms
    assert not any("table" in t or "input." in t for t in histograms)  # trained weights only


@pytest.mark.parametrize("model, rule", [("pocketnn_mlp_mnist", "dfa"), ("nitro_mlp1", "nitro")])
def test_saturated_activations_are_logged_as_the_fraction_of_the_rules_units(fake_root, tmp_path, model, rule):
    """train/saturated is the epoch's saturated count over the activation values it counts among (the rule's
    ``units``), a fraction in [0, 1]; ``units`` itself is not logged."""
    import torch

    module = IntegerClassifier(model, rule=rule, rule_args={"lr_inv": 64})
    counts = []
    step = module.rule.train_step

    def recording_step(x, y, opt):
        stats = step(x, y, opt)
        counts.append((int(stats["saturated"]), int(stats["units"])))
        return stats

    module.rule.train_step = recording_step
    events = _fit(module, fake_root, tmp_path, epochs=1)
    assert "train/units" not in events.Tags()["scalars"]
    (logged,) = _values(events, "train/saturated")
    saturated, units = (sum(c) for c in zip(*counts))
    hidden = sum(lin.out_features for lin in module.net.linears[:-1]) if rule == "dfa" else sum(
        b.layer.out_features for b in module.net.blocks)
    assert units == len(counts) * 50 * hidden  # 4 batches of 50 images, every hidden activation value
    assert 0 < saturated < units and logged == pytest.approx(saturated / units)
