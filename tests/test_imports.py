"""``import torch_intnn`` stays light: no Lightning, torchvision or TensorBoard, and no CUDA initialisation."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("lightning", "pytorch_lightning", "lightning_fabric", "torchvision", "tensorboard", "tensorboardX")


def test_import_loads_no_heavy_dependency():
    code = (
        "import sys, torch_intnn, torch\n"
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r}]\n"
        "print('HEAVY', heavy)\n"
        "print('CUDA', torch.cuda.is_initialized())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out, out
    assert "CUDA False" in out, out
