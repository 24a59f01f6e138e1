"""PyTorch's cuDNN LSTM and GRU on the configurations of bench/native/cuda_layer_bench.cu,
printing the same JSON lines, so the GPU table has cuDNN beside recurrent's CUDA kernels.
Runs on the GPU machine (it has PyTorch; no package registry is needed):

    python3 bench/gpu/cudnn_bench.py            # T = 32, B in {1, 8, 32, 256}, H in {128, 512}
"""
import json
import os
import sys
import time

import torch


def median_seconds(fn, warmup=5, reps=30):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def main():
    if not torch.cuda.is_available():
        print("no CUDA device: skipped", file=sys.stderr)
        return 0
    torch.backends.cudnn.benchmark = True
    # FP32, as recurrent's default; RECURRENT_TF32=1 lets both use TF32 tensor cores
    tf32 = os.environ.get("RECURRENT_TF32") == "1"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    steps = 32
    for cell in ("lstm", "gru"):
        for hidden in (128, 512):
            for batch in (1, 8, 32, 256):
                for mode in ("train", "inference"):
                    layer = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(hidden, hidden).cuda()
                    x = torch.randn(steps, batch, hidden, device="cuda", requires_grad=mode == "train")
                    if mode == "train":
                        def step():
                            layer.zero_grad(set_to_none=True)
                            out, _ = layer(x)
                            out.backward(torch.ones_like(out))
                    else:
                        def step():
                            with torch.no_grad():
                                layer(x)
                    seconds = median_seconds(step)
                    gates = 4 if cell == "lstm" else 3
                    flops = 2.0 * batch * 2 * hidden * gates * hidden * steps * (3 if mode == "train" else 1)
                    print(json.dumps({
                        "library": "cuDNN (PyTorch %s)" % torch.__version__, "precision": "tf32" if tf32 else "fp32", "cell": cell, "hidden": hidden, "batch": batch,
                        "mode": mode, "steps": steps, "seconds": seconds,
                        "timestepSamplesPerSecond": steps * batch / seconds, "gflops": flops / seconds / 1e9,
                        "device": torch.cuda.get_device_name(0),
                    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
