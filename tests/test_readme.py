"""The README's plain-PyTorch examples run as written (on a small synthetic dataset in torchvision's format)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(name: str) -> str:
    block = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert block, f"README lost its {name} example"
    return block.group(1)


def test_plain_loop_and_drop_in_examples_train_and_print_accuracy(fake_root, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_INTNN_DATA", str(fake_root))
    scope: dict = {}
    exec(compile(_block("plain-loop"), "README.md", "exec"), scope)
    exec(compile(_block("drop-in"), "README.md", "exec"), scope)  # it reuses the first block's data
    exec(compile(_block("nitro-sequential"), "README.md", "exec"), scope)
    out = capsys.readouterr().out
    accuracy = float(re.search(r"^test accuracy ([\d.]+)%", out, re.M).group(1))
    drop_in = float(re.search(r"drop-in test accuracy ([\d.]+)%", out).group(1))
    nitro = float(re.search(r"nitro sequential test accuracy ([\d.]+)%", out).group(1))
    # synthetic bars are easy; an untrained model scores about 10%
    assert accuracy > 50.0 and drop_in > 50.0 and nitro > 50.0, out
