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
 *   - efficiency: samples/s of W ranks over W x samples/s of 1 rank with as many threads as each
 *     of them (1.0 = perfect: the cost of communication, of the step's all-reduce waits and of
 *     ranks sharing memory bandwidth); and the speed-up over 1 rank using all the cores;
 *   - all-reduce ms: the median time of allReduce of 8.4 MB alone (what a step would wait for
 *     without any overlap);
 *   - alone together: W independent single-process runs at the same time (no MPI), each with the
 *     same threads as a rank: what sharing the machine's caches and memory costs by itself, so
 *     that the step time of W ranks over it is the cost of communication and synchronization.
 *
 *   npm run bench:distributed [-- --ranks 1,2,4 --steps 30]
 *
 * Results go to bench/distributed-results.md and .json.
 */
import { spawn, spawnSync } from 'node:child_process';
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

/** W single processes (no launcher) training at once; the median of their step times. */
async function aloneTogether(n: number, threads: number, steps: number, root: string): Promise<number> {
  const outs = [...Array(n).keys()].map((i) => path.join(os.tmpdir(), `recurrent-bench-alone-${n}-${i}.json`));
  await Promise.all(outs.map((out) => new Promise<void>((resolve, reject) => {
    fs.rmSync(out, { force: true });
    const child = spawn(process.execPath, ['--require', 'tsx/cjs', __filename, '--rank', out, String(steps)], {
      cwd: root, stdio: 'inherit', env: { ...process.env, RECURRENT_NUM_THREADS: String(threads) },
    });
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`an independent run failed (exit ${code})`))));
  })));
  return median(outs.map((out) => (JSON.parse(fs.readFileSync(out, 'utf8')) as RankReport).msPerStep));
}

async function orchestrate(): Promise<void> {
  const ranks = (arg('ranks') ?? '1,2').split(',').map(Number);
  const steps = Number(arg('steps') ?? 30);
  const root = path.join(__dirname, '..');
  const cores = os.availableParallelism();
  const reports: (RankReport & { samplesPerSecond: number; efficiency: number; speedup: number; aloneMs: number | null })[] = [];
  // every world size with cores / W threads per rank, and 1 rank with each of those thread counts
  const jobs: { n: number; threads: number }[] = [];
  for (const n of ranks) {
    const threads = Math.max(1, Math.floor(cores / n));
    if (n > 1 && !jobs.some((j) => j.n === 1 && j.threads === threads)) jobs.push({ n: 1, threads });
    if (!jobs.some((j) => j.n === n && j.threads === threads)) jobs.push({ n, threads });
  }
  jobs.sort((a, b) => a.n - b.n || b.threads - a.threads);
  for (const { n, threads } of jobs) {
    const out = path.join(os.tmpdir(), `recurrent-bench-ddp-${n}.json`);
    fs.rmSync(out, { force: true });
    const cli = "require('./lib/apps/cli').main([process.argv[0], 'recurrent', ...process.argv.slice(1)]).catch((e) => { console.error(e.message); process.exitCode = 1; })";
    const r = spawnSync(process.execPath, ['--require', 'tsx/cjs', '-e', cli, '--', 'launch', '-n', String(n), '--threads', String(threads), '--require', 'tsx/cjs', __filename, '--rank', out, String(steps)], {
      cwd: root, stdio: 'inherit',
    });
    if (r.status !== 0) throw new Error(`the ${n}-rank job failed (exit ${r.status})`);
    const report = JSON.parse(fs.readFileSync(out, 'utf8')) as RankReport;
    const samplesPerSecond = (B * n * 1000) / report.msPerStep;
    const single = reports.find((q) => q.worldSize === 1 && q.threads === report.threads);
    const allCores = reports.find((q) => q.worldSize === 1 && q.threads === Math.max(...jobs.map((j) => j.threads)));
    const efficiency = single ? samplesPerSecond / (n * single.samplesPerSecond) : 1;
    const speedup = allCores ? samplesPerSecond / allCores.samplesPerSecond : 1;
    const aloneMs = n > 1 ? await aloneTogether(n, threads, steps, root) : null;
    reports.push({ ...report, samplesPerSecond, efficiency, speedup, aloneMs });
    console.log(`${n} rank(s), ${report.threads} thread(s) each: ${report.msPerStep.toFixed(1)} ms/step, ${samplesPerSecond.toFixed(0)} samples/s, ` +
      `efficiency ${(efficiency * 100).toFixed(0)}%, speed-up ${speedup.toFixed(2)}x, all-reduce of ${report.gradientMb.toFixed(1)} MB alone ${report.allReduceMs.toFixed(2)} ms` +
      (aloneMs ? `, ${n} independent processes at once: ${aloneMs.toFixed(1)} ms/step` : ''));
  }
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const machine = `${os.cpus().length} cores (${cpu}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${backends().distributed.engine ?? 'no MPI'}`;
  const lines = [
    '# Data-parallel training on one machine (bench/distributed.ts)',
    '',
    `Machine: ${machine}. LSTM ${I} -> ${H} + Linear (${reports[0].gradientMb.toFixed(1)} MB of gradients), Adam, T = ${T}, B = ${B} per rank, fit({ distributed: true }), medians over ${steps - 3} steps.`,
    '',
    '| ranks | threads per rank | ms per step | samples/s (global) | scaling efficiency (vs 1 rank, same threads) | speed-up over 1 rank on all cores | all-reduce of the gradients alone (ms) | as many independent processes at once (ms per step) | communication and synchronization (step over that) |',
    '|---|---|---|---|---|---|---|---|---|',
    ...reports.map((r) => `| ${r.worldSize} | ${r.threads} | ${r.msPerStep.toFixed(1)} | ${r.samplesPerSecond.toFixed(0)} | ${r.worldSize > 1 ? (r.efficiency * 100).toFixed(0) + '%' : '-'} | ${r.speedup.toFixed(2)}x | ${r.worldSize > 1 ? r.allReduceMs.toFixed(2) : '-'} | ${r.aloneMs ? r.aloneMs.toFixed(1) : '-'} | ${r.aloneMs ? '+' + ((r.msPerStep / r.aloneMs - 1) * 100).toFixed(1) + '%' : '-'} |`),
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
  orchestrate().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
}
