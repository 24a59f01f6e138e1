/**
 * BF16 matrix products on the CPU (setFloat32MatmulPrecision('medium')) against FP32:
 *
 * 1. Speed of one layer, T = 32, B = 32, I = H, training (forward + backward + Adam) and
 *    inference, through Node as fit() runs a step (in a scope); FP32 and BF16 alternate round by round
 *    in one process (these machines drift), medians of the rounds. Two threads, then one.
 * 2. Accuracy on the demo's character model (npm run demo: SOTU text, LSTM 2 x 192, embedding
 *    64, BPTT 64, B = 32, Adam 4e-3): the same seed and steps at FP32 and at BF16, validation
 *    bits per character after each epoch (target: within 1%).
 *
 *   npm run bench:bf16 [-- --epochs 3 --rounds 9]
 *
 * Results go to bench/bf16-results.md and .json.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Adam, CharLanguageModel, GRU, LSTM, RNN, Tensor, backends, backward, noGrad, scope, seed, setFloat32MatmulPrecision, setNumThreads } from '../lib/index';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const median = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  return s[(s.length - 1) >> 1];
};

interface SpeedRow { job: string; threads: number; fp32Ms: number; bf16Ms: number; speedup: number; fp32Gflops: number; bf16Gflops: number }

function speed(rounds: number): SpeedRow[] {
  const T = 32;
  const B = 32;
  const rows: SpeedRow[] = [];
  const jobs: { name: string; make: (h: number) => LSTM | GRU | RNN; gates: number; H: number }[] = [
    { name: 'LSTM H=128', make: (h) => new LSTM({ inputSize: h, hiddenSize: h }), gates: 4, H: 128 },
    { name: 'LSTM H=512', make: (h) => new LSTM({ inputSize: h, hiddenSize: h }), gates: 4, H: 512 },
    { name: 'GRU H=512', make: (h) => new GRU({ inputSize: h, hiddenSize: h }), gates: 3, H: 512 },
    { name: 'RNN H=512', make: (h) => new RNN({ inputSize: h, hiddenSize: h }), gates: 1, H: 512 },
  ];
  for (const threads of [os.availableParallelism(), 1]) {
    setNumThreads(threads);
    for (const job of jobs) {
      seed(1);
      const layer = job.make(job.H);
      const x = Tensor.randn([T, B, job.H]);
      const optimizer = new Adam(layer.parameters(), { lr: 1e-4 });
      const grad = Tensor.ones([T, B, job.H]);
      // a training step as fit() runs it: in a scope, the previous step's gradients disposed first
      const train = () => scope(() => {
        for (const p of layer.parameters()) p.grad?.dispose();
        layer.zeroGrad();
        backward([layer.forward(x).output], [grad]);
        optimizer.step();
        return null;
      });
      const infer = () => scope(() => noGrad(() => layer.forward(x).output.toArray()));
      const time = (fn: () => unknown, n: number) => {
        const started = performance.now();
        for (let i = 0; i < n; ++i) fn();
        return (performance.now() - started) / n;
      };
      const repeats = job.H >= 512 ? 4 : 20;
      for (const [kind, fn, passes] of [['train', train, 3], ['inference', infer, 1]] as const) {
        const fp32: number[] = [];
        const bf16: number[] = [];
        for (let r = 0; r < rounds; ++r) {
          setFloat32MatmulPrecision('highest');
          fn();
          fp32.push(time(fn, repeats));
          setFloat32MatmulPrecision('medium');
          fn();
          bf16.push(time(fn, repeats));
        }
        setFloat32MatmulPrecision('highest');
        const flops = 2 * passes * T * B * job.gates * job.H * 2 * job.H;
        const row: SpeedRow = {
          job: `${job.name} ${kind}`, threads, fp32Ms: median(fp32), bf16Ms: median(bf16), speedup: median(fp32) / median(bf16),
          fp32Gflops: flops / median(fp32) / 1e6, bf16Gflops: flops / median(bf16) / 1e6,
        };
        rows.push(row);
        console.log(`${row.job}, ${threads} thread(s): FP32 ${row.fp32Ms.toFixed(2)} ms (${row.fp32Gflops.toFixed(0)} GFLOP/s), ` +
          `BF16 ${row.bf16Ms.toFixed(2)} ms (${row.bf16Gflops.toFixed(0)}), ${row.speedup.toFixed(2)}x`);
      }
    }
  }
  setNumThreads(os.availableParallelism());
  return rows;
}

async function accuracy(epochs: number): Promise<{ precision: string; valBits: number[]; seconds: number }[]> {
  const text = fs.readFileSync(path.join(__dirname, '..', 'examples', 'data', 'sotu.txt'), 'utf8');
  const out = [];
  for (const precision of ['highest', 'medium'] as const) {
    setFloat32MatmulPrecision(precision);
    seed(1);
    const lm = new CharLanguageModel(text, { cell: 'lstm', hiddenSize: 192, numLayers: 2, embeddingDim: 64 });
    const valBits: number[] = [];
    const started = performance.now();
    await lm.train(text, { epochs, seed: 1, onEpochEnd: ({ valBitsPerChar }) => { valBits.push(valBitsPerChar!); } });
    const seconds = (performance.now() - started) / 1000;
    out.push({ precision, valBits, seconds });
    console.log(`char model at '${precision}': validation bits/char ${valBits.map((b) => b.toFixed(4)).join(', ')} (${seconds.toFixed(1)} s)`);
  }
  setFloat32MatmulPrecision('highest');
  return out;
}

/** ", family F model M" from /proc/cpuinfo (a virtual machine's model name can be generic), or "". */
function cpuFamilyModel(): string {
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const family = /^cpu family\s*:\s*(\d+)/m.exec(info)?.[1];
    const model = /^model\s*:\s*(\d+)/m.exec(info)?.[1];
    return family && model ? `, family ${family} model ${model}` : '';
  } catch {
    return '';
  }
}

async function main(): Promise<void> {
  const cpu = backends().cpu;
  if (!cpu.bf16) {
    console.log(`BF16 is not available here: ${cpu.bf16Reason}`);
    return;
  }
  const rows = speed(arg('rounds', 9));
  const curves = await accuracy(arg('epochs', 1));
  setFloat32MatmulPrecision('medium');
  const bf16Path = backends().cpu.matmul; // which BF16 path ran: 'bf16-amx' or 'bf16-avx512'
  setFloat32MatmulPrecision('highest');
  const machine = `${os.availableParallelism()} cores (${os.cpus()[0]?.model ?? 'unknown'}${cpuFamilyModel()}), ${cpu.isa}, BF16 on ${bf16Path}, Node ${process.version}`;
  const [fp32, bf16] = curves;
  const gap = bf16.valBits.map((b, i) => (b / fp32.valBits[i] - 1) * 100);
  const lines = [
    "# BF16 matrix products on the CPU (bench/bf16.ts)",
    '',
    `Machine: ${machine}. One layer, T = 32, B = 32, I = H; FP32 and BF16 alternate round by round, medians of ${arg('rounds', 9)} rounds.`,
    '',
    '| job | threads | FP32 ms | BF16 ms | BF16 speed-up | FP32 GFLOP/s | BF16 GFLOP/s |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.job} | ${r.threads} | ${r.fp32Ms.toFixed(2)} | ${r.bf16Ms.toFixed(2)} | ${r.speedup.toFixed(2)}x | ${r.fp32Gflops.toFixed(0)} | ${r.bf16Gflops.toFixed(0)} |`),
    '',
    `The demo's character model (SOTU, LSTM 2 x 192), same seed and steps: validation bits per character after each epoch.`,
    '',
    '| precision | bits/char per epoch | seconds |',
    '|---|---|---|',
    ...curves.map((c) => `| ${c.precision === 'highest' ? 'FP32' : 'BF16'} | ${c.valBits.map((b) => b.toFixed(4)).join(', ')} | ${c.seconds.toFixed(1)} |`),
    '',
    `BF16 - FP32: ${gap.map((g) => `${g >= 0 ? '+' : ''}${g.toFixed(2)}%`).join(', ')} (target: within 1%).`,
    '',
  ];
  fs.writeFileSync(path.join(__dirname, 'bf16-results.md'), lines.join('\n'));
  fs.writeFileSync(path.join(__dirname, 'bf16-results.json'), JSON.stringify({ machine, rows, curves }, null, 2));
  console.log(lines.join('\n'));
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
