"""Every integer model has a float twin of the same shape, and each float rule (bp, dfa, les) trains it."""

import pytest
import torch

from torch_intnn.models import list_models, model_info

INTEGER = [m for m in list_models(kind="integer") if not model_info(m).get("test_only")]


@pytest.mark.parametrize("name", INTEGER)
def test_every_integer_model_has_a_float_twin(name):
    twin = f"{name}_float"
    assert twin in list_models(kind="float")
    assert model_info(twin)["twin_of"] == name
    assert model_info(twin)["input_shape"] == model_info(name)["input_shape"]
    assert model_info(twin)["dataset"] == model_info(name)["dataset"]


@pytest.mark.parametrize("rule", ["bp", "dfa", "les"])
@pytest.mark.parametrize("name", ["pocketnn_mlp_fmnist_float", "nitro_small_cnn_float"])
def test_float_rules_take_a_training_step(name, rule):
    from torch_intnn.lightning import FloatClassifier

    module = FloatClassifier(name, rule=rule)
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    c, h, w = model_info(name)["input_shape"]
    x = torch.randint(0, 256, (8, c, h, w), dtype=torch.uint8)
    y = torch.arange(8) % 10
    first = [b[0] for b in module.net.blocks]
    before = [f.weight.clone() for f in first if hasattr(f, "weight")] or [module.net.blocks[0][1].weight.clone()]
    module._reset("train")
    loss = module.training_step((x, y), 0)
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = [f.weight for f in first if hasattr(f, "weight")] or [module.net.blocks[0][1].weight]
    assert not torch.equal(before[0], after[0])  # the first block learned: its signal reached it
    assert module(x).shape == (8, 10)


def test_dfa_feedback_matrices_are_buffers_saved_in_the_state_dict():
    from torch_intnn.lightning import FloatClassifier

    module = FloatClassifier("pocketnn_mlp_mnist_float", rule="dfa", seed=3)
    keys = [k for k in module.state_dict() if k.startswith("feedback_")]
    assert keys == ["feedback_0", "feedback_1"]
    again = FloatClassifier("pocketnn_mlp_mnist_float", rule="dfa", seed=3)
    assert torch.equal(module.feedback_0, again.feedback_0)


def test_mlp_twin_dropout_adds_no_weights_and_only_acts_in_training():
    from torch_intnn.models import create_model

    plain = create_model("pocketnn_mlp_fmnist_float", seed=3)
    dropped = create_model("pocketnn_mlp_fmnist_float", seed=3, dropout=0.2)
    assert sum(isinstance(m, torch.nn.Dropout) for m in dropped.modules()) == 3  # one per hidden block
    assert plain.state_dict().keys() == dropped.state_dict().keys()
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in dropped.state_dict().items())
    x = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(plain.eval()(x), dropped.eval()(x))
    torch.manual_seed(0)
    assert not torch.equal(plain.train()(x), dropped.train()(x))
    with pytest.raises(ValueError, match="dropout"):
        create_model("pocketnn_mlp_fmnist_float", dropout=1.0)


def test_ema_averages_the_weights_after_each_step_and_serves_evaluation():
    from torch_intnn.lightning import FloatClassifier

    module = FloatClassifier("pocketnn_mlp_mnist_float", ema=0.5, lr=0.1)
    trainable = [p for p in module.parameters() if p.requires_grad]
    assert len(trainable) == len(list(module.net.parameters()))  # the average is not trained
    assert any(k.startswith("ema_net.") for k in module.state_dict())  # saved with checkpoints
    opt = torch.optim.SGD(trainable, lr=0.1)
    x = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
    y = torch.arange(8) % 10
    weights = []
    for step in range(2):
        module._reset("train")
        opt.zero_grad()
        module.training_step((x, y), step).backward()
        opt.step()
        module.on_train_batch_end(None, (x, y), step)
        weights.append(module.net.blocks[0][1].weight.detach().clone())
    average = module.ema_net.module.blocks[0][1].weight
    assert torch.allclose(average, (weights[0] + weights[1]) / 2)  # first update copies, then decay 0.5
    assert not torch.equal(average, weights[1])
    module.eval()
    assert torch.equal(module(x), module.ema_net(x))
    assert not torch.equal(module(x), module.net(x))
    with pytest.raises(ValueError, match="ema"):
        FloatClassifier("pocketnn_mlp_mnist_float", ema=1.0)


def _weight_shapes(net: torch.nn.Module) -> list[tuple]:
    """Shapes of the forward weights in order: the integer model's layers (no learning heads) or the twin's."""
    if hasattr(net, "linears"):  # PocketMLP
        return [tuple(lin.weight.shape) for lin in net.linears]
    if hasattr(net, "output") and hasattr(net.output, "linear"):  # NitroNet
        return [tuple(b.layer.weight.shape) for b in net.blocks] + [tuple(net.output.linear.weight.shape)]
    return [tuple(m.weight.shape) for m in net.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


@pytest.mark.parametrize("name", [m for m in INTEGER if "vgg11b" not in m and "mlp4" not in m])
def test_the_twin_is_built_from_the_integer_models_layout(name):
    from torch_intnn.models import create_model

    assert _weight_shapes(create_model(f"{name}_float")) == _weight_shapes(create_model(name))


@pytest.mark.parametrize("name", INTEGER)
def test_every_integer_model_is_a_named_factory_citing_its_paper(name):
    """``grep "def nitro_vgg8b"`` finds the model: the registered factory is a module-level function of that name."""
    import torch_intnn.models.nitro as nitro
    import torch_intnn.models.pocketnn as pocketnn
    from torch_intnn.models import _registry

    module = nitro if name.startswith("nitro_") else pocketnn
    factory = getattr(module, name)
    assert _registry._MODELS[name] is factory and factory.__name__ == name
    assert ("nitro_d.md" if module is nitro else "PocketNN") in factory.__doc__


def test_cnn_twin_augments_like_its_integer_model_and_drops_out_where_it_does():
    from torch_intnn.models import create_model
    from torch_intnn.ops import crop_flip

    twin = create_model("nitro_small_cnn_float", seed=0, augment=True, dropout=0.1)
    assert (twin.crop_padding, twin.flip) == (4, True)  # CIFAR-10's: the integer model's IntRandomCropFlip
    last = twin.blocks[-1]
    assert isinstance(last[-2], torch.nn.Dropout) and isinstance(last[-1], torch.nn.MaxPool2d)
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(5)
    crops = twin.augmented(x)
    torch.manual_seed(5)
    dy, dx, flip = torch.randint(0, 9, (8,)), torch.randint(0, 9, (8,)), torch.randint(0, 2, (8,)).bool()
    assert torch.equal(crops, crop_flip(x, 4, dy, dx, flip)) and not torch.equal(crops, x)
    assert torch.equal(twin.eval().augmented(x), x)
    plain = create_model("nitro_small_cnn_float", seed=0)
    assert (plain.crop_padding, plain.flip) == (0, False) and sum(p.numel() for p in plain.parameters()) == \
        sum(p.numel() for p in twin.parameters())


@pytest.mark.parametrize("les_loss", ["sim", "predsim"])
def test_float_les_similarity_losses_train_the_blocks_and_sim_keeps_the_heads_cross_entropy_local(les_loss):
    from torch_intnn.lightning import FloatClassifier
    from torch_intnn.lightning.float_module import _similarity

    # the similarity of one-hot labels by hand: 1 within a class, -1/9 across (centred one-hot vectors)
    s = _similarity(torch.nn.functional.one_hot(torch.tensor([0, 0, 3]), 10).float())
    assert torch.allclose(s, torch.tensor([[1, 1, -1 / 9], [1, 1, -1 / 9], [-1 / 9, -1 / 9, 1]]), atol=1e-6)
    torch.manual_seed(0)
    module = FloatClassifier("nitro_small_cnn_float", rule="les", les_loss=les_loss)
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(8) % 10
    module._reset("train")
    module.training_step((x, y), 0).backward()
    conv = module.net.blocks[0][0]
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    head = module.heads[0][-1]
    assert head.weight.grad.abs().sum() > 0  # the head learns its cross-entropy in both modes
    if les_loss == "sim":  # ... which does not reach the block: its gradient is the similarity loss's alone
        conv_grad = conv.weight.grad.clone()
        module.zero_grad()
        h = module.net.features(x, detach_between=True)[0]
        torch.nn.functional.mse_loss(_similarity(module.heads[0][:-1](h)), _similarity(
            torch.nn.functional.one_hot(y, 10).float())).backward()
        assert torch.allclose(conv.weight.grad, conv_grad, rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="les_loss"):
        FloatClassifier("nitro_small_cnn_float", rule="les", les_loss="simpred")
