import pytest
import toy  # noqa: F401

from torch_intnn.cli import main


def _recipe(path, class_path, init_args):
    path.write_text(
        f"model:\n  class_path: {class_path}\n  init_args: {init_args}\n"
        "data:\n  class_path: torch_intnn.lightning.MNISTDataModule\n  init_args: {batch_size: 50, val_size: 200}\n"
        "trainer: {max_epochs: 2, enable_progress_bar: false}\n"
    )
    return path


def test_compare_writes_table_plot_and_shared_tensorboard_dir(fake_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_INTNN_DATA", str(fake_root))
    integer = _recipe(tmp_path / "toy_int.yaml", "torch_intnn.lightning.IntegerClassifier",
                      "{model: toy_linear, rule: toy}")
    floating = _recipe(tmp_path / "mlp_float_bp.yaml", "torch_intnn.lightning.FloatClassifier",
                       "{model: pocketnn_mlp_mnist_float, rule: bp}")
    out = tmp_path / "cmp"
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- compare: cmp -->\nold table\n<!-- /compare -->\nafter\n")
    try:
        main(["compare", str(integer), str(floating), "--out", str(out), "--seeds", "0", "1", "--readme", str(readme)])
    except SystemExit as stop:
        assert stop.code == 0
    printed = capsys.readouterr().out
    assert "intnn compare: run 1/4: toy_int, seed 0" in printed and "run 4/4: mlp_float_bp, seed 1" in printed
    table = (out / "compare.md").read_text()
    assert "| toy_int | toy_linear | integer toy | 2 |" in table
    assert "| mlp_float_bp | pocketnn_mlp_mnist_float | float bp | 2 |" in table
    assert "±" in table and "Protocol: validation split" in table
    link = "\n![Validation accuracy per epoch of every run above](docs/cmp.png)\n"
    assert readme.read_text() == f"# x\n<!-- compare: cmp -->\n{table}{link}<!-- /compare -->\nafter\n"
    png = (out / "val_acc.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert (tmp_path / "docs" / "cmp.png").read_bytes() == png  # the README shows the plot
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for run in ("toy_int", "mlp_float_bp"):
        acc = EventAccumulator(str(out / "tb" / run / "seed_0"))
        acc.Reload()
        assert {"train/loss", "val/acc", "test/acc", "test/acc_best_val"} <= set(acc.Tags()["scalars"])
        assert len(acc.Scalars("val/acc")) == 2
        assert len(acc.Scalars("test/acc")) == len(acc.Scalars("test/acc_best_val")) == 1  # final, best: apart


def test_a_readme_without_the_block_is_refused_before_anything_trains(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no block\n")
    with pytest.raises(SystemExit, match="has no line '<!-- compare: cmp -->'"):
        main(["compare", "recipes/mnist_pocketnn_dfa.yaml", "--out", str(tmp_path / "cmp"), "--readme", str(readme)])
    assert not (tmp_path / "cmp").exists()


def test_the_table_gives_the_range_of_epochs_over_seeds():
    from torch_intnn.lightning.compare import _table

    res = [{"test_acc_final": 0.9, "epochs": e, "seconds_per_epoch": 1.0} for e in (51, 48, 55)]
    table = _table([{"name": "r", "model": "m", "rule": "integer x", "results": res}], "intnn compare r", "2026-12-02")
    assert "| 48-55 |" in table and "Measured on 2026-12-02" in table
    same = _table([{"name": "r", "model": "m", "rule": "x", "results": res[:1] * 2}], "c", "2026-12-02")
    assert "| 51 |" in same
