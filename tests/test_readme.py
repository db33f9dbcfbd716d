"""The README's plain-PyTorch example runs as written (on a small synthetic dataset in torchvision's format)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_plain_loop_example_trains_and_prints_accuracy(fake_root, monkeypatch, capsys):
    text = README.read_text()
    block = re.search(r"<!-- example: plain-loop -->\n```python\n(.*?)```", text, re.S)
    assert block, "README lost its plain-loop example"
    monkeypatch.setenv("TORCH_INTNN_DATA", str(fake_root))
    exec(compile(block.group(1), "README.md", "exec"), {})
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy ([\d.]+)%", out).group(1))
    assert accuracy > 50.0  # synthetic bars are easy; an untrained model scores about 10%
