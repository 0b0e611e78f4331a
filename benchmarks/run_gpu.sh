#!/usr/bin/env bash
# The GPU rows of resnas in one command, on a machine with one CUDA GPU (torch, timm, accelerate; no
# optuna needed): about 3-7 minutes on an H100 or H200, never much more than bench_gpu.py's --budget of
# 420 s. Runs in the repository root, whatever the current folder, on this checkout's resnas; writes
# gpu_report.md and gpu_bench.log under $OUT (default: benchmarks/). Extra arguments go to
# bench_gpu.py, e.g. `bash benchmarks/run_gpu.sh --rows mfu --peak-tflops 756`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-benchmarks}"
mkdir -p "$out"
python="${PYTHON:-$(command -v python || command -v python3)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$python" benchmarks/bench_gpu.py --device cuda --report "$out/gpu_report.md" "$@" 2>&1 | tee "$out/gpu_bench.log"
