"""C export: the generated library compiles without floating point and gives PyTorch's scores, bit for bit."""

import shutil

import pytest
import torch
from torch import nn

from torch_intnn.data import dataset_info
from torch_intnn.export import UnsupportedLayer, export_c, main, model_from_checkpoint, verify_on_host
from torch_intnn.learning import create_rule
from torch_intnn.models import create_model, model_info

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on this machine")


def _trained(name: str, rule: str | None = None, steps: int = 3, **model_args):
    """``name`` after a few training steps on random images (weights away from their initial values), and
    images to compare on."""
    info = model_info(name)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, *dataset_info(info["dataset"]).shape), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (48,), generator=g)
    model = create_model(name, seed=0, **model_args)
    if hasattr(model, "fit_input"):
        model.fit_input(x)
    rule = create_rule(rule or info["rule"], model)
    opt = rule.configure_optimizer()
    model.train()
    for i in range(steps):
        rule.train_step(x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)], opt)
    return model.eval(), x


@needs_cc
@pytest.mark.parametrize("name,rule,args", [
    ("pocketnn_mlp_mnist", None, {}),
    ("pocketnn_mlp_fmnist", "dfa_faithful", {"variant": "faithful"}),
    ("nitro_mlp1", None, {}),
    ("nitro_mlp4", None, {"width_div": 30}),  # crops, flips and dropout in training; 3 x 100 hidden
    ("nitro_small_cnn", None, {"width_div": 4}),  # conv blocks, pools, heads summed (ensemble), CIFAR-10 input
    ("nitro_vgg8b_mnist", None, {"width_div": 16}),  # an FC block after the convs, no ensemble
])
def test_exported_library_gives_the_models_scores_for_every_image(tmp_path, name, rule, args):
    model, x = _trained(name, rule, **args)
    report = export_c(model, tmp_path)
    source = (tmp_path / "model.c").read_text()
    assert "float" not in source and "double" not in source and "malloc" not in source and "math.h" not in source
    assert verify_on_host(model, tmp_path, x) == (len(x), len(x))
    assert report.macs > 0 and report.flash_bytes > 0 and report.ram_bytes > 0 and report.classes == 10


@needs_cc
def test_verify_on_host_catches_a_model_that_differs(tmp_path):
    model, x = _trained("nitro_mlp1")
    export_c(model, tmp_path)
    with torch.no_grad():
        model.output.linear.weight[0, 0] += 1000  # PyTorch's model changes, the exported library does not
    equal, total = verify_on_host(model, tmp_path, x)
    assert total == len(x) and equal < total


def test_what_the_exporter_does_not_know_is_refused_naming_it(tmp_path):
    with pytest.raises(UnsupportedLayer, match="Sequential"):
        export_c(nn.Sequential(nn.Identity()), tmp_path)
    model = create_model("nitro_mlp1", seed=0)
    model.stages.insert(1, nn.ReLU())
    with pytest.raises(UnsupportedLayer, match=r"stages\.1: no C export for ReLU"):
        export_c(model, tmp_path)
    assert not list(tmp_path.iterdir())  # refused before writing anything


@needs_cc
def test_intnn_export_reads_a_checkpoint_and_its_run_folder(tmp_path, capsys):
    model, x = _trained("nitro_mlp1")
    hparams = {"_class_path": "torch_intnn.lightning.IntegerClassifier", "model": "nitro_mlp1", "model_args": {},
               "seed": 0}
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    state = {f"net.{k}": v for k, v in model.state_dict().items()}
    torch.save({"hyper_parameters": hparams, "state_dict": state}, tmp_path / "run/checkpoints/best-3-90.ckpt")
    torch.save({"hyper_parameters": hparams, "state_dict": {}}, tmp_path / "run/checkpoints/best-1-30.ckpt")
    loaded, name = model_from_checkpoint(tmp_path / "run")  # the later best checkpoint
    assert name == "nitro_mlp1" and all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert main([str(tmp_path / "run"), "--out", str(tmp_path / "c")]) == 0
    assert "multiply-accumulates per image" in capsys.readouterr().out
    assert verify_on_host(loaded, tmp_path / "c", x) == (len(x), len(x))
    float_hparams = {**hparams, "_class_path": "torch_intnn.lightning.FloatClassifier"}
    torch.save({"hyper_parameters": float_hparams, "state_dict": {}}, tmp_path / "float.ckpt")
    with pytest.raises(SystemExit, match="not a checkpoint of an integer model"):
        main([str(tmp_path / "float.ckpt"), "--out", str(tmp_path / "f")])


_M3_TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-objdump", "arm-none-eabi-size", "qemu-system-arm")
needs_m3 = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in _M3_TOOLS),
    reason="the Cortex-M leg needs arm-none-eabi-gcc, its newlib and qemu-system-arm (Debian: gcc-arm-none-eabi, "
           "libnewlib-arm-none-eabi, qemu-system-arm; .ci/run installs them)")


@needs_m3
@pytest.mark.parametrize("name,args", [("pocketnn_mlp_mnist", {}), ("nitro_small_cnn", {"width_div": 4})])
def test_the_library_runs_on_an_emulated_cortex_m3_without_fpu_and_gives_the_same_scores(tmp_path, name, args):
    from torch_intnn.export import run_on_cortex_m3

    model, x = _trained(name, **args)
    export_c(model, tmp_path)
    result = run_on_cortex_m3(model, tmp_path, x[:6])
    assert result["equal"] == result["images"] == 6
    assert result["fp_instructions"] == [] and result["text_bytes"] > 0


def test_the_floating_point_check_recognises_fpu_instructions():
    from torch_intnn.export import _FP_MNEMONIC

    assert _FP_MNEMONIC.findall("  8000:\tee30 0a20 \tvadd.f32\ts0, s0, s1\n  8004:\t4770 \tbx\tlr\n") == ["vadd.f32"]
    assert _FP_MNEMONIC.findall("  8000:\tfb01 f303 \tmul.w\tr3, r1, r3\n  8004:\tea4f 0161 \tasr.w\tr1, r1, #1\n") == []
