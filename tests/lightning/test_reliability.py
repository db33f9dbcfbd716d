"""Bad input gets a clear error and loses nothing; checkpoints are written atomically and read safely."""

import pickle

import lightning.pytorch as pl
import pytest
import torch
import toy  # noqa: F401

from torch_intnn.learning import IntegerSGD
from torch_intnn.learning.base import check_batch
from torch_intnn.lightning import IntegerClassifier, MNISTDataModule
from torch_intnn.lightning.checkpoint import AtomicCheckpointIO, CheckpointError, load_checkpoint


def _fit(tmp_path, fake_root, steps=5, model="toy_linear", seed=0):
    module = IntegerClassifier(model, rule="toy", seed=seed)
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, plugins=[AtomicCheckpointIO()], enable_checkpointing=False)
    trainer.fit(module, MNISTDataModule(root=str(fake_root), batch_size=50, val_size=200))
    return module, trainer


@pytest.mark.parametrize(
    "x,y,error,match",
    [
        (torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.int64), TypeError, "float32"),
        (torch.zeros(0, 1, 28, 28, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), ValueError, "empty"),
        (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.tensor([0, 1, 2, 10]), ValueError, r"\[0, 10\)"),
        (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.tensor([0, -1, 2, 3]), ValueError, r"\[-1, 3\]"),
        (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), ValueError, "4 images"),
        (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.int32), TypeError, "int64"),
    ],
)
def test_bad_batches_are_refused_before_any_update(x, y, error, match):
    module = IntegerClassifier("toy_linear", rule="toy")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(error, match=match):
        check_batch(x, y)
    with pytest.raises(error, match=match):
        module.training_step((x, y), 0)  # fails before touching the optimizer
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


@pytest.mark.parametrize("kwargs", [dict(lr_inv=0), dict(lr_inv=-4), dict(amp=0), dict(decay_inv=-1),
                                    dict(lr_inv=2.5), dict(rounding="nearest")])
def test_bad_optimizer_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        IntegerSGD([torch.zeros(3, dtype=torch.int32)], **kwargs)


def test_float_parameters_are_refused_by_integer_sgd():
    with pytest.raises(TypeError, match="float32"):
        IntegerSGD([torch.zeros(3)])


def test_strict_overflow_names_the_layer_and_changes_nothing():
    w = torch.tensor([10, 32760], dtype=torch.int32)
    b = torch.tensor([5], dtype=torch.int32)
    opt = IntegerSGD([b, w], lr_inv=1, strict=True, names={id(w): "fc1.weight", id(b): "fc1.bias"})
    opt.set_grad(b, torch.tensor([1]))
    opt.set_grad(w, torch.tensor([0, -100]))
    with pytest.raises(OverflowError, match="fc1.weight"):
        opt.step()
    assert torch.equal(w, torch.tensor([10, 32760], dtype=torch.int32)) and int(b) == 5


def test_saturation_is_counted_when_not_strict():
    w = torch.tensor([32760, -32760, 0], dtype=torch.int32)
    opt = IntegerSGD([w], lr_inv=1)
    opt.set_grad(w, torch.tensor([-100, 100, 1]))
    opt.step()
    assert w.tolist() == [32767, -32767, -1] and int(opt.saturated.sum()) == 2


def test_saturation_is_counted_per_parameter_in_group_order():
    a = torch.tensor([0, 0], dtype=torch.int32)
    b = torch.tensor([32760, -32760, 0], dtype=torch.int32)
    c = torch.tensor([32767], dtype=torch.int32)
    opt = IntegerSGD([{"params": [a]}, {"params": [b, c]}], lr_inv=1)
    opt.set_grad(a, torch.tensor([1, 1]))
    opt.set_grad(b, torch.tensor([-100, 100, 1]))
    opt.step()
    opt.set_grad(b, torch.tensor([-100, 0, 0]))
    opt.set_grad(c, torch.tensor([-1]))
    opt.step()
    assert opt.saturated.tolist() == [0, 3, 1]
    d = torch.tensor([0], dtype=torch.int32)
    opt.add_param_group({"params": [d]})
    opt.set_grad(d, torch.tensor([-40000]))
    opt.step()
    assert opt.saturated.tolist() == [0, 3, 1, 1]


def test_same_seed_same_weights_other_seed_other_weights(fake_root, tmp_path):
    a, _ = _fit(tmp_path / "a", fake_root, seed=3)
    b, _ = _fit(tmp_path / "b", fake_root, seed=3)
    c, _ = _fit(tmp_path / "c", fake_root, seed=4)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert not torch.equal(a.net.fc.weight, c.net.fc.weight)


def test_corrupted_truncated_and_unsafe_checkpoints_are_refused(fake_root, tmp_path):
    _, trainer = _fit(tmp_path, fake_root)
    good = tmp_path / "good.ckpt"
    trainer.save_checkpoint(good)
    assert load_checkpoint(good)["global_step"] == 5
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:2000])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all" * 100)
    for path in (truncated, garbage, tmp_path / "missing.ckpt"):
        with pytest.raises(CheckpointError, match=str(path.name)):
            load_checkpoint(path)
    unsafe = tmp_path / "unsafe.ckpt"
    with open(unsafe, "wb") as f:
        torch.save({"state_dict": {}, "payload": pl.Trainer}, f)  # a class object: needs full unpickling
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_checkpoint(unsafe)


def test_checkpoint_from_another_architecture_is_refused(fake_root, tmp_path):
    _, trainer = _fit(tmp_path, fake_root)
    path = tmp_path / "toy.ckpt"
    trainer.save_checkpoint(path)
    other = IntegerClassifier("toy_linear_b", rule="toy")
    before = other.net.fc.weight.clone()
    with pytest.raises(CheckpointError, match="toy_linear"):
        other.on_load_checkpoint(load_checkpoint(path))
    assert torch.equal(before, other.net.fc.weight)


def test_a_crash_during_save_leaves_the_previous_checkpoint_usable(fake_root, tmp_path, monkeypatch):
    _, trainer = _fit(tmp_path, fake_root)
    io, path = AtomicCheckpointIO(), tmp_path / "ckpt" / "last.ckpt"
    io.save_checkpoint(trainer._checkpoint_connector.dump_checkpoint(), path)
    original = path.read_bytes()

    def crash(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {}}, path)
    assert path.read_bytes() == original
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind
    monkeypatch.undo()
    assert load_checkpoint(path)["global_step"] == 5


def test_pickle_payloads_never_run(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (marker.write_text, ("pwned",))

    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"state_dict": Evil()}))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def _saved(tmp_path, fake_root):
    module, trainer = _fit(tmp_path, fake_root)
    path = tmp_path / "good.ckpt"
    trainer.save_checkpoint(path)
    return module, path


def _resume(tmp_path, fake_root, path):
    """Continue a run from ``path`` through Lightning; returns the module (which must not have trained)."""
    module = IntegerClassifier("toy_linear", rule="toy", seed=0)
    trainer = pl.Trainer(max_steps=10, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, plugins=[AtomicCheckpointIO()], enable_checkpointing=False)
    trainer.fit(module, MNISTDataModule(root=str(fake_root), batch_size=50, val_size=200), ckpt_path=path)
    return module


@pytest.mark.parametrize("damage,reason", [
    (lambda w: w.to(torch.float32), "torch.float32"),  # load_state_dict would cast it
    (lambda w: w.to(torch.int64) + 2**32, "torch.int64"),  # load_state_dict would wrap it back to w
    (lambda w: w[:, :5].clone(), r"\(10, 5\)"),
    (lambda w: w.clamp(max=0) + 40000 * (w == w.max()), "digest"),  # digest first: it changes what was hashed
])
def test_checkpoint_tensors_are_checked_on_load(fake_root, tmp_path, damage, reason):
    from torch_intnn.lightning.checkpoint import DIGEST_KEY, state_digest

    _, path = _saved(tmp_path, fake_root)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["net.fc.weight"] = damage(ckpt["state_dict"]["net.fc.weight"])
    if reason != "digest":
        ckpt[DIGEST_KEY] = state_digest(ckpt)  # a consistent digest: the content checks must still refuse it
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match=reason) as err:
        _resume(tmp_path, fake_root, bad)
    assert "bad.ckpt" in str(err.value)


def test_a_weight_outside_its_declared_width_is_refused(fake_root, tmp_path):
    from torch_intnn.lightning.checkpoint import DIGEST_KEY, state_digest

    _, path = _saved(tmp_path, fake_root)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["net.fc.weight"][0, 0] = 40000  # int32, but outside IntLinear's 16 bits
    ckpt[DIGEST_KEY] = state_digest(ckpt)
    torch.save(ckpt, tmp_path / "wide.ckpt")
    with pytest.raises(CheckpointError, match=r"net.fc.weight.*16-bit"):
        _resume(tmp_path, fake_root, tmp_path / "wide.ckpt")


def test_zeroed_bytes_inside_the_file_and_an_empty_file_are_refused(fake_root, tmp_path):
    _, path = _saved(tmp_path, fake_root)
    data = bytearray(path.read_bytes())
    zeroed = tmp_path / "zeroed.ckpt"
    weight = torch.load(path, weights_only=True)["state_dict"]["net.fc.weight"]
    raw = weight.numpy().tobytes()
    at = bytes(data).find(raw[:256])
    assert at > 0, "the weight's bytes are stored uncompressed in the zip"
    data[at:at + 4096] = bytes(4096)
    zeroed.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="zeroed.ckpt"):
        _resume(tmp_path, fake_root, zeroed)  # torch.load reads it: the digest catches it
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.ckpt"):
        load_checkpoint(empty)


def test_a_checkpoint_without_digest_is_refused(fake_root, tmp_path):
    from torch_intnn.lightning.checkpoint import DIGEST_KEY

    _, path = _saved(tmp_path, fake_root)
    ckpt = torch.load(path, weights_only=True)
    del ckpt[DIGEST_KEY]
    torch.save(ckpt, tmp_path / "plain.ckpt")
    with pytest.raises(CheckpointError, match="no integrity digest"):
        _resume(tmp_path, fake_root, tmp_path / "plain.ckpt")


@pytest.mark.parametrize("rule,args,match", [
    ("dfa", {"augment_shift": 100}, r"augment_shift.*\[0, 8\]"),
    ("dfa", {"label_smoothing": 5000}, r"label_smoothing.*\[0, 102\]"),
    ("dfa", {"decay_shift": -3}, r"decay_shift.*\[1, 62\]"),
    ("dfa", {"lr_inv": True}, "lr_inv must be an int >= 1, got True"),
    ("dfa", {"lr_inv": 0}, "lr_inv must be an int >= 1"),
    ("dfa", {"lr_milestones": [5, -1]}, "lr_milestones"),
    ("dfa", {"cosine_epochs": 0}, "cosine_epochs"),
    ("nitro", {"lr_inv": 0}, "lr_inv must be an int >= 1"),
    ("nitro", {"target": 500}, r"target must be an int in \[1, 127\]"),
    ("nitro", {"fwd_decay_inv": -1}, "fwd_decay_inv"),
    ("nitro", {"stop_patience": -1}, r"stop_patience \(0 = off\).*>= 0"),
    ("nitro", {"rounding": "nearest"}, "rounding"),
])
def test_rule_arguments_out_of_range_are_refused_at_construction(rule, args, match):
    model = "pocketnn_mlp_mnist" if rule == "dfa" else "nitro_mlp1"
    with pytest.raises(ValueError, match=match):
        IntegerClassifier(model, rule=rule, rule_args=args)


@pytest.mark.parametrize("args,match", [
    ({"train_subset": -100}, r"train_subset.*>= 1"),
    ({"train_subset": 0}, r"train_subset.*>= 1"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"val_size": -1}, "val_size"),
    ({"batch_size": 2.5}, "batch_size"),
])
def test_data_arguments_out_of_range_are_refused_at_construction(args, match):
    with pytest.raises(ValueError, match=match):
        MNISTDataModule(**args)


def test_a_train_subset_larger_than_the_split_is_refused(fake_root):
    dm = MNISTDataModule(root=str(fake_root), val_size=200, train_subset=5000)
    with pytest.raises(ValueError, match="at most the 1000 training images"):
        dm.setup("fit")


@pytest.mark.parametrize("args,match", [({"lr": 0.0}, "lr"), ({"weight_decay": -1.0}, "weight_decay"),
                                        ({"label_smoothing": 1.5}, "label_smoothing"), ({"les_dim": 0}, "les_dim")])
def test_float_baseline_arguments_out_of_range_are_refused(args, match):
    from torch_intnn.lightning import FloatClassifier

    with pytest.raises(ValueError, match=match):
        FloatClassifier("pocketnn_mlp_mnist_float", **args)
