/**
 * GPU throughput through Node: a training step as fit runs it (forward, backward, Adam
 * update, all on 'cuda', inside scope()) and inference, for LSTM and GRU layers at the
 * configurations of bench/gpu/cudnn_bench.py, which times PyTorch's cuDNN on the same
 * shapes in the same run when python3 with torch is on the machine. Writes
 * bench/gpu-results.md and bench/gpu-results.json. Without a usable GPU it says why and
 * exits 0 (so `npm run bench` works everywhere).
 *
 *   npm run bench:gpu
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Adam, GRU, LSTM, Tensor, backends, noGrad, scope, synchronize } from '../lib/index';

const T = 32;
const BATCHES = [1, 8, 32, 256];
const HIDDEN = [128, 512];
const ROUNDS = 3;

interface Row {
  library: string;
  cell: string;
  hidden: number;
  batch: number;
  mode: 'train' | 'inference';
  timestepSamplesPerSecond: number;
  gflops: number;
  device?: string;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function timeSteps(step: () => void, reps: number): Promise<number> {
  for (let i = 0; i < 3; ++i) step();
  await synchronize();
  const t0 = performance.now();
  for (let i = 0; i < reps; ++i) step();
  await synchronize();
  return (performance.now() - t0) / 1000 / reps;
}

async function ours(cell: 'lstm' | 'gru', hidden: number, batch: number, mode: 'train' | 'inference'): Promise<number> {
  const Layer = cell === 'lstm' ? LSTM : GRU;
  const layer = new Layer({ inputSize: hidden, hiddenSize: hidden }).to('cuda');
  const optimizer = new Adam(layer.parameters(), { lr: 1e-4 });
  const x = Tensor.randn([T, batch, hidden], { device: 'cuda' });
  const step =
    mode === 'train'
      ? () => {
          scope(() => {
            optimizer.zeroGrad();
            layer.forward(x).output.sum().backward();
          });
          optimizer.step();
        }
      : () => scope(() => noGrad(() => layer.forward(x).output));
  const seconds = await timeSteps(step, 30);
  x.dispose();
  return seconds;
}

async function main(): Promise<void> {
  const cuda = backends().cuda;
  if (!cuda.compiled || cuda.deviceCount === 0) {
    console.log(`GPU benchmark skipped: ${cuda.reason ?? 'CUDA not usable'}`);
    return;
  }
  const device = cuda.devices?.[0]?.name ?? 'GPU';
  const rows: Row[] = [];
  const ourTimes = new Map<string, number[]>();
  const theirTimes = new Map<string, number[]>();
  const key = (cell: string, hidden: number, batch: number, mode: string) => `${cell}/${hidden}/${batch}/${mode}`;
  for (let round = 0; round < ROUNDS; ++round) {
    for (const cell of ['lstm', 'gru'] as const) {
      for (const hidden of HIDDEN) {
        for (const batch of BATCHES) {
          for (const mode of ['train', 'inference'] as const) {
            const k = key(cell, hidden, batch, mode);
            ourTimes.set(k, [...(ourTimes.get(k) ?? []), await ours(cell, hidden, batch, mode)]);
          }
        }
      }
    }
    // PyTorch's cuDNN in the same run, alternating rounds with ours
    const py = spawnSync('python3', [path.join(__dirname, 'gpu', 'cudnn_bench.py')], { encoding: 'utf8' });
    if (py.status === 0) {
      for (const line of py.stdout.split('\n')) {
        if (!line.startsWith('{')) continue;
        const r = JSON.parse(line) as { cell: string; hidden: number; batch: number; mode: string; seconds: number };
        const k = key(r.cell, r.hidden, r.batch, r.mode);
        theirTimes.set(k, [...(theirTimes.get(k) ?? []), r.seconds]);
      }
    } else if (round === 0) {
      console.log(`(cuDNN side skipped: python3 with torch not available: ${(py.stderr || String(py.error)).trim().split('\n').pop()})`);
    }
  }
  const lines = [
    `GPU: ${device}. T = ${T}, input size = hidden size, FP32; timestep-samples/s (T x B / s), medians of ${ROUNDS} rounds.`,
    'recurrent: a training step as fit runs it (forward, backward, Adam) through Node; cuDNN: PyTorch forward + backward (TF32 off).',
    '',
    '| job | B | recurrent (CUDA, Node) | GFLOP/s | cuDNN (PyTorch) | ratio |',
    '|---|---|---|---|---|---|',
  ];
  for (const cell of ['lstm', 'gru'] as const) {
    for (const hidden of HIDDEN) {
      for (const mode of ['train', 'inference'] as const) {
        for (const batch of BATCHES) {
          const k = key(cell, hidden, batch, mode);
          const seconds = median(ourTimes.get(k)!);
          const gates = cell === 'lstm' ? 4 : 3;
          const flops = 2 * batch * 2 * hidden * gates * hidden * T * (mode === 'train' ? 3 : 1);
          const row: Row = { library: 'recurrent (CUDA)', cell, hidden, batch, mode, timestepSamplesPerSecond: (T * batch) / seconds, gflops: flops / seconds / 1e9, device };
          rows.push(row);
          const theirs = theirTimes.get(k);
          const cudnn = theirs ? (T * batch) / median(theirs) : NaN;
          if (theirs) rows.push({ library: 'cuDNN (PyTorch)', cell, hidden, batch, mode, timestepSamplesPerSecond: cudnn, gflops: flops / median(theirs) / 1e9, device });
          lines.push(`| ${cell.toUpperCase()} H=${hidden} ${mode} | ${batch} | ${Math.round(row.timestepSamplesPerSecond).toLocaleString('en-US')} | ${row.gflops.toFixed(1)} | ` +
            `${theirs ? Math.round(cudnn).toLocaleString('en-US') : 'n/a'} | ${theirs ? (row.timestepSamplesPerSecond / cudnn).toFixed(2) + 'x' : 'n/a'} |`);
        }
      }
    }
  }
  const out = process.env.RECURRENT_BENCH_OUT ?? __dirname;
  fs.writeFileSync(path.join(out, 'gpu-results.md'), lines.join('\n') + '\n');
  fs.writeFileSync(path.join(out, 'gpu-results.json'), JSON.stringify(rows, null, 1) + '\n');
  console.log(lines.join('\n'));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
