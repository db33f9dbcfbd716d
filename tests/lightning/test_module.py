import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import toy  # noqa: F401  (registers toy_linear and the toy rule)

from torch_intnn.lightning import IntegerClassifier, MNISTDataModule


def _trainer(tmp_path, **kw):
    defaults = dict(
        default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
        logger=pl.loggers.TensorBoardLogger(tmp_path, name="run"),
    )
    return pl.Trainer(**{**defaults, **kw})


def test_manual_integer_steps_are_counted_and_checkpointed(fake_root, tmp_path):
    model = IntegerClassifier("toy_linear", rule="toy")
    dm = MNISTDataModule(root=str(fake_root), batch_size=50, val_size=200)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=5, save_last=True)
    trainer = _trainer(tmp_path, max_steps=10, callbacks=[ckpt])
    trainer.fit(model, dm)
    assert trainer.global_step == 10
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 10
    assert saved["state_dict"]["net.fc.weight"].dtype == torch.int32
    assert torch.equal(saved["state_dict"]["net.fc.weight"], model.net.fc.weight)
    assert saved["state_dict"]["rule.steps"] == 10


class _NeverImproves(IntegerClassifier):
    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.log("val/flat", 0.0)  # equal is not better: only the first epoch has a new best


def test_last_checkpoint_follows_every_epoch_not_only_improvements(fake_root, tmp_path):
    from torch_intnn.lightning.checkpoint import BestAndLastCheckpoint

    model = _NeverImproves("toy_linear", rule="toy")
    dm = MNISTDataModule(root=str(fake_root), batch_size=50, val_size=200)
    ckpt = BestAndLastCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/flat", mode="max", save_last=True,
                                 filename="best-{step}")
    trainer = _trainer(tmp_path, max_epochs=3, callbacks=[ckpt])
    trainer.fit(model, dm)
    steps_per_epoch = trainer.global_step // 3
    assert [p.name for p in (tmp_path / "ckpt").glob("best-*")] == [f"best-step={steps_per_epoch}.ckpt"]
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == trainer.global_step == 3 * steps_per_epoch
    assert torch.equal(saved["state_dict"]["net.fc.weight"], model.net.fc.weight)


def test_training_learns_and_logs_every_split(fake_root, tmp_path):
    model = IntegerClassifier("toy_linear", rule="toy")
    dm = MNISTDataModule(root=str(fake_root), batch_size=50, val_size=200)
    trainer = _trainer(tmp_path, max_epochs=3)
    trainer.fit(model, dm)
    (result,) = trainer.test(model, dm, verbose=False)
    assert result["test/acc"] > 0.8  # bars per class are easy; chance is 0.1
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(trainer.logger.log_dir)
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/acc", "val/acc", "test/acc", "train/lr_inv", "train/weight_saturated"} <= tags
    per_weight = {t for t in tags if t.startswith("train/weight_saturated/")}
    trained = trainer.optimizers[0].parameters_in_order()
    assert per_weight == {f"train/weight_saturated/{name}" for name, b in model.net.named_buffers()
                          if any(b is p for p in trained)} and len(per_weight) == len(trained) > 1
    assert all(0.0 <= e.value <= 1.0 for t in per_weight | {"train/weight_saturated"} for e in acc.Scalars(t))
    assert any(t.startswith("weights/") for t in acc.Tags()["histograms"])


def test_weight_saturation_is_logged_as_fractions_per_weight(fake_root, tmp_path):
    """With ``lr_inv`` 1 the toy rule's first steps push most weights to the int16 limits."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = IntegerClassifier("toy_linear", rule="toy", rule_args={"lr_inv": 1})
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(model, MNISTDataModule(root=str(fake_root), batch_size=50, val_size=200))
    acc = EventAccumulator(trainer.logger.log_dir)
    acc.Reload()
    (w,), (b,), (total,) = (acc.Scalars(f"train/weight_saturated{t}") for t in ("/fc.weight", "/fc.bias", ""))
    assert 0.0 < w.value <= 1.0 and 0.0 <= b.value <= 1.0
    assert total.value == pytest.approx((7840 * w.value + 10 * b.value) / 7850)


def _toy_recipe(tmp_path, max_epochs: int):
    """A CLI recipe for the toy model on the fake MNIST root (``--data.root``), named toy_recipe.yaml."""
    recipe = tmp_path / "toy_recipe.yaml"
    recipe.write_text(
        "seed_everything: 0\n"
        "model:\n  class_path: torch_intnn.lightning.IntegerClassifier\n"
        "  init_args: {model: toy_linear, rule: toy}\n"
        "data:\n  class_path: torch_intnn.lightning.MNISTDataModule\n  init_args: {batch_size: 50, val_size: 200}\n"
        f"trainer: {{max_epochs: {max_epochs}, enable_progress_bar: false}}\n"
    )
    return recipe


def test_cli_fit_prints_and_writes_test_accuracy(fake_root, tmp_path, monkeypatch, capsys):
    from torch_intnn.cli import main

    recipe = _toy_recipe(tmp_path, max_epochs=2)
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(recipe), "--data.root", str(fake_root)])
    out = capsys.readouterr().out
    assert "test accuracy, final weights" in out and "best on validation" in out
    results = json.loads(next((tmp_path / "logs" / "toy_recipe").glob("version_*/results.json")).read_text())
    assert results["epochs"] == 2 and 0.0 <= results["test_acc_best_val"] <= 1.0


def test_cli_fit_resumed_from_last_checkpoint_ends_as_the_uninterrupted_run(fake_root, tmp_path, monkeypatch):
    """The README's resume command: ``intnn fit --config R --ckpt_path .../last.ckpt``. The resumed run continues
    in the checkpoint's run folder and ends with the uninterrupted run's weights, best checkpoint and results."""
    from torch_intnn.cli import main

    recipe = _toy_recipe(tmp_path, max_epochs=3)
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "logs" / "toy_recipe"
    args = ["fit", "--config", str(recipe), "--data.root", str(fake_root)]
    main(args)  # version_0: three epochs in one go
    main([*args, "--trainer.max_epochs", "1"])  # version_1: interrupted after one epoch
    main([*args, "--ckpt_path", str(runs / "version_1" / "checkpoints" / "last.ckpt")])  # continues version_1
    assert sorted(p.name for p in runs.iterdir()) == ["version_0", "version_1"]
    whole = torch.load(runs / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = torch.load(runs / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == whole["global_step"] > 0
    assert whole["state_dict"].keys() == resumed["state_dict"].keys()
    for key, value in whole["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    _assert_same_results(runs / "version_0", runs / "version_1")


def _assert_same_results(a, b):
    """Two run folders hold the same results.json (timings aside) and the same best checkpoint."""
    results = [json.loads((run / "results.json").read_text()) for run in (a, b)]
    timing = ("fit_seconds", "seconds_per_epoch", "best_checkpoint")
    assert {k: v for k, v in results[0].items() if k not in timing} == \
        {k: v for k, v in results[1].items() if k not in timing}
    assert "best_val_acc" in results[1]
    best = [Path(r["best_checkpoint"]) for r in results]
    assert best[0].name == best[1].name and best[1].parent.parts[-3:] == Path(b).parts[-2:] + ("checkpoints",)
    states = [torch.load(Path(run) / "checkpoints" / p.name, weights_only=True)["state_dict"] for run, p in zip((a, b), best)]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_cli_test_subcommand_reads_a_checkpoint(fake_root, tmp_path, monkeypatch, capsys):
    from torch_intnn.cli import main

    model = IntegerClassifier("toy_linear", rule="toy")
    dm = MNISTDataModule(root=str(fake_root), batch_size=50, val_size=200)
    trainer = _trainer(tmp_path, max_steps=10)
    trainer.fit(model, dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model:\n  class_path: torch_intnn.lightning.IntegerClassifier\n  init_args: {model: toy_linear, rule: toy}\n"
        "data:\n  class_path: torch_intnn.lightning.MNISTDataModule\n  init_args: {val_size: 200}\n"
        "trainer: {enable_progress_bar: false}\n"
    )
    monkeypatch.chdir(tmp_path)
    main(["test", "--config", str(recipe), "--data.root", str(fake_root), "--ckpt_path", str(tmp_path / "m.ckpt")])
    assert "test/acc" in capsys.readouterr().out


def test_cli_model_and_data_seeds_follow_seed_everything(fake_root, tmp_path):
    from lightning.pytorch import LightningDataModule, LightningModule

    from torch_intnn.lightning.cli import IntnnCLI

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model:\n  class_path: torch_intnn.lightning.IntegerClassifier\n  init_args: {model: toy_linear, rule: toy}\n"
        "data:\n  class_path: torch_intnn.lightning.MNISTDataModule\n  init_args: {val_size: 200}\n"
    )
    weights = []
    for seed in (3, 4):
        cli = IntnnCLI(LightningModule, LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                       run=False, args=["--config", str(recipe), "--seed_everything", str(seed),
                                        "--data.root", str(fake_root)])
        assert cli.model.hparams.seed == seed and cli.datamodule.seed == seed
        weights.append(cli.model.net.fc.weight.clone())
    assert not torch.equal(*weights)


def test_compile_needs_a_rule_with_a_compilable_step():
    with pytest.raises(NotImplementedError, match="no compilable step"):
        IntegerClassifier("toy_linear", rule="toy", compile=True)


@pytest.mark.slow
def test_compiled_lightning_fit_is_bit_identical_to_eager(fake_root, tmp_path):
    states = []
    for compile_ in (False, True):
        model = IntegerClassifier("pocketnn_mlp_mnist", rule="dfa", compile=compile_,
                                  rule_args={"augment_shift": 1, "decay_shift": 11, "lr_milestones": [1]})
        dm = MNISTDataModule(root=str(fake_root), batch_size=50, val_size=200)
        trainer = _trainer(tmp_path / str(compile_), max_epochs=2, logger=False, enable_checkpointing=False)
        trainer.fit(model, dm)
        assert trainer.global_step == 2 * len(dm.train_dataloader())
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_cli_refuses_a_recipe_that_differs_from_the_checkpoint_and_resumes_with_none(fake_root, tmp_path, monkeypatch):
    """LightningCLI would take the checkpoint's hyperparameters over the recipe's without a word."""
    from torch_intnn.cli import main
    from torch_intnn.lightning.checkpoint import CheckpointError

    recipe = _toy_recipe(tmp_path, max_epochs=2)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "logs" / "toy_recipe" / "version_0"
    main(["fit", "--config", str(recipe), "--data.root", str(fake_root), "--trainer.max_epochs", "1"])
    last = str(run / "checkpoints" / "last.ckpt")
    for change, keys in ((["--model.init_args.model", "toy_linear_b"], "model: 'toy_linear' in the checkpoint"),
                         (["--model.init_args.seed", "3"], "seed: 0 in the checkpoint, 3 in the recipe"),
                         (["--model.init_args.rule_args", "{lr_inv: 8}"], "rule_args")):
        with pytest.raises(CheckpointError, match=keys):
            main(["fit", "--config", str(recipe), "--data.root", str(fake_root), "--ckpt_path", last, *change])
    before = torch.load(last, weights_only=True)["global_step"]
    main(["fit", "--ckpt_path", last, "--trainer.max_epochs", "2"])  # no recipe: the run's own config.yaml
    after = torch.load(last, weights_only=True)
    assert after["global_step"] == 2 * before and after["hyper_parameters"]["model"] == "toy_linear"
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]


def test_a_misspelt_rule_argument_in_a_recipe_is_refused_with_the_valid_names(tmp_path, capsys):
    from torch_intnn.cli import main

    recipe = Path(__file__).parents[2] / "recipes" / "mnist_pocketnn_dfa.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text().replace("        lr_inv: 512", "        lr_invv: 512"))
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(bad), "--print_config"])
    err = capsys.readouterr().err
    assert "'lr_invv' is not an argument of torch_intnn.learning.DFA" in err
    assert "lr_inv, lr_milestones" in err and "augment_shift" in err


def test_the_cli_lists_a_rules_arguments(capsys):
    from torch_intnn.cli import main

    with pytest.raises(SystemExit):
        main(["fit", "--model", "IntegerClassifier", "--model.rule.help", "NitroRule"])
    out = capsys.readouterr().out
    assert all(f"--rule.{name}" in out for name in ("lr_inv", "fwd_decay_inv", "plateau_patience", "rounding"))


def test_a_rule_given_by_class_path_is_the_rule_given_by_name():
    import functools

    from torch_intnn.learning import DFA

    by_name = IntegerClassifier("pocketnn_mlp_mnist", rule="dfa", rule_args={"lr_inv": 256, "augment_shift": 1}, seed=3)
    by_config = IntegerClassifier("pocketnn_mlp_mnist", seed=3, rule={
        "class_path": "torch_intnn.learning.DFA", "init_args": {"lr_inv": 256, "augment_shift": 1}})
    by_factory = IntegerClassifier("pocketnn_mlp_mnist", rule=functools.partial(DFA, lr_inv=256, augment_shift=1),
                                   seed=3)
    for module in (by_config, by_factory):
        assert module.rule.lr_inv == 256 and module.rule.augment_shift == 1 and module.rule.seed == 3
        assert all(torch.equal(v, by_name.rule.state_dict()[k]) for k, v in module.rule.state_dict().items())
    assert by_factory.hparams["rule"] == {"class_path": "torch_intnn.learning.dfa.DFA",
                                          "init_args": {"lr_inv": 256, "augment_shift": 1}}
    with pytest.raises(ValueError, match="rule_args go with a rule given by name"):
        IntegerClassifier("pocketnn_mlp_mnist", rule=by_config.hparams["rule"], rule_args={"lr_inv": 8})
    with pytest.raises(ValueError, match="not a LearningRule"):
        IntegerClassifier("pocketnn_mlp_mnist", rule={"class_path": "torch.nn.Linear"})


def test_a_checkpoint_of_a_module_built_from_a_rule_factory_loads_safely(fake_root, tmp_path):
    import functools

    from torch_intnn.lightning.checkpoint import load_checkpoint

    module = IntegerClassifier("toy_linear", rule=functools.partial(toy.ToyRule, lr_inv=2**14))
    trainer = _trainer(tmp_path, max_steps=3, logger=False)
    trainer.fit(module, MNISTDataModule(root=str(fake_root), batch_size=50, val_size=200))
    trainer.save_checkpoint(tmp_path / "f.ckpt")
    assert load_checkpoint(tmp_path / "f.ckpt")["hyper_parameters"]["rule"]["init_args"] == {"lr_inv": 2**14}


def test_the_rules_early_stopping_ends_the_fit(fake_root, tmp_path):
    """NitroRule's own stopping rule (the paper's, on validation counts) stops the trainer: with a 100 pp
    min_delta only the first tracked epoch improves, so one stalled epoch (patience 1) ends the fit after
    epoch 1 of 5; with stop_patience=0 the fit runs all 5."""
    def fit(stop_patience):
        rule_args = {"stop_patience": stop_patience, "stop_start": 0, "min_delta_bp": 10_000}
        model = IntegerClassifier("nitro_mlp1", rule="nitro", rule_args=rule_args)
        dm = MNISTDataModule(root=str(fake_root), batch_size=50, val_size=100)
        trainer = _trainer(tmp_path / str(stop_patience), max_epochs=5, limit_train_batches=2)
        trainer.fit(model, dm)
        return trainer.current_epoch, model.rule.should_stop

    assert fit(1) == (2, True)
    assert fit(0) == (5, False)


@pytest.mark.parametrize("split", ["test", "val"])
def test_cli_predict_writes_one_prediction_per_image_of_the_split(fake_root, tmp_path, monkeypatch, capsys, split):
    from torch_intnn.cli import main

    model = IntegerClassifier("toy_linear", rule="toy")
    dm = MNISTDataModule(root=str(fake_root), batch_size=50, val_size=200)
    trainer = _trainer(tmp_path, max_steps=10)
    trainer.fit(model, dm)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    (expected,) = trainer.test(model, dm, verbose=False) if split == "test" else trainer.validate(model, dm, verbose=False)
    recipe = _toy_recipe(tmp_path, 1)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "p.csv"
    main(["predict", "--config", str(recipe), "--data.root", str(fake_root), "--data.predict_split", split,
          "--ckpt_path", str(tmp_path / "m.ckpt"), "--predictions.path", str(out)])
    assert f"to {out}" in capsys.readouterr().out
    rows = out.read_text().splitlines()
    assert rows[0] == "index,label,prediction"
    images, labels = (dm.test_images, dm.test_labels) if split == "test" else (dm.val_images, dm.val_labels)
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(len(labels)))
    assert [int(r.split(",")[1]) for r in rows[1:]] == labels.tolist()
    right = sum(r.split(",")[1] == r.split(",")[2] for r in rows[1:]) / len(labels)
    assert right == pytest.approx(expected["test/acc" if split == "test" else "val/acc"])


def test_the_model_summary_counts_integer_weights(fake_root, tmp_path, caplog):
    """Lightning's summary would say "0 Total params": the module's own counts the integer buffers, the trained
    ones (fc weight and bias: 7,850) as trainable."""
    import logging

    model = IntegerClassifier("toy_linear", rule="toy")
    dm = MNISTDataModule(root=str(fake_root), batch_size=50, val_size=200)
    trainer = _trainer(tmp_path, max_steps=1, enable_model_summary=True)
    with caplog.at_level(logging.INFO):
        trainer.fit(model, dm)
    text = caplog.text
    assert "7.9 K     Trainable params" in text and "0         Total params" not in text, text


def test_cli_resumes_a_typed_rule_whose_defaults_are_tuples(fake_root, tmp_path, monkeypatch):
    """NitroRule's ``lr_milestones`` defaults to ``()``; its checkpoint stores ``[]``: the same setting, so the
    resume (with the recipe, and with the run's own config.yaml) goes on instead of refusing."""
    from torch_intnn.cli import main

    recipe = tmp_path / "nitro_recipe.yaml"
    recipe.write_text(
        "seed_everything: 0\n"
        "model:\n  class_path: torch_intnn.lightning.IntegerClassifier\n"
        "  init_args:\n    model: nitro_mlp1\n    model_args: {width_div: 10}\n"
        "    rule: {class_path: torch_intnn.learning.NitroRule, init_args: {lr_inv: 512}}\n"
        "data:\n  class_path: torch_intnn.lightning.MNISTDataModule\n  init_args: {batch_size: 50, val_size: 200}\n"
        "trainer: {max_epochs: 1, limit_train_batches: 3, enable_progress_bar: false}\n"
    )
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(recipe), "--data.root", str(fake_root)])
    last = tmp_path / "logs" / "nitro_recipe" / "version_0" / "checkpoints" / "last.ckpt"
    main(["fit", "--config", str(recipe), "--data.root", str(fake_root), "--ckpt_path", str(last),
          "--trainer.max_epochs", "2"])
    main(["fit", "--ckpt_path", str(last), "--trainer.max_epochs", "3"])
    assert torch.load(last, weights_only=True)["global_step"] == 9
