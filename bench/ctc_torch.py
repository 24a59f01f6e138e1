#!/usr/bin/env python3
"""PyTorch's CTC loss with its gradient, timed the way bench/ctc.ts times ours: the same shapes,
the same threads, medians. Run by bench/ctc.ts when Debian's python3-torch is installed
(/usr/bin/python3); prints one JSON line per case."""
import json
import sys
import time

import torch
import torch.nn.functional as F

for line in sys.stdin:
    case = json.loads(line)
    torch.set_num_threads(case["threads"])
    T, B, C, S = case["T"], case["B"], case["C"], case["S"]
    g = torch.Generator().manual_seed(1)
    log_probs = F.log_softmax(torch.randn(T, B, C, generator=g), dim=2).detach().requires_grad_(True)
    targets = torch.randint(1, C, (B, S), generator=g)
    input_lengths = torch.full((B,), T, dtype=torch.long)
    target_lengths = torch.full((B,), S, dtype=torch.long)
    times = []
    for i in range(case["repeats"] + 1):
        log_probs.grad = None
        start = time.perf_counter()
        F.ctc_loss(log_probs, targets, input_lengths, target_lengths).backward()
        if i > 0:
            times.append((time.perf_counter() - start) * 1000)
    times.sort()
    print(json.dumps({**case, "ms": times[len(times) // 2]}), flush=True)
