#!/usr/bin/env bash
# Creates .venv (if missing) and installs torch_intnn with its dependencies into it. Idempotent.
# torch and torchvision are pinned to the releases this project is tested with (CPU wheels also work).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
if ! .venv/bin/python -c "import torch_intnn, lightning, torchvision, tensorboard, pytest, hypothesis" 2>/dev/null; then
  echo "installing torch_intnn and its dependencies into .venv (first run takes a few minutes)..." >&2
  .venv/bin/pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/pip install --quiet -e ".[dev]"
fi
