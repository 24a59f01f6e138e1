/**
 * Resident memory over long training runs, written four ways, side by side:
 *
 *   fit     fit() (each step in a scope(), native work on the worker thread)
 *   scoped  a manual loop, each step inside scope(): the reference for peak and speed
 *   sync    the same manual loop with no scope() and no dispose(): what the README's quick
 *           start turns into when a user writes a plain `for` loop
 *   async   the same, unscoped, each step in `await runAsync(...)` (native work on the worker
 *           thread, the event loop turning between steps)
 *
 * The model is the quick start's: an LSTM 2 -> 64 with a Linear head (SequenceModel, last
 * step), Adam, gradient clipping at 1, T = 100, B = 64. Each way runs in its own process
 * (so one's memory never shows in another's), for 10,000 steps by default, sampling the
 * resident set size every 500 steps; the peak is the kernel's maxRSS. Targets (issue 13):
 * RSS growth after step 1,000 below 5% for every way; the unscoped synchronous loop's peak
 * within 1.5x of the scoped loop's and its speed within 10% of it (measured apart: one process
 * alternating blocks of scoped and unscoped steps, medians); fit's growth under 5% in each of
 * its runs.
 *
 *   npm run memcheck                    (all four; fit three times; about 12 minutes on 2 cores)
 *   npm run memcheck -- --steps 2000    (shorter)
 *   npm run memcheck -- --only sync     (one way)
 *
 * Results go to bench/memory-results.md and .json. Node runs with --min-semi-space-size=16
 * (package.json): V8 otherwise doubles its young generation once, late in a run, and that
 * one-time step of about 8 MB reads as growth of a 100 MB process.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Adam, SequenceModel, Tensor, clipGradNorm, fit, mseLoss, runAsync, scope, seed } from '../lib/index';

type Way = 'fit' | 'scoped' | 'sync' | 'async' | 'speed';
const WAYS: Way[] = ['fit', 'scoped', 'sync', 'async'];
const T = 100;
const B = 64;
const SAMPLE_EVERY = 500;
const WARM_STEP = 1000;

interface Sample { step: number; rssMb: number; heapMb: number }
interface Report { way: Way; steps: number; samples: Sample[]; peakMb: number; msPerStep: number; growth: number }
interface SpeedReport { scopedMs: number; syncMs: number; rounds: number }

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function sample(step: number, into: Sample[]): void {
  const m = process.memoryUsage();
  into.push({ step, rssMb: m.rss / 2 ** 20, heapMb: m.heapTotal / 2 ** 20 });
}

/** The quick start model, its optimizer, and one training step of a manual loop on a fixed batch. */
function quickStart(): { model: SequenceModel; optimizer: Adam; step: () => void } {
  seed(1);
  const model = new SequenceModel({ cell: 'lstm', inputSize: 2, hiddenSize: 64, outputSize: 1, outputs: 'last' });
  const optimizer = new Adam(model.parameters(), { lr: 1e-3 });
  const params = model.parameters();
  const x = Tensor.randn([T, B, 2]);
  const y = Tensor.randn([B, 1]);
  const step = () => {
    const loss = mseLoss(model.forward(x).output, y);
    optimizer.zeroGrad();
    loss.backward();
    clipGradNorm(params, 1);
    optimizer.step();
  };
  return { model, optimizer, step };
}

/**
 * Speed, in one process: blocks of 100 steps alternating scoped and unscoped, so the machine's
 * drift over minutes falls on both alike; medians of the blocks' ms per step.
 */
function speed(rounds: number): void {
  const { step } = quickStart();
  const block = (scoped: boolean) => {
    const t0 = performance.now();
    for (let s = 0; s < 100; ++s) {
      if (scoped) scope(step);
      else step();
    }
    return (performance.now() - t0) / 100;
  };
  block(true);
  block(false);
  const scopedTimes: number[] = [];
  const syncTimes: number[] = [];
  for (let r = 0; r < rounds; ++r) {
    scopedTimes.push(block(true));
    syncTimes.push(block(false));
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  const report: SpeedReport = { scopedMs: median(scopedTimes), syncMs: median(syncTimes), rounds };
  console.log(JSON.stringify(report));
}

/** One way, in this process: trains and prints its report as JSON on the last line. */
async function child(way: Way, steps: number): Promise<void> {
  const { model, optimizer, step } = quickStart();
  const samples: Sample[] = [];
  let warmAt = 0;
  const mark = (step: number) => {
    if (step === WARM_STEP) warmAt = performance.now();
    if (step % SAMPLE_EVERY === 0) sample(step, samples);
  };

  if (way === 'fit') {
    const samplesPerEpoch = 64 * B;
    const data = { inputs: Tensor.randn([samplesPerEpoch, T, 2]), targets: Tensor.randn([samplesPerEpoch, 1]) };
    await fit(model, data, {
      epochs: Math.ceil(steps / (samplesPerEpoch / B)), batchSize: B, optimizer, clipGradNorm: 1,
      onBatchEnd: ({ step }) => mark(step),
    });
  } else {
    for (let s = 1; s <= steps; ++s) {
      if (way === 'scoped') scope(step);
      else if (way === 'sync') step();
      else await runAsync(step);
      mark(s);
    }
  }
  const elapsed = performance.now() - warmAt;
  const warm = samples.find((s) => s.step >= WARM_STEP) ?? samples[0];
  const last = samples[samples.length - 1];
  const report: Report = {
    way, steps, samples,
    peakMb: process.resourceUsage().maxRSS / 1024,
    msPerStep: elapsed / (steps - WARM_STEP),
    growth: (last.rssMb - warm.rssMb) / warm.rssMb,
  };
  console.log(JSON.stringify(report));
}

function runChild<R = Report>(way: Way, steps: number): R {
  const result = spawnSync(process.execPath, [...process.execArgv, __filename, '--child', way, '--steps', String(steps)], {
    encoding: 'utf8', maxBuffer: 64 * 2 ** 20,
  });
  if (result.status !== 0) throw new Error(`${way} failed (exit ${result.status}):\n${result.stderr}`);
  const lines = result.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as R;
}

function runWay(way: Way, steps: number): Report {
  const started = performance.now();
  const report = runChild(way, steps);
  console.log(`  ${way.padEnd(6)} ${((performance.now() - started) / 1000).toFixed(0)} s: RSS ${report.samples.find((s) => s.step >= WARM_STEP)?.rssMb.toFixed(1)} -> ` +
    `${report.samples[report.samples.length - 1].rssMb.toFixed(1)} MB (${(report.growth * 100).toFixed(1)}%), peak ${report.peakMb.toFixed(0)} MB, ${report.msPerStep.toFixed(2)} ms/step`);
  return report;
}

async function parent(): Promise<void> {
  const steps = Number(arg('steps') ?? 10_000);
  if (!Number.isInteger(steps) || steps < 2 * WARM_STEP) throw new RangeError(`--steps must be an integer >= ${2 * WARM_STEP}`);
  const only = arg('only') as Way | undefined;
  if (only !== undefined && !WAYS.includes(only)) throw new RangeError(`--only must be one of ${WAYS.join(', ')}`);
  const fitRuns = Number(arg('fit-runs') ?? 3);
  console.log(`memcheck: ${steps} steps each, LSTM 2 -> 64 + Linear, T = ${T}, B = ${B}; ${os.cpus()[0]?.model} x ${os.cpus().length}; node ${process.version} ${process.execArgv.filter((a) => a.startsWith('--')).join(' ')}`);
  const reports: Report[] = [];
  for (const way of only ? [only] : WAYS) {
    for (let run = 0; run < (way === 'fit' ? fitRuns : 1); ++run) reports.push(runWay(way, steps));
  }
  const rounds = Number(arg('speed-rounds') ?? 15);
  const speedReport = !only || only === 'sync' || only === 'scoped' ? runChild<SpeedReport>('speed', rounds) : null;
  if (speedReport) {
    console.log(`  speed  ${rounds} alternating rounds of 100 steps: scoped ${speedReport.scopedMs.toFixed(2)} ms/step, unscoped ${speedReport.syncMs.toFixed(2)} ms/step (medians)`);
  }

  const checks: { what: string; ok: boolean }[] = [];
  for (const r of reports) checks.push({ what: `${r.way}: RSS growth after step ${WARM_STEP} ${(r.growth * 100).toFixed(1)}% < 5%`, ok: r.growth < 0.05 });
  const scoped = reports.find((r) => r.way === 'scoped');
  const sync = reports.find((r) => r.way === 'sync');
  if (scoped && sync) {
    const peak = sync.peakMb / scoped.peakMb;
    checks.push({ what: `sync: peak RSS ${peak.toFixed(2)}x the scoped loop's (<= 1.5x)`, ok: peak <= 1.5 });
  }
  if (speedReport) {
    const ratio = speedReport.syncMs / speedReport.scopedMs;
    checks.push({ what: `unscoped loop: ${ratio.toFixed(2)}x the scoped loop's time per step, alternating in one process (<= 1.10x)`, ok: ratio <= 1.1 });
  }

  const table = [
    `| step | ${reports.map((r) => r.way).join(' | ')} |`,
    `|---|${reports.map(() => '---').join('|')}|`,
    ...reports[0].samples.map((s, i) => `| ${s.step} | ${reports.map((r) => r.samples[i]?.rssMb.toFixed(1) ?? '').join(' | ')} |`),
    `| growth after ${WARM_STEP} | ${reports.map((r) => `${(r.growth * 100).toFixed(1)}%`).join(' | ')} |`,
    `| peak RSS | ${reports.map((r) => r.peakMb.toFixed(0)).join(' | ')} |`,
    `| ms / step | ${reports.map((r) => r.msPerStep.toFixed(2)).join(' | ')} |`,
  ].join('\n');
  const speedLine = speedReport
    ? `Speed, alternating blocks of 100 steps in one process (${speedReport.rounds} rounds, medians): scoped ${speedReport.scopedMs.toFixed(2)} ms/step, ` +
      `unscoped ${speedReport.syncMs.toFixed(2)} ms/step. (The ms / step row above is each process's own average and drifts with the machine.)`
    : '';
  const md = [
    '# memcheck: resident memory (MB) over a long run',
    '',
    `${steps} steps of the quick start model (LSTM 2 -> 64 + Linear, Adam, clipGradNorm 1, T = ${T}, B = ${B}); ` +
      `each column its own process. ${os.cpus()[0]?.model}, ${os.cpus().length} cores, node ${process.version}, ${new Date().toISOString().slice(0, 10)}.`,
    '',
    table,
    '',
    speedLine,
    '',
    ...checks.map((c) => `- ${c.ok ? 'met' : 'NOT met'}: ${c.what}`),
    '',
  ].join('\n');
  console.log(`\n${md}`);
  if (!only) {
    fs.writeFileSync(path.join(__dirname, 'memory-results.md'), md);
    fs.writeFileSync(path.join(__dirname, 'memory-results.json'), `${JSON.stringify({ steps, reports, speed: speedReport, checks }, null, 1)}\n`);
  }
  if (checks.some((c) => !c.ok)) process.exitCode = 1;
}

const childWay = arg('child') as Way | undefined;
(childWay === 'speed' ? Promise.resolve(speed(Number(arg('steps')))) : childWay ? child(childWay, Number(arg('steps'))) : parent()).catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
