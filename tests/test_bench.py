"""The benchmark commands run and print what they promise (figures are not asserted: timings are noisy)."""

import json

from torch_intnn.bench import kernels, train
from torch_intnn.recipes import find_recipe


def test_bench_kernels_json_reports_every_path_exact(capsys):
    assert kernels.main(["--json", "--repeats", "1", "--only", "256x784"]) == 0
    report = json.loads(capsys.readouterr().out)
    (shape,) = report["shapes"]
    paths = {r["path"]: r for r in shape["results"]}
    assert "float32 F.linear" in paths and "int8 x int16 cached split" in paths
    assert all(r["exact"] for r in shape["results"] if r["exact"] is not None)


def test_bench_train_json_compares_integer_and_float_steps(capsys):
    recipe = str(find_recipe("mnist_pocketnn_dfa"))
    assert train.main(["--json", "--eager", "--steps", "2", "--rounds", "1", "--recipes", recipe]) == 0
    (result,) = json.loads(capsys.readouterr().out)["results"]
    assert result["recipe"] == "mnist_pocketnn_dfa" and result["batch_size"] == 100 and not result["compiled"]
    assert result["integer_step_ms"] > 0 and result["float_bp_step_ms"] > 0
    assert abs(result["ratio_integer_over_float"] - result["integer_step_ms"] / result["float_bp_step_ms"]) < 0.01
    assert abs(sum(result["integer_time_split_percent"].values()) - 100) < 0.5
