"""Every registered NITRO-D model: an integer-only training step and inference, at a width that keeps it fast."""

import pytest
import torch

from torch_intnn.audit import IntegerOnly
from torch_intnn.learning import create_rule
from torch_intnn.models import create_model, list_models, model_info
from torch_intnn.nn.nitro import IntDropout

NITRO_MODELS = list_models(rule="nitro")
# width_div so that every test model is small (hidden widths 50-200, <= 32 channels); MLP1/MLP2 are small already
WIDTH_DIV = {"nitro_mlp1": 1, "nitro_mlp2": 1, "nitro_mlp4": 30}


def _build(name: str, seed: int = 0):
    return create_model(name, seed=seed, width_div=WIDTH_DIV.get(name, 16))


def _batch(name: str, n: int = 4):
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 256, (n, *model_info(name)["input_shape"]), generator=g, dtype=torch.uint8)
    return x, torch.randint(0, 10, (n,), generator=g)


def test_the_paper_models_are_registered():
    expected = {"nitro_mlp1", "nitro_mlp2", "nitro_mlp3", "nitro_mlp4", "nitro_vgg8b", "nitro_vgg11b",
                "nitro_small_cnn", "nitro_small_cnn_mnist", "nitro_small_cnn_fmnist"}
    assert expected <= set(NITRO_MODELS)
    for name in NITRO_MODELS:
        info = model_info(name)
        assert info["kind"] == "integer" and info["num_classes"] == 10
        assert info["dataset"] in ("mnist", "fmnist", "cifar10")


@pytest.mark.parametrize("name", NITRO_MODELS)
def test_training_step_and_inference_are_integer_only(name):
    model = _build(name)
    x, y = _batch(name)
    rule = create_rule("nitro", model, seed=0)
    opt = rule.configure_optimizer()
    with IntegerOnly():
        model.fit_input(x)
        stats = rule.step(x, y, opt)
        opt.step()
        model.eval()
        scores = rule.predict(x)
    assert scores.shape == (4, 10) and scores.dtype == (torch.int16 if model.ensemble else torch.int8)
    assert int(stats["loss"]) > 0
    assert not any(b.is_floating_point() for b in model.buffers())


@pytest.mark.parametrize("name", ["nitro_mlp1", "nitro_vgg8b"])
def test_same_seed_builds_identical_models(name):
    a, b, c = _build(name, 3), _build(name, 3), _build(name, 4)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not all(torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_vgg8b_layout_follows_the_paper():
    model = create_model("nitro_vgg8b")  # full width: construction only
    convs = [b.layer for b in model.blocks[:-1]]
    assert [c.out_channels for c in convs] == [128, 256, 256, 512, 512, 512]
    assert [b.head.kernel for b in model.blocks[:-1]] == [(8, 4), (8, 8), (4, 4), (8, 4), (4, 2), (2, 1)]
    fc = model.blocks[-1]
    assert (fc.layer.in_features, fc.layer.out_features) == (2048, 1024)
    assert [m.p_pct for m in model.stages if isinstance(m, IntDropout)] == [15, 15]
    assert model.output.d == 1024 and model.output.scaling.scale_factor == 256 * 1024
    mnist = create_model("nitro_vgg8b_mnist")
    assert mnist.blocks[-1].layer.in_features == 512 and mnist.blocks[0].head.d == 3584


def test_factories_reject_unknown_arguments():
    with pytest.raises(TypeError, match="unknown arguments"):
        create_model("nitro_mlp1", dropout=0.1)


def test_lightning_fit_calls_fit_input_and_the_plateau_hook(fake_root, tmp_path):
    import lightning.pytorch as pl

    from torch_intnn.lightning import IntegerClassifier, MNISTDataModule

    module = IntegerClassifier("nitro_mlp1", rule="nitro", rule_args={"plateau_start": 0, "plateau_patience": 1})
    dm = MNISTDataModule(root=str(fake_root), batch_size=50, val_size=200)
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=1,
                         enable_progress_bar=False,
                         enable_model_summary=False, logger=False, enable_checkpointing=False)
    trainer.fit(module, dm)
    assert int(module.net.standardize.mad[0]) != 51  # fitted on the training images (51 is the unfitted value)
    assert int(module.rule.steps) == 4 and int(module.rule.schedule.epoch) == 2


def test_ensemble_scores_are_the_sum_of_every_head_and_the_output():
    model = create_model("nitro_small_cnn_mnist", width_div=16).eval()
    assert model.ensemble
    x, _ = _batch("nitro_small_cnn_mnist")
    model.fit_input(x)
    for block in model.blocks:  # non-trivial scores
        block.layer.weight.mul_(40)
        block.head.linear.weight.mul_(40)
    with IntegerOnly():
        scores = model(x)
    h, expected = model.standardize(x), 0
    for stage in model.stages:
        h = stage(h)
        if hasattr(stage, "head"):
            expected = expected + stage.head(h).to(torch.int64)
    expected = expected + model.output(h).to(torch.int64)
    assert scores.dtype == torch.int16 and torch.equal(scores.to(torch.int64), expected)
    assert expected.abs().sum() > 0
