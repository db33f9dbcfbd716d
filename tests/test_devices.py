"""CUDA readiness without a GPU: no tensor of a training step or of inference is created on the default device
instead of its input's.

``FakeTensorMode`` fakes CUDA tensors on this CPU-only build, but it cannot run an eager training step: the
step's host-side checks read tensor values (label range, value widths, saturation counts), which fake tensors
do not have. So this test makes ``meta`` the default device instead. Every tensor created without ``device=``
then lands on meta, where the first op that meets a CPU tensor fails, or it survives into a result or the
state, which the test checks. On a CUDA machine the same tensor would land on the CPU behind a CUDA input.
"""

import pytest
import torch

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
