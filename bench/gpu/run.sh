#!/usr/bin/env bash
# GPU benchmark, for a machine with an NVIDIA GPU, nvcc, CMake and PyTorch (no Node.js
# needed): recurrent's CUDA layer against PyTorch's cuDNN LSTM/GRU on the same
# configurations in the same run. Writes bench/gpu/results.jsonl and bench/gpu/results.md.
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
python3 - "$out" > bench/gpu/results.md <<'PY'
import json, statistics, sys, collections
rows = collections.defaultdict(list)
device = ""
for line in open(sys.argv[1]):
    if not line.startswith("{"):
        continue
    r = json.loads(line)
    device = r.get("device", device)
    lib = "cudnn" if r["library"].startswith("cuDNN") else "ours"
    rows[(r["cell"], r["hidden"], r["batch"], r["mode"], lib)].append(r["timestepSamplesPerSecond"])
print(f"GPU: {device}. T = 32, I = H, FP32 (TF32 off); timestep-samples/s, medians of 3 rounds.\n")
print("| job | B | recurrent (CUDA) | cuDNN | ratio |")
print("|---|---|---|---|---|")
for (cell, hidden, batch, mode) in sorted({k[:4] for k in rows}):
    ours = statistics.median(rows.get((cell, hidden, batch, mode, "ours"), [float("nan")]))
    theirs = statistics.median(rows.get((cell, hidden, batch, mode, "cudnn"), [float("nan")]))
    print(f"| {cell.upper()} H={hidden} {mode} | {batch} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f}x |")
PY
cat bench/gpu/results.md
