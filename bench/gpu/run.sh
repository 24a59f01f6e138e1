#!/usr/bin/env bash
# GPU benchmark, for a machine with an NVIDIA GPU, nvcc, CMake and PyTorch (no Node.js
# needed): recurrent's CUDA layer (per-step and persistent paths) against PyTorch's cuDNN
# LSTM/GRU on the same configurations, alternating rounds in the same run, in FP32 and in
# TF32. Writes bench/gpu/results.jsonl and bench/gpu/results.md. (The Node-level step, with
# the optimizer, is bench/gpu.ts: npm run bench:gpu.)
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake -S . -B build/gpu-bench -DCMAKE_BUILD_TYPE=Release -DRECURRENT_BENCH=ON -DRECURRENT_TESTS=ON > /dev/null
cmake --build build/gpu-bench -j "$(nproc)" --target cuda_layer_bench cuda_tests > /dev/null
build/gpu-bench/cuda_tests | tail -1
out=bench/gpu/results.jsonl
: > "$out"
for round in 1 2 3; do
  build/gpu-bench/cuda_layer_bench >> "$out"
  python3 bench/gpu/cudnn_bench.py >> "$out"
done
RECURRENT_TF32=1 build/gpu-bench/cuda_layer_bench >> "$out"
RECURRENT_TF32=1 python3 bench/gpu/cudnn_bench.py >> "$out"
python3 bench/gpu/summarize.py "$out" > bench/gpu/results.md
cat bench/gpu/results.md
