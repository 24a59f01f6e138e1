#!/usr/bin/env python3
"""Golden Seq2Seq and attention cases from PyTorch, for test/88.seq2seq.test.ts: run by hand, the
JSON is committed.

    apt-get install python3-torch libopenblas0-pthread   # Debian's PyTorch 1.13 (CPU)
    /usr/bin/python3 scripts/seq2seq-fixtures.py         # writes test/fixtures/seq2seq/cases.json

The models are scripts/seq2seq_model.py, the PyTorch twins of lib/nn/attention.ts and
lib/nn/seq2seq.ts with the same parameter names. Everything runs in float64 from float32 values
(parameters and inputs are drawn in float32 first), so the fixtures hold the exact answers that
recurrent's float32 kernels must come within tolerance of.

attention cases: parameters, query [B, Tq, Hq], keys [B, S, Hk], values [B, S, Hv], lengths;
context and weights; gradients of sum(context * rc) + sum(weights * rw) with respect to the
query, keys, values and every parameter.

model cases: a Seq2Seq state dict, a batch of sources and targets; the loss (mean cross entropy
over target tokens and <end>) and its gradient for every parameter; the attention weights; and
greedy decoding (tokens and log-probabilities) run step by step in PyTorch.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seq2seq_model import BahdanauAttention, LuongAttention, Seq2Seq, attend  # noqa: E402

torch.set_default_dtype(torch.float64)


def as_list(t):
    return t.detach().reshape(-1).tolist()


def rounded_params(module, g):
    """Parameters drawn in float32 (so recurrent holds them exactly), then used in float64."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_((torch.rand(p.shape, generator=g, dtype=torch.float32) * 2 - 1).to(torch.float64) * 0.5)


def attention_case(name, kind, seed, B, Tq, S, Hq, Hk, Hv, lengths, A=None):
    g = torch.Generator().manual_seed(seed)
    if kind == 'bahdanau':
        module = BahdanauAttention(Hq, Hk, A)
    else:
        module = LuongAttention(Hq, Hk, kind)
    rounded_params(module, g)

    def draw(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float32).to(torch.float64).requires_grad_(True)

    query, keys, values = draw(B, Tq, Hq), draw(B, S, Hk), draw(B, S, Hv)
    context, weights = attend(module, query, keys, values, lengths)
    rc = torch.randn(context.shape, generator=g, dtype=torch.float32).to(torch.float64)
    rw = torch.randn(weights.shape, generator=g, dtype=torch.float32).to(torch.float64)
    ((context * rc).sum() + (weights * rw).sum()).backward()
    return {
        'name': name, 'kind': kind, 'B': B, 'Tq': Tq, 'S': S, 'querySize': Hq, 'keySize': Hk, 'valueSize': Hv, 'attentionSize': A,
        'lengths': lengths,
        'params': {k: {'shape': list(p.shape), 'values': as_list(p)} for k, p in module.named_parameters()},
        'query': as_list(query), 'keys': as_list(keys), 'values': as_list(values), 'rc': as_list(rc), 'rw': as_list(rw),
        'context': as_list(context), 'weights': as_list(weights),
        'grads': {'query': as_list(query.grad), 'keys': as_list(keys.grad), 'values': as_list(values.grad),
                  **{k: as_list(p.grad) for k, p in module.named_parameters()}},
    }


def greedy(model, sources, max_length):
    """Step-by-step greedy decoding of the teacher-forced graph: at each step the whole prefix is run
    again (slow, plainly equal to the model's definition)."""
    out = []
    with torch.no_grad():
        for source in sources:
            tokens, log_prob, ended = [], 0.0, False
            for _ in range(max_length):
                src, lengths, inputs, _ = model.batches([source], [tokens])
                logits, _ = model.forward(src, lengths, inputs)
                logp = torch.log_softmax(logits[0, len(tokens)], dim=-1)
                best = int(torch.argmax(logp))
                log_prob += float(logp[best])
                if best == model.target_vocab:
                    ended = True
                    break
                tokens.append(best)
            out.append({'tokens': tokens, 'logProb': log_prob, 'ended': ended})
    return out


def model_case(name, seed, cell, attention, layers, bidirectional, sources, targets, V_s=7, V_t=6, E=5, H=8, A=6, context_feeding=False):
    g = torch.Generator().manual_seed(seed)
    model = Seq2Seq(cell, V_s, V_t, E, H, layers, bidirectional, attention, A if attention == 'bahdanau' else None,
                    context_feeding=context_feeding)
    rounded_params(model, g)
    model.eval()
    src, lengths, inputs, outputs = model.batches(sources, targets)
    logits, weights = model.forward(src, lengths, inputs)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), outputs.reshape(-1), ignore_index=-100)
    loss.backward()
    return {
        'name': name, 'cell': cell, 'attention': attention, 'numLayers': layers, 'bidirectional': bidirectional, 'contextFeeding': context_feeding,
        'sourceVocabSize': V_s, 'targetVocabSize': V_t, 'embeddingDim': E, 'hiddenSize': H, 'attentionSize': A,
        'sources': sources, 'targets': targets,
        'state': {k: {'shape': list(p.shape), 'values': as_list(p)} for k, p in model.named_parameters()},
        'loss': float(loss), 'grads': {k: as_list(p.grad) for k, p in model.named_parameters()},
        'weights': None if weights is None else as_list(weights),
        'greedy': greedy(model, sources, 12),
    }


def main():
    attention = [
        attention_case('bahdanau, ragged lengths', 'bahdanau', 1, B=3, Tq=4, S=5, Hq=6, Hk=7, Hv=3, lengths=[5, 2, 4], A=5),
        attention_case('bahdanau, one query, no padding', 'bahdanau', 2, B=2, Tq=1, S=3, Hq=4, Hk=4, Hv=4, lengths=[3, 3], A=8),
        attention_case('luong general, ragged lengths', 'general', 3, B=3, Tq=4, S=5, Hq=6, Hk=7, Hv=3, lengths=[1, 5, 3]),
        attention_case('luong dot', 'dot', 4, B=2, Tq=3, S=4, Hq=5, Hk=5, Hv=5, lengths=[4, 2]),
    ]
    sources = [[1, 2, 3, 4], [5, 0], [6, 6, 1], [2]]
    targets = [[3, 2, 1], [0, 5, 5, 4], [], [1]]
    models = [
        model_case('lstm, bahdanau, bidirectional, 2 layers', 11, 'lstm', 'bahdanau', 2, True, sources, targets),
        model_case('gru, luong, bidirectional', 12, 'gru', 'luong', 1, True, sources, targets),
        model_case('lstm, dot, one direction', 13, 'lstm', 'dot', 1, False, sources, targets),
        model_case('gru, no attention, 2 layers', 14, 'gru', 'none', 2, True, sources, targets),
        model_case('lstm, bahdanau, context feeding, 3 layers', 15, 'lstm', 'bahdanau', 3, True, sources, targets, context_feeding=True),
        model_case('gru, luong, context feeding, 2 layers, one direction', 16, 'gru', 'luong', 2, False, sources, targets, context_feeding=True),
    ]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'seq2seq')
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, 'cases.json'), 'w') as f:
        json.dump({'torch': torch.__version__, 'attention': attention, 'models': models}, f, separators=(',', ':'))
        f.write('\n')


if __name__ == '__main__':
    main()
