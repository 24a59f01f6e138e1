/**
 * A stack of one-direction layers in inference (stackForward, cpp/recurrent.h): the layers run as
 * a pipeline over chunks of time steps, one thread per layer, against each layer's own split of
 * its steps (by units or by rows), and against what the size rule picks. In one process, the three
 * alternating, medians of per-call medians (the two cores of these machines change speed from
 * minute to minute, so runs minutes apart do not compare).
 *
 *   npm run bench:pipeline [-- --rounds 5]
 */
import * as fs from 'fs';
import * as path from 'path';
import { GRU, LSTM, RNN, Tensor, noGrad, setNumThreads } from '../lib/index';
import { native } from '../lib/core/native';
import { describeMachine, median, root } from './harness';

const argv = process.argv.slice(2);
const roundsAt = argv.indexOf('--rounds');
const rounds = roundsAt >= 0 ? Number(argv[roundsAt + 1]) : 5;
const I = 64;
const AUTO = 0, ON = 1, OFF = 2;
const modes = [OFF, ON, AUTO] as const;

interface Shape { cell: 'lstm' | 'gru' | 'rnn'; layers: number; H: number; B: number; T: number }
const shapes: Shape[] = [];
for (const cell of ['lstm', 'gru', 'rnn'] as const)
  for (const H of [128, 256, 512])
    for (const B of [1, 8, 32])
      shapes.push({ cell, layers: 2, H, B, T: 100 });
shapes.push({ cell: 'lstm', layers: 2, H: 128, B: 8, T: 32 }, { cell: 'lstm', layers: 3, H: 128, B: 8, T: 100 },
  { cell: 'lstm', layers: 3, H: 128, B: 1, T: 100 }, { cell: 'lstm', layers: 4, H: 128, B: 1, T: 100 });

function timeCall(run: () => void, ms: number): number {
  for (let i = 0; i < 3; ++i) run();
  const times: number[] = [];
  const until = Date.now() + ms;
  while (Date.now() < until || times.length < 5) {
    const t0 = process.hrtime.bigint();
    run();
    times.push(Number(process.hrtime.bigint() - t0) / 1e3);
  }
  return median(times);
}

setNumThreads(2);
const machine = describeMachine();
console.log(`machine: ${machine}`);
const rows: (Shape & { off: number; on: number; auto: number; chose: string })[] = [];
for (const s of shapes) {
  const Cls = s.cell === 'lstm' ? LSTM : s.cell === 'gru' ? GRU : RNN;
  const model = new Cls({ inputSize: I, hiddenSize: s.H, numLayers: s.layers });
  model.eval();
  const x = Tensor.randn([s.T, s.B, I]);
  const run = () => {
    const r = noGrad(() => model.forward(x));
    r.output.dispose();
    r.h.dispose();
    (r as { c?: Tensor | null }).c?.dispose();
  };
  const times = new Map<number, number[]>(modes.map((m) => [m, []]));
  for (let round = 0; round < rounds; ++round)
    for (const mode of modes) {
      native.setStackPipeline(mode);
      times.get(mode)!.push(timeCall(run, 250));
    }
  native.setStackPipeline(AUTO);
  const [off, on, auto] = modes.map((m) => median(times.get(m)!));
  const chose = Math.abs(auto - on) < Math.abs(auto - off) ? 'pipeline' : 'own split';
  rows.push({ ...s, off, on, auto, chose });
  console.log(`${s.cell} L=${s.layers} H=${s.H} B=${s.B} T=${s.T}: own split ${off.toFixed(1)} us, pipeline ${on.toFixed(1)} us ` +
    `(${(off / on).toFixed(2)}x), by size ${auto.toFixed(1)} us (${(off / auto).toFixed(2)}x)`);
}

const us = (v: number) => (v >= 1000 ? `${(v / 1000).toFixed(2)} ms` : `${v.toFixed(1)} us`);
const lines = [
  '## A stack of layers in inference: the pipeline over time against each layer\'s own split (npm run bench:pipeline)',
  '',
  `Machine: ${machine}, 2 threads, Node ${process.version}. I = ${I}; \`forward()\` under noGrad in eval mode. In one process, ` +
    `own split, pipeline and the size rule alternating, ${rounds} rounds, medians of per-call medians. "by size" is what ` +
    'runs by default; speed-ups are against the own split (above 1: faster).',
  '',
  '| cell | layers | H | B | T | own split | pipeline | speed-up | by size | speed-up |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.cell} | ${r.layers} | ${r.H} | ${r.B} | ${r.T} | ${us(r.off)} | ${us(r.on)} | ${(r.off / r.on).toFixed(2)}x | ` +
    `${us(r.auto)} | ${(r.off / r.auto).toFixed(2)}x |`),
  '',
];
fs.writeFileSync(path.join(root, 'bench', 'stack-pipeline-results.md'), lines.join('\n'));
fs.writeFileSync(path.join(root, 'bench', 'stack-pipeline-results.json'), JSON.stringify({ machine, rounds, rows }, null, 2) + '\n');
console.log('wrote bench/stack-pipeline-results.md');
