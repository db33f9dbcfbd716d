"""PocketNN's MLPs: registration, layouts, both variants, the input standardisation, integer-only inference."""

import pytest
import torch

from torch_intnn.audit import IntegerOnly
from torch_intnn.models import create_model, list_models, model_info
from torch_intnn.models.pocketnn import STD_ONE, PocketInput
from torch_intnn.nn.activations import PocketRescale, PocketTanh

SIZES = {"pocketnn_mlp_mnist": (784, 100, 50, 10), "pocketnn_mlp_fmnist": (784, 200, 100, 50, 10)}


def _images(n=6, seed=0):
    return torch.randint(0, 256, (n, 1, 28, 28), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_registered_with_their_info():
    assert set(SIZES) <= set(list_models(rule="dfa", kind="integer"))
    assert model_info("pocketnn_mlp_mnist")["dataset"] == "mnist"
    assert model_info("pocketnn_mlp_fmnist")["dataset"] == "fmnist"
    for name in SIZES:
        assert model_info(name)["input_shape"] == (1, 28, 28) and model_info(name)["num_classes"] == 10


@pytest.mark.parametrize("name, params", [("pocketnn_mlp_mnist", 84_060), ("pocketnn_mlp_fmnist", 182_660)])
def test_faithful_layout_is_pocketnns(name, params):
    model = create_model(name, variant="faithful")
    assert tuple(lin.in_features for lin in model.linears) + (10,) == SIZES[name]
    assert sum(b.numel() for n, b in model.named_buffers() if n.startswith("linears")) == params  # pocketnn.md sec. 9
    assert all(isinstance(a, PocketTanh) and a.divisor == 256 * lin.in_features for lin, a in zip(model.linears, model.acts))
    assert all(int(b.abs().sum()) == 0 for n, b in model.named_buffers() if n.startswith("linears"))  # zero init
    scores = model.eval()(_images())
    assert scores.dtype == torch.int8 and torch.equal(scores, torch.zeros(6, 10, dtype=torch.int8))


@pytest.mark.parametrize("name", list(SIZES))
def test_improved_layout(name):
    model = create_model(name)  # improved by default
    assert model.variant == "improved" and all(lin.bias is None for lin in model.linears)
    assert isinstance(model.acts[-1], PocketRescale)
    # u = 64 * z_real: shift = log2(input_one * weight_one / 64); logits 16 per nat
    assert [a.shift for a in model.acts] == [12] + [14] * (len(SIZES[name]) - 3) + [16]
    for lin in model.linears:  # LeCun-uniform: +-floor(2**13 * sqrt(3 / fan_in))
        bound = int((3 * 2**26 // lin.in_features) ** 0.5)
        assert int(lin.weight.abs().max()) <= bound and int(lin.weight.abs().max()) > bound * 9 // 10
    x = _images()
    model.fit_input(x)
    scores = model.eval()(x)
    assert scores.shape == (6, 10) and scores.dtype == torch.int16


def test_same_seed_same_weights_other_seed_other_weights():
    a, b, c = (create_model("pocketnn_mlp_mnist", seed=s) for s in (3, 3, 4))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.linears[0].weight, c.linears[0].weight)


def test_standardisation_is_fitted_in_integers():
    inp = PocketInput("standardize")
    images = torch.tensor([0, 0, 0, 0, 100, 100, 200, 255], dtype=torch.uint8).view(2, 1, 2, 2)
    # mean = round(655 / 8) = 82; var = (125025 - 2*82*655 + 82**2 * 8) // 8 = 8924; isqrt -> 94
    # gain = round(32 * 256 / 94) = 87; y = round(87 * (x - 82) / 256), halves up, clamped to +-127
    with IntegerOnly():
        inp.fit_input(images)
        y = inp(images)
    assert int(inp.mean) == 82 and int(inp.gain) == 87
    expected = [((87 * (v - 82)) + 128) // 256 for v in [0, 0, 0, 0, 100, 100, 200, 255]]
    assert y.dtype == torch.int8 and y.flatten().tolist() == [max(-127, min(127, v)) for v in expected]
    assert STD_ONE == 32


def test_raw_input_is_untouched_and_float_input_refused():
    model = create_model("pocketnn_mlp_mnist", variant="faithful")
    x = _images(2)
    assert torch.equal(model.input(x), x.view(2, -1))
    with pytest.raises(TypeError, match="uint8"):
        model(x.float())


@pytest.mark.parametrize("name", list(SIZES))
@pytest.mark.parametrize("variant", ["faithful", "improved"])
def test_inference_is_integer_only(name, variant):
    model = create_model(name, variant=variant, seed=1)
    x = _images(3)
    with IntegerOnly():
        model.fit_input(x)
        model.eval()
        scores = model(x)
    assert scores.shape == (3, 10)
    assert not any(t.is_floating_point() for t in model.state_dict().values())
    assert "PocketTanh" in repr(model)

