/**
 * Data-parallel training on this machine: steps per second and scaling efficiency for 1, 2
 * (and, with --ranks 1,2,4, more) processes, and the communication time per step.
 *
 * The model is an LSTM with I = H = 512 and a Linear head (2.1M parameters: 8.4 MB of
 * gradients all-reduced every step), trained by fit({ distributed: true }) with Adam at
 * T = 32 and B = 32 sequences per rank (weak scaling: the global batch grows with the ranks).
 * Each world size is one `recurrent launch -n W` job (Open MPI, shared memory); every rank's
 * CPU kernels get cores / W threads. Per job:
 *   - ms per step: the median over the timed steps (after warm-up) of rank 0's step times;
 *   - samples/s: global (B x W per step);
 *   - efficiency: samples/s at W over W x samples/s at 1 (1.0 = perfect; the cores are shared, so
 *     on a 2-core machine 2 ranks with 1 thread each compete with 1 rank with 2 threads);
 *   - all-reduce ms: the median time of allReduce of 8.4 MB alone (what a step would wait for
 *     without any overlap), and the step's cost over the 1-rank step time.
 *
 *   npx tsx bench/distributed.ts [--ranks 1,2] [--steps 30]
 *
 * Results go to bench/distributed-results.md and .json.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Adam, SequenceModel, Tensor, allReduce, backends, barrier, fit, initDistributed, seed } from '../lib/index';

const T = 32;
const B = 32;
const H = 512;
const I = 512;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

interface RankReport {
  worldSize: number;
  threads: number;
  msPerStep: number;
  allReduceMs: number;
  gradientMb: number;
  steps: number;
}

/** One rank of a job: fit for `steps` steps, then the all-reduce alone. */
async function rank(out: string, steps: number): Promise<void> {
  const { rank: me, worldSize } = initDistributed();
  seed(1);
  const model = new SequenceModel({ cell: 'lstm', inputSize: I, hiddenSize: H, outputSize: 16, outputs: 'last' });
  const N = B * steps;
  const inputs = Tensor.randn([N, T, I]);
  const targets = Tensor.randn([N, 16]);
  const times: number[] = [];
  let last = performance.now();
  // every rank holds the same data here; fit gives each rank its own share of it, so each rank
  // trains N / worldSize samples: repeat the data so that every rank makes `steps` steps
  const repeated = worldSize === 1 ? { inputs, targets } : {
    inputs: Tensor.concat(Array(worldSize).fill(inputs), 0),
    targets: Tensor.concat(Array(worldSize).fill(targets), 0),
  };
  await fit(model, repeated, {
    epochs: 1, batchSize: B, shuffle: false, distributed: true, seed: 1,
    optimizer: new Adam(model.parameters(), { lr: 1e-4 }),
    onBatchEnd: () => {
      const now = performance.now();
      times.push(now - last);
      last = now;
    },
  });
  const gradients = model.parameters().reduce((n, p) => n + p.size, 0);
  const buffer = Tensor.ones([gradients]);
  const reduceTimes: number[] = [];
  for (let i = 0; i < 12; ++i) {
    barrier();
    const started = performance.now();
    allReduce(buffer, 'mean');
    reduceTimes.push(performance.now() - started);
  }
  if (me === 0) {
    const report: RankReport = {
      worldSize, threads: backends().cpu.threads, msPerStep: median(times.slice(3)),
      allReduceMs: median(reduceTimes.slice(2)), gradientMb: (gradients * 4) / 2 ** 20, steps: times.length,
    };
    fs.writeFileSync(out, JSON.stringify(report));
  }
}

function orchestrate(): void {
  const ranks = (arg('ranks') ?? '1,2').split(',').map(Number);
  const steps = Number(arg('steps') ?? 30);
  const root = path.join(__dirname, '..');
  const reports: (RankReport & { samplesPerSecond: number; efficiency: number })[] = [];
  for (const n of ranks) {
    const out = path.join(os.tmpdir(), `recurrent-bench-ddp-${n}.json`);
    fs.rmSync(out, { force: true });
    const cli = "require('./lib/cli').main([process.argv[0], 'recurrent', ...process.argv.slice(1)]).catch((e) => { console.error(e.message); process.exitCode = 1; })";
    const r = spawnSync(process.execPath, ['--require', 'tsx/cjs', '-e', cli, '--', 'launch', '-n', String(n), '--require', 'tsx/cjs', __filename, '--rank', out, String(steps)], {
      cwd: root, stdio: 'inherit',
    });
    if (r.status !== 0) throw new Error(`the ${n}-rank job failed (exit ${r.status})`);
    const report = JSON.parse(fs.readFileSync(out, 'utf8')) as RankReport;
    const samplesPerSecond = (B * n * 1000) / report.msPerStep;
    const efficiency = reports.length ? samplesPerSecond / (n * reports[0].samplesPerSecond / reports[0].worldSize) : 1;
    reports.push({ ...report, samplesPerSecond, efficiency });
    console.log(`${n} rank(s), ${report.threads} thread(s) each: ${report.msPerStep.toFixed(1)} ms/step, ${samplesPerSecond.toFixed(0)} samples/s, ` +
      `efficiency ${(efficiency * 100).toFixed(0)}%, all-reduce of ${report.gradientMb.toFixed(1)} MB alone ${report.allReduceMs.toFixed(2)} ms`);
  }
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const machine = `${os.cpus().length} cores (${cpu}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${backends().distributed.engine ?? 'no MPI'}`;
  const lines = [
    '# Data-parallel training on one machine (bench/distributed.ts)',
    '',
    `Machine: ${machine}. LSTM ${I} -> ${H} + Linear (${reports[0].gradientMb.toFixed(1)} MB of gradients), Adam, T = ${T}, B = ${B} per rank, fit({ distributed: true }), medians over ${steps - 3} steps.`,
    '',
    '| ranks | threads per rank | ms per step | samples/s (global) | scaling efficiency | all-reduce of the gradients alone (ms) | share of a step |',
    '|---|---|---|---|---|---|---|',
    ...reports.map((r) => `| ${r.worldSize} | ${r.threads} | ${r.msPerStep.toFixed(1)} | ${r.samplesPerSecond.toFixed(0)} | ${(r.efficiency * 100).toFixed(0)}% | ${r.worldSize > 1 ? r.allReduceMs.toFixed(2) : '-'} | ${r.worldSize > 1 ? ((r.allReduceMs / r.msPerStep) * 100).toFixed(0) + '%' : '-'} |`),
    '',
  ];
  fs.writeFileSync(path.join(__dirname, 'distributed-results.md'), lines.join('\n'));
  fs.writeFileSync(path.join(__dirname, 'distributed-results.json'), JSON.stringify({ machine, T, B, I, H, steps, reports }, null, 2));
  console.log(lines.join('\n'));
}

if (process.argv.includes('--rank')) {
  const i = process.argv.indexOf('--rank');
  rank(process.argv[i + 1], Number(process.argv[i + 2])).catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
} else {
  orchestrate();
}
