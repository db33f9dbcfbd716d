"""CUDA readiness without a GPU: no tensor of a training step or of inference is created on the default device
instead of its input's, and inference runs on (fake) CUDA tensors.

``FakeTensorMode`` fakes CUDA tensors on this CPU-only build and raises when a CPU tensor meets a CUDA one. It runs
inference of every model (the width checks and choices that read values are skipped on fake tensors, as in a
compiled graph), but not an eager training step: the step's host side reads values (label range, the step
counter that seeds its draws, saturation counts), which fake tensors do not have. So the training-step test makes
``meta`` the default device instead. Every tensor created without ``device=`` then lands on meta, where the first
op that meets a CPU tensor fails, or it survives into a result or the state, which the test checks. On a CUDA
machine the same tensor would land on the CPU behind a CUDA input.
"""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError, FakeTensorMode

from torch_intnn.data import dataset_info
from torch_intnn.learning import create_rule
from torch_intnn.models import create_model, list_models, model_info

# the registered integer models, and the rule arguments that make a rule draw (augmentation, dropout)
CASES = [(name, {}) for name in list_models(kind="integer")] + [
    ("pocketnn_mlp_mnist", {"augment_shift": 2, "augment_flip": True}),
]


@pytest.mark.parametrize("name,rule_args", CASES, ids=lambda v: v if isinstance(v, str) else "-".join(v) or "default")
def test_a_training_step_and_inference_create_no_tensor_on_the_default_device(name, rule_args):
    info = model_info(name)
    model = create_model(name, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, *dataset_info(info["dataset"]).shape), generator=g, dtype=torch.uint8)
    y = torch.randint(0, info["num_classes"], (6,), generator=g)
    if hasattr(model, "fit_input"):
        model.fit_input(x)
    rule = create_rule(info["rule"], model, **rule_args)
    opt = rule.configure_optimizer()
    with torch.device("meta"):
        model.train()
        stats = rule.train_step(x, y, opt)
        model.eval()
        scores = rule.predict(x)
    tensors = {**model.state_dict(), **rule.state_dict(), "scores": scores, "saturated": opt.saturated,
               **{f"stats.{k}": v for k, v in stats.items() if isinstance(v, torch.Tensor)}}
    assert [k for k, v in tensors.items() if v.device.type != "cpu"] == []
    assert scores.shape == (6, info["num_classes"]) and not scores.dtype.is_floating_point


@pytest.mark.parametrize("name", list_models(kind="integer"))
def test_inference_runs_on_fake_cuda_tensors(name):
    info = model_info(name)
    model = create_model(name, seed=0)
    x = torch.randint(0, 256, (6, *dataset_info(info["dataset"]).shape), generator=torch.Generator().manual_seed(0),
                      dtype=torch.uint8)
    if hasattr(model, "fit_input"):
        model.fit_input(x)
    with FakeTensorMode(allow_non_fake_inputs=True):
        rule = create_rule(info["rule"], model.to("cuda").eval())
        scores = rule.predict(x.to("cuda"))
    assert scores.device.type == "cuda" and scores.shape == (6, info["num_classes"])
    assert not scores.dtype.is_floating_point


def test_fake_cuda_inference_catches_a_model_left_on_the_cpu():
    model = create_model("nitro_small_cnn", seed=0).eval()
    x = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    with FakeTensorMode(allow_non_fake_inputs=True), pytest.raises(FakeTensorDeviceMismatchError):
        create_rule("nitro", model).predict(x.to("cuda"))
