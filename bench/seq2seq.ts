/**
 * A Seq2Seq training step (forward, masked cross entropy, backward, Adam) against PyTorch 1.13 on
 * the CPU (Debian's python3-torch, bench/seq2seq_torch.py running the twin model of
 * scripts/seq2seq_model.py) on the same model and batch: G2P-sized pairs (sources of 4-12 tokens,
 * targets of about the same length), alternating rounds, medians, the same threads.
 *
 *   npm run bench:seq2seq        (without /usr/bin/python3 and torch the PyTorch column is empty)
 *
 * Writes bench/seq2seq-results.{json,md}.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Adam, Seq2Seq, scope, seed, setNumThreads } from '../lib/index';
import type { AttentionType } from '../lib/index';
import { Generator, random } from '../lib/core/random';
import { describeMachine, median } from './harness';

const rounds = 5;
const steps = 10;
const threads = os.cpus().length;
setNumThreads(threads);

interface Case {
  attention: AttentionType;
  cell: 'lstm' | 'gru';
  batch: number;
  hidden: number;
  /** decoder and encoder layers (default 1) */
  layers?: number;
  contextFeeding?: boolean;
}
const cases: Case[] = [
  { attention: 'bahdanau', cell: 'lstm', batch: 64, hidden: 256 },
  { attention: 'luong', cell: 'lstm', batch: 64, hidden: 256 },
  { attention: 'dot', cell: 'gru', batch: 64, hidden: 256 },
  { attention: 'none', cell: 'lstm', batch: 64, hidden: 256 },
  { attention: 'bahdanau', cell: 'lstm', batch: 128, hidden: 512 },
  // the G2P example's model: 2 layers, with and without context feeding
  { attention: 'bahdanau', cell: 'lstm', batch: 64, hidden: 256, layers: 2 },
  { attention: 'bahdanau', cell: 'lstm', batch: 64, hidden: 256, layers: 2, contextFeeding: true },
];
const sourceVocab = 27;
const targetVocab = 69;
const embeddingDim = 64;

function batchOf(B: number): { sources: number[][]; targets: number[][] } {
  const rng = new Generator(B);
  return rng.run(() => {
    const sources = Array.from({ length: B }, () => Array.from({ length: 4 + Math.floor(random() * 9) }, () => Math.floor(random() * sourceVocab)));
    const targets = sources.map((s) => Array.from({ length: Math.max(1, s.length - 1 + Math.floor(random() * 3)) }, () => Math.floor(random() * targetVocab)));
    return { sources, targets };
  });
}

function ours(c: Case, data: { sources: number[][]; targets: number[][] }): () => number[] {
  seed(0);
  const model = new Seq2Seq({ cell: c.cell, attention: c.attention, sourceVocabSize: sourceVocab, targetVocabSize: targetVocab, embeddingDim, hiddenSize: c.hidden,
    numLayers: c.layers ?? 1, contextFeeding: c.contextFeeding ?? false });
  const optimizer = new Adam(model.parameters(), { lr: 1e-3 });
  const step = () => scope(() => {
    const loss = model.loss(data.sources, data.targets);
    optimizer.zeroGrad();
    loss.backward();
    optimizer.step();
    return loss.item();
  });
  for (let i = 0; i < 3; ++i) step();
  return () => Array.from({ length: steps }, () => {
    const started = performance.now();
    step();
    return performance.now() - started;
  });
}

function torchRound(c: Case, data: { sources: number[][]; targets: number[][] }): number[] | null {
  if (!fs.existsSync('/usr/bin/python3')) return null;
  const config = path.join(os.tmpdir(), `recurrent-seq2seq-${process.pid}.json`);
  fs.writeFileSync(config, JSON.stringify({ layers: 1, contextFeeding: false, ...c, sourceVocab, targetVocab, embeddingDim, threads, steps, ...data }));
  const r = spawnSync('/usr/bin/python3', [path.join(__dirname, 'seq2seq_torch.py'), config], { encoding: 'utf8' });
  fs.rmSync(config, { force: true });
  if (r.status !== 0) {
    console.error(`PyTorch round failed (is python3-torch installed?):\n${r.stderr}`);
    return null;
  }
  return (JSON.parse(r.stdout.trim().split('\n').pop()!) as { msPerStep: number[] }).msPerStep;
}

const attentionLabel = (c: Case) => `${c.attention}${c.contextFeeding ? ' (context feeding)' : ''}`;
const cellLabel = (c: Case) => `${c.cell}${c.layers ? ` x ${c.layers}` : ''}`;
const machine = describeMachine();
console.log(`Seq2Seq training step (forward, loss, backward, Adam): recurrent vs PyTorch 1.13 CPU, ${threads} threads; ${machine}`);
const rows: { case: Case; recurrentMs: number; torchMs: number | null; ratio: number | null; pairsPerSecond: number }[] = [];
for (const c of cases) {
  const data = batchOf(c.batch);
  const run = ours(c, data);
  const mine: number[] = [];
  const theirs: number[] = [];
  for (let round = 0; round < rounds; ++round) {
    mine.push(median(run()));
    const t = torchRound(c, data);
    if (t) theirs.push(median(t));
  }
  const recurrentMs = median(mine);
  const torchMs = theirs.length ? median(theirs) : null;
  const ratio = torchMs === null ? null : torchMs / recurrentMs;
  rows.push({ case: c, recurrentMs, torchMs, ratio, pairsPerSecond: (c.batch / recurrentMs) * 1000 });
  console.log(`${attentionLabel(c)} ${cellLabel(c)} B = ${c.batch}, H = ${c.hidden}: recurrent ${recurrentMs.toFixed(2)} ms, PyTorch ${torchMs?.toFixed(2) ?? '-'} ms` +
    (ratio ? `, ${ratio.toFixed(2)}x` : ''));
}
const md = [
  '# Seq2Seq training step: recurrent vs PyTorch 1.13 (CPU)',
  '',
  `${machine}; ${threads} threads on both sides. One step: forward, masked cross entropy, backward, Adam, on one batch of`,
  `G2P-sized pairs (sources of 4-12 tokens from ${sourceVocab}, targets of about the same length from ${targetVocab}), embeddings ${embeddingDim},`,
  `one layer unless the cell says x 2, bidirectional encoder (hidden / 2 per direction). PyTorch runs the twin model (scripts/seq2seq_model.py:`,
  'pack_padded_sequence, nn.LSTM/nn.GRU, the same attention). Medians of ' + `${rounds} alternating rounds of ${steps} steps.`,
  '',
  '| attention | cell (layers) | B | H | recurrent | PyTorch | speed-up | pairs/s (recurrent) |',
  '|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${attentionLabel(r.case)} | ${cellLabel(r.case)} | ${r.case.batch} | ${r.case.hidden} | ${r.recurrentMs.toFixed(2)} ms | ` +
    `${r.torchMs === null ? '-' : `${r.torchMs.toFixed(2)} ms`} | ${r.ratio === null ? '-' : `${r.ratio.toFixed(2)}x`} | ${r.pairsPerSecond.toFixed(0)} |`),
  '',
];
fs.writeFileSync(path.join(__dirname, 'seq2seq-results.md'), md.join('\n'));
fs.writeFileSync(path.join(__dirname, 'seq2seq-results.json'), JSON.stringify({ machine, threads, rounds, steps, rows }, null, 2) + '\n');
