/**
 * CTC loss with its gradient: recurrent against PyTorch's CPU ctc_loss (Debian's python3-torch,
 * run as bench/ctc_torch.py), same shapes and threads, alternating, medians. The issue's shape
 * first: T = 500, B = 32, C = 50, S = 100. Writes bench/ctc-results.{json,md}.
 *
 *   npm run bench:ctc        (without python3-torch the PyTorch column is left empty)
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Tensor, backends, ctcLoss, setNumThreads } from '../lib/index';
import { median, root } from './harness';

const shapes = [
  { T: 500, B: 32, C: 50, S: 100 },
  { T: 100, B: 32, C: 30, S: 20 },
  { T: 1000, B: 8, C: 80, S: 200 },
  { T: 2000, B: 4, C: 40, S: 600 },
];
const repeats = 7;
const rounds = 3;
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';

function ours(shape: (typeof shapes)[number], threads: number): number {
  setNumThreads(threads);
  const { T, B, C, S } = shape;
  const logits = Tensor.randn([T, B, C]);
  const logProbs = logits.logSoftmax().detach().requiresGrad_(true);
  const targets = Array.from({ length: B }, (_, b) => Array.from({ length: S }, (_, i) => 1 + ((b * 31 + i * 7) % (C - 1))));
  const lengths = new Array<number>(B).fill(T);
  const targetLengths = new Array<number>(B).fill(S);
  const times: number[] = [];
  for (let i = 0; i <= repeats; ++i) {
    logProbs.grad = null;
    const started = performance.now();
    ctcLoss(logProbs, targets, lengths, targetLengths).backward();
    logProbs.grad!.toArray(); // the gradient is there
    if (i > 0) times.push(performance.now() - started);
  }
  return median(times);
}

function torch(shape: (typeof shapes)[number], threads: number): number | null {
  if (!fs.existsSync('/usr/bin/python3')) return null;
  const r = spawnSync('/usr/bin/python3', [path.join(__dirname, 'ctc_torch.py')], {
    input: JSON.stringify({ ...shape, threads, repeats }) + '\n', encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: String(threads) },
  });
  if (r.status !== 0) {
    if (/No module named 'torch'/.test(r.stderr)) return null;
    throw new Error(r.stderr);
  }
  return (JSON.parse(r.stdout.trim()) as { ms: number }).ms;
}

const rows: { shape: string; threads: number; ours: number; torch: number | null }[] = [];
for (const shape of shapes) {
  for (const threads of [1, 2]) {
    const mine: number[] = [];
    const theirs: number[] = [];
    for (let round = 0; round < rounds; ++round) {
      mine.push(ours(shape, threads));
      const t = torch(shape, threads);
      if (t !== null) theirs.push(t);
    }
    const row = { shape: `T = ${shape.T}, B = ${shape.B}, C = ${shape.C}, S = ${shape.S}`, threads, ours: median(mine), torch: theirs.length ? median(theirs) : null };
    rows.push(row);
    console.log(`${row.shape}, ${threads} thread(s): recurrent ${row.ours.toFixed(2)} ms, PyTorch ${row.torch?.toFixed(2) ?? '-'} ms` +
      (row.torch ? `, ${(row.torch / row.ours).toFixed(1)}x` : ''));
  }
}
const header = `CTC loss + gradient, ${cpu} (${os.cpus().length} cores), Node ${process.version}, ISA ${backends().cpu.isa}; ` +
  `medians of ${rounds} rounds of ${repeats} calls, alternating; PyTorch: Debian's python3-torch 1.13 (CPU), the same threads`;
const table = ['| shape | threads | recurrent (ms) | PyTorch (ms) | speed-up |', '|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.shape} | ${r.threads} | ${r.ours.toFixed(2)} | ${r.torch?.toFixed(2) ?? '-'} | ${r.torch ? `${(r.torch / r.ours).toFixed(1)}x` : '-'} |`)].join('\n');
fs.writeFileSync(path.join(root, 'bench', 'ctc-results.md'), `${header}\n\n${table}\n`);
fs.writeFileSync(path.join(root, 'bench', 'ctc-results.json'), JSON.stringify({ cpu, node: process.version, rows }, null, 2) + '\n');
console.log(`\n${header}\n\n${table}`);
