#!/usr/bin/env bash
# Create .venv and install every pinned dependency plus this package (editable). Idempotent:
# a second run only re-checks the pins. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
.venv/bin/python - <<'PY'
import torch, onnxruntime, rclpy, rosbags  # noqa: F401  (fail here, not in the first test)
print(f"vknet setup ok: torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
PY
