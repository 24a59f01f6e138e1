"""Summarizes the JSON lines of bench/native/cuda_layer_bench.cu and bench/gpu/cudnn_bench.py
(several alternating rounds, FP32 and TF32) into a markdown table: medians per configuration,
our per-step ("stepwise") and persistent paths beside cuDNN, and the ratio of the faster of
ours to cuDNN.

    python3 bench/gpu/summarize.py results.jsonl > results.md
"""
import collections
import json
import statistics
import sys


def main(path):
    rows = collections.defaultdict(list)
    device = ""
    for line in open(path):
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        device = r.get("device", device)
        if r["library"].startswith("cuDNN"):
            lib = "cudnn"
        else:
            lib = "stepwise" if r["path"] == "stepwise" else "persistent"
        key = (r.get("precision", "fp32"), r["cell"], r["hidden"], r["mode"], r["batch"])
        rows[key + (lib,)].append(r["timestepSamplesPerSecond"])
    print(f"GPU: {device}. T = 32, input size = hidden size; timestep-samples/s (T x B / s), medians of the rounds run.")
    print("train: forward + backward of one layer (no optimizer) for both; cuDNN through PyTorch.\n")
    for precision in ("fp32", "tf32"):
        keys = sorted({k[:5] for k in rows if k[0] == precision})
        if not keys:
            continue
        print(f"### {precision.upper()}\n")
        print("| job | B | recurrent stepwise | recurrent persistent | cuDNN | best / cuDNN |")
        print("|---|---|---|---|---|---|")
        for k in keys:
            v = {lib: statistics.median(rows[k + (lib,)]) if rows.get(k + (lib,)) else None
                 for lib in ("stepwise", "persistent", "cudnn")}
            ours = [x for x in (v["stepwise"], v["persistent"]) if x]
            fmt = lambda x: f"{x:,.0f}" if x else "n/a"
            ratio = f"{max(ours) / v['cudnn']:.2f}x" if ours and v["cudnn"] else "n/a"
            _, cell, hidden, mode, batch = k
            print(f"| {cell.upper()} H={hidden} {mode} | {batch} | {fmt(v['stepwise'])} | {fmt(v['persistent'])} | {fmt(v['cudnn'])} | {ratio} |")
        print()


if __name__ == "__main__":
    main(sys.argv[1])
