#!/usr/bin/env python3
"""Golden CTC cases from PyTorch, for test/87.ctc.test.ts: run by hand, the JSON is committed.

    apt-get install python3-torch libopenblas0-pthread   # Debian's PyTorch 1.13 (CPU)
    /usr/bin/python3 scripts/ctc-fixtures.py            # writes test/fixtures/ctc/cases.json

Each case: log-probabilities (float32, from log_softmax of seeded random logits), targets
(padded [B, S]), input and target lengths, the blank, and for each reduction and zeroInfinity
setting torch.nn.functional.ctc_loss's value and its gradient with respect to the
log-probabilities (for 'none', of sum(weights * loss)), computed by torch in float64 from the
float32 log-probabilities (torch's float32 kernel rounds its alphas and betas: over 60 steps its
gradient drifts by up to 3e-4 relative from the exact one, which float64 gives). Non-finite numbers are written as the
strings "Infinity", "-Infinity" and "NaN".
"""
import json
import math
import os

import torch
import torch.nn.functional as F


def finite(x):
    if isinstance(x, float):
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "Infinity" if x > 0 else "-Infinity"
        return x
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x


def case(name, seed, T, C, targets, input_lengths, blank, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    B = len(targets)
    S = max([len(t) for t in targets] + [1])
    logits = torch.randn(T, B, C, generator=g) * scale
    log_probs = F.log_softmax(logits, dim=2).float()
    padded = torch.zeros(B, S, dtype=torch.long)
    for b, t in enumerate(targets):
        padded[b, : len(t)] = torch.tensor(t, dtype=torch.long)
    target_lengths = [len(t) for t in targets]
    weights = torch.rand(B, generator=g) + 0.5
    results = []
    for reduction in ["mean", "sum", "none"]:
        for zero_infinity in [False, True]:
            lp = log_probs.double().clone().requires_grad_(True)
            loss = F.ctc_loss(lp, padded, torch.tensor(input_lengths), torch.tensor(target_lengths),
                              blank=blank, reduction=reduction, zero_infinity=zero_infinity)
            (loss * weights).sum().backward() if reduction == "none" else loss.backward()
            results.append({
                "reduction": reduction, "zeroInfinity": zero_infinity,
                "loss": finite(loss.detach().double().reshape(-1).tolist()),
                "grad": finite(lp.grad.double().reshape(-1).tolist()),
            })
    return {
        "name": name, "T": T, "B": B, "C": C, "blank": blank,
        "logProbs": log_probs.double().reshape(-1).tolist(), "targets": padded.tolist(),
        "inputLengths": input_lengths, "targetLengths": target_lengths,
        "weights": weights.double().tolist(), "results": results,
    }


cases = [
    case("repeated labels, ragged lengths", 1, 12, 6, [[1, 2, 2, 3], [4], [5, 1, 5]], [12, 9, 7], 0),
    case("blank is the last class", 2, 10, 5, [[0, 1, 1], [3, 2, 0, 1]], [10, 8], 4),
    case("blank in the middle", 3, 9, 5, [[0, 1, 3], [4, 4]], [9, 6], 2),
    case("an impossible alignment (3 repeats in 4 frames) beside a possible one", 4, 6, 4, [[1, 1, 1], [2, 3]], [4, 6], 0),
    case("an empty target", 5, 7, 4, [[], [1, 2]], [7, 5], 0),
    case("label sequences as long as the input allows", 6, 8, 5, [[1, 2, 3, 4, 1, 2, 3, 4], [1, 2, 1, 2]], [8, 8], 0),
    case("longer sequences", 7, 60, 11, [[(i * 7) % 10 + 1 for i in range(25)], [(i * 3) % 10 + 1 for i in range(9)]], [60, 41], 0, 2.0),
]
out = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "ctc", "cases.json")
with open(out, "w") as f:
    json.dump({"torch": torch.__version__, "cases": cases}, f, separators=(",", ":"))
print(f"wrote {len(cases)} cases to {os.path.relpath(out)} (torch {torch.__version__})")
