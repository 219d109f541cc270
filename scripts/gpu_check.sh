#!/usr/bin/env bash
# One-command GPU check, at most 8 minutes: the CUDA tests, then the backend benchmark on CUDA
# with the torch backend eager / torch.compile (inductor) / CUDA graphs (torch.compile
# mode="reduce-overhead"), each at fp32 and fp16 (autocast), plus ORT CUDA and TensorRT rows
# where onnxruntime-gpu / tensorrt are installed (skipped with a warning otherwise).
#
#   bash scripts/gpu_check.sh [OUT_DIR]        # default OUT_DIR: gpu_check_out
#
# Writes OUT_DIR/tests.txt, OUT_DIR/bench_tiny.txt, OUT_DIR/bench_r50.txt (each bench file ends
# with the JSON line) and exits non-zero if a step fails or runs out of its time. Without a CUDA
# device it stops at once with exit 2 and one line saying so. PYTHON=... picks the interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${1:-gpu_check_out}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
then
    echo "gpu_check.sh: error: no CUDA device (torch.cuda.is_available() is False for $PY);" \
         "this check needs an NVIDIA GPU with a CUDA build of torch" >&2
    exit 2
fi
mkdir -p "$OUT"
"$PY" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {p.name}, {p.total_memory / 2**30:.0f} GiB")' \
    | tee "$OUT/device.txt"

fail=0
step() {  # step NAME SECONDS OUTFILE CMD...: run with a time limit, keep its output
    local name=$1 limit=$2 file=$3
    shift 3
    echo "== $name (limit ${limit}s)"
    timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$file"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        echo "gpu_check.sh: $name failed (exit $rc; 124 = ran past ${limit}s)" >&2
        fail=1
    fi
}

# 1. CUDA tests: everything named cuda/gpu (parity stages on CUDA, pipeline CUDA vs CPU, the
#    torch backend on CUDA, TensorRT vs torch where tensorrt is installed).
step "CUDA tests" 150 tests.txt "$PY" -m pytest -q -rs -p no:cacheprovider -k "cuda or gpu" \
    tests/core/test_parity.py tests/core/test_pipeline.py tests/core/test_runtime.py \
    tests/export/test_backends.py tests/export/test_trt_gpu.py

# 2. Backend latency at 384x1248; compile time falls in the untimed warm-up frames.
BENCH=(scripts/bench_backends.py --device cuda --fp16 --int8-calib 0 --frames 20 --warmup 5)
step "bench tiny" 110 bench_tiny.txt "$PY" "${BENCH[@]}" --presets tiny
step "bench kitti_step_r50" 180 bench_r50.txt "$PY" "${BENCH[@]}" --presets kitti_step_r50

echo "gpu_check.sh: $(( $(date +%s) - start )) s; results in $OUT/"
exit $fail
