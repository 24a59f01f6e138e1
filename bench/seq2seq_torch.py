"""One round of Seq2Seq training steps in PyTorch (the twin in scripts/seq2seq_model.py), for
bench/seq2seq.ts, which runs it alternately with recurrent's steps on the same batch.

  /usr/bin/python3 bench/seq2seq_torch.py CONFIG.json  ->  one JSON line: { "msPerStep": [...] }

CONFIG: { cell, attention, sourceVocab, targetVocab, embeddingDim, hidden, layers, threads, steps,
sources: number[][], targets: number[][] }
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'scripts'))
import torch  # noqa: E402
from seq2seq_model import Seq2Seq  # noqa: E402

config = json.load(open(sys.argv[1]))
torch.set_num_threads(config['threads'])
torch.manual_seed(0)
model = Seq2Seq(config['cell'], config['sourceVocab'], config['targetVocab'], config['embeddingDim'], config['hidden'],
                config['layers'], True, config['attention'], context_feeding=config['contextFeeding'])
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
source, lengths, inputs, outputs = model.batches(config['sources'], config['targets'])


def step():
    loss = model.loss(source, lengths, inputs, outputs)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


for _ in range(3):
    step()
times = []
for _ in range(config['steps']):
    start = time.perf_counter()
    step()
    times.append((time.perf_counter() - start) * 1000)
print(json.dumps({'msPerStep': times, 'torch': torch.__version__, 'threads': torch.get_num_threads()}))
