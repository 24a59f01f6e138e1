/**
 * What Node costs on top of the kernels: one recurrent layer (T = 32, B = 32, I = H) timed in the
 * C++ harness (bench/native/layer_bench.cc: layer_forward_cpu + layer_backward_cpu on buffers it
 * allocated once) and through Node, in the same run, rounds alternating:
 *   - a user's loop: forward, backward with the output's gradient given, parameters' grads
 *     cleared each step (synchronous calls);
 *   - as fit runs it: the same step inside runAsync (validated and queued on the main thread,
 *     run by the worker thread) and scope().
 * Both threads; medians over rounds of medians over steps.
 *
 *   npx tsx bench/node-overhead.ts [--rounds 5]
 * Writes bench/node-overhead-results.md and .json.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildHarness, median } from './harness';
import { GRU, LSTM, Tensor, backward, backends, noGrad, runAsync, scope, seed } from '../lib/index';

const roundsArg = process.argv.indexOf('--rounds');
const rounds = roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : 5;
const T = 32;
const B = 32;

interface Job { cell: 'lstm' | 'gru'; hidden: number; train: boolean }
const jobs: Job[] = [
  { cell: 'lstm', hidden: 128, train: true },
  { cell: 'lstm', hidden: 512, train: true },
  { cell: 'gru', hidden: 512, train: true },
  { cell: 'lstm', hidden: 128, train: false },
  { cell: 'lstm', hidden: 512, train: false },
];
const jobName = (j: Job) => `${j.cell}-${j.hidden}-${j.train ? 'train' : 'inference'}`;

function harnessSeconds(exe: string, job: Job, threads: number): number {
  const out = execFileSync(exe, [String(threads), '--only', jobName(job)], { encoding: 'utf8' });
  return (JSON.parse(out.trim().split('\n')[0]) as { seconds: number }).seconds;
}

/**
 * Median seconds per step of `step`: at least 15 steps and 0.5 s, after a warm-up of 0.5 s and 30
 * steps (a process's first steps are slower until its memory cache and the collector settle).
 */
async function time(step: () => unknown): Promise<number> {
  const warm = performance.now();
  for (let i = 0; i < 30 || performance.now() - warm < 500; ++i) await step();
  const samples: number[] = [];
  const started = performance.now();
  while (samples.length < 15 || performance.now() - started < 500) {
    const t = performance.now();
    await step();
    samples.push((performance.now() - t) / 1000);
  }
  return median(samples);
}

function nodeSteps(job: Job): { user: () => unknown; fit: () => Promise<unknown> } {
  seed(1);
  const Layer = job.cell === 'lstm' ? LSTM : GRU;
  const layer = new Layer({ inputSize: job.hidden, hiddenSize: job.hidden });
  const params = layer.parameters();
  const x = Tensor.rand([T, B, job.hidden], { low: -0.1, high: 0.1 });
  const dy = Tensor.rand([T, B, job.hidden], { low: -0.1, high: 0.1 });
  const step = () => {
    if (!job.train) return noGrad(() => layer.forward(x).output);
    for (const p of params) p.grad = null;
    const y = layer.forward(x).output;
    backward([y], [dy]);
    return y;
  };
  // read one value back so that the queued work has run when the step ends
  const user = () => step().reshape([-1]).slice(0, 0, 1).item();
  const fit = () => runAsync(() => scope(() => step().reshape([-1]).slice(0, 0, 1))).then((t) => t.item());
  return { user, fit };
}

async function main(): Promise<void> {
  const exe = buildHarness('layer_bench');
  const threads = backends().cpu.threads;
  const machine = `${os.cpus()[0].model.trim()} (${os.cpus().length} cores), ${os.platform()} ${os.arch()}, Node ${process.version}`;
  const results: Record<string, { harness: number[]; user: number[]; fit: number[] }> = {};
  for (let round = 0; round < rounds; ++round) {
    for (const job of jobs) {
      const r = (results[jobName(job)] ??= { harness: [], user: [], fit: [] });
      r.harness.push(harnessSeconds(exe, job, threads));
      // each way in a block of its own (a loop is one or the other), in turns first
      const steps = nodeSteps(job);
      if (round % 2 === 0) {
        r.user.push(await time(steps.user));
        r.fit.push(await time(steps.fit));
      } else {
        r.fit.push(await time(steps.fit));
        r.user.push(await time(steps.user));
      }
    }
    process.stderr.write(`round ${round + 1}/${rounds}\n`);
  }
  const rows = jobs.map((job) => {
    const r = results[jobName(job)];
    const [harness, user, fit] = [median(r.harness), median(r.user), median(r.fit)];
    return { job: jobName(job), harness, user, fit, userOverHarness: user / harness, fitOverHarness: fit / harness };
  });
  const ms = (s: number) => `${(s * 1000).toFixed(2)} ms`;
  const pct = (ratio: number) => `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(1)}%`;
  const md = [
    '## Node against the C++ harness (one layer, T = 32, B = 32, I = H)',
    '',
    `Machine: ${machine}; ${threads} threads. Medians of ${rounds} alternating rounds. "user's loop": forward and backward(` +
      "[y], [dy]) as plain calls; \"as fit runs it\": the same inside runAsync and scope(). Training = forward + backward; inference: forward under noGrad.",
    '',
    "| job | C++ harness | user's loop | vs harness | as fit runs it | vs harness |",
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.job} | ${ms(r.harness)} | ${ms(r.user)} | ${pct(r.userOverHarness)} | ${ms(r.fit)} | ${pct(r.fitOverHarness)} |`),
    '',
  ].join('\n');
  console.log(md);
  fs.writeFileSync(path.join(__dirname, 'node-overhead-results.md'), md);
  fs.writeFileSync(path.join(__dirname, 'node-overhead-results.json'), JSON.stringify({ machine, threads, rounds, rows }, null, 2));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
