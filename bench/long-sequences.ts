/**
 * Linear cost in T, and memory flat with truncated BPTT.
 *
 * 1. The layer alone (C++ harness, bench/native/layer_bench.cc, both cores): LSTM training
 *    throughput at T = 32, 1,000 and 10,000 (B = 32, I = H), with the input-side GEMMs in chunks
 *    of time steps (the default) and in one piece per call (RECURRENT_TIME_CHUNK=1000000000, as
 *    before chunking). Rounds alternate; medians.
 * 2. fit() on one long stream with truncated BPTT (bpttSteps = 32, the state carried): a stream of
 *    10,000 steps and one of 100,000, same model; throughput and the resident set as the long run
 *    goes (sampled after every step). With truncated BPTT the memory does not depend on the
 *    stream's length.
 *
 *   npx tsx bench/long-sequences.ts [--rounds 3]
 * Writes bench/long-sequences-results.md and .json.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildHarness, median } from './harness';
import { SequenceModel, Tensor, backends, fit, seed } from '../lib/index';

const roundsArg = process.argv.indexOf('--rounds');
const rounds = roundsArg > 0 ? Number(process.argv[roundsArg + 1]) : 3;
const stepsList = [32, 1000, 10000];

interface LayerLine { hidden: number; steps: number; timestepSamplesPerSecond: number }

function harness(exe: string, job: string, chunked: boolean): LayerLine[] {
  const env = { ...process.env, ...(chunked ? {} : { RECURRENT_TIME_CHUNK: '1000000000' }) };
  const out = execFileSync(exe, [String(os.cpus().length), '--only', job, '--steps', stepsList.join(',')], { encoding: 'utf8', env, maxBuffer: 1 << 26 });
  return out.trim().split('\n').map((line) => JSON.parse(line) as LayerLine);
}

async function streamRun(length: number): Promise<{ seconds: number; rate: number; rssMB: number[] }> {
  seed(1);
  const features = 16;
  const hidden = 128;
  const stream = Tensor.randn([length, features]);
  const targets = Tensor.randn([length, 1]);
  const model = new SequenceModel({ cell: 'lstm', inputSize: features, hiddenSize: hidden, outputSize: 1, outputs: 'sequence' });
  const rss: number[] = [];
  const started = performance.now();
  await fit(model, { stream, targets }, {
    epochs: 1, batchSize: 32, bpttSteps: 32, shuffle: false,
    onBatchEnd: () => {
      rss.push(process.memoryUsage().rss / 2 ** 20);
    },
  });
  const seconds = (performance.now() - started) / 1000;
  return { seconds, rate: length / seconds, rssMB: rss };
}

async function main(): Promise<void> {
  const exe = buildHarness('layer_bench');
  const machine = `${os.cpus()[0].model.trim()} (${os.cpus().length} cores), ${os.platform()} ${os.arch()}, Node ${process.version}; ${backends().cpu.threads} threads`;
  const layer: Record<string, number[]> = {};
  for (let round = 0; round < rounds; ++round) {
    for (const job of ['lstm-128-train', 'lstm-512-train']) {
      for (const chunked of [true, false]) {
        for (const line of harness(exe, job, chunked)) {
          (layer[`${line.hidden}|${chunked}|${line.steps}`] ??= []).push(line.timestepSamplesPerSecond);
        }
      }
    }
    process.stderr.write(`layer round ${round + 1}/${rounds}\n`);
  }
  const short = await streamRun(10_000);
  const long = await streamRun(100_000);
  const k = (v: number) => (v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : `${(v / 1e3).toFixed(1)}k`);
  const lines = [
    '## Linear cost in T',
    '',
    `Machine: ${machine}. Rounds: ${rounds} (medians).`,
    '',
    '### The layer alone (C++ harness): LSTM training, B = 32, I = H, timestep-samples per second',
    '',
    `| H | input-side GEMMs | ${stepsList.map((t) => `T = ${t}`).join(' | ')} | T = ${stepsList[stepsList.length - 1]} vs T = 32 |`,
    `|---|---|${stepsList.map(() => '---').join('|')}|---|`,
  ];
  const rows: { hidden: number; chunked: boolean; rates: number[] }[] = [];
  for (const hidden of [128, 512]) {
    for (const chunked of [true, false]) {
      const rates = stepsList.map((t) => median(layer[`${hidden}|${chunked}|${t}`]));
      rows.push({ hidden, chunked, rates });
      const ratio = rates[rates.length - 1] / rates[0];
      lines.push(`| ${hidden} | ${chunked ? 'in chunks of steps (default)' : 'one piece per call'} | ${rates.map(k).join(' | ')} | ${ratio.toFixed(2)}x |`);
    }
  }
  const steady = long.rssMB.slice(Math.floor(long.rssMB.length / 10));
  lines.push('', '### fit() on one stream, truncated BPTT (bpttSteps = 32, batchSize = 32 parallel streams, LSTM 16 -> 128)', '',
    '| stream length | seconds | steps/s | resident set: first sample, last, largest (MB) |', '|---|---|---|---|',
    ...[['10,000', short], ['100,000', long]].map(([name, r]) => {
      const run = r as typeof short;
      return `| ${name} | ${run.seconds.toFixed(2)} | ${k(run.rate)} | ${run.rssMB[0]?.toFixed(0)}, ${run.rssMB[run.rssMB.length - 1]?.toFixed(0)}, ${Math.max(...run.rssMB).toFixed(0)} |`;
    }),
    '', `Over the 100,000-step run the resident set stays within ${(Math.max(...steady) - Math.min(...steady)).toFixed(0)} MB after the first tenth.`, '');
  const md = lines.join('\n');
  console.log(md);
  fs.writeFileSync(path.join(__dirname, 'long-sequences-results.md'), md);
  fs.writeFileSync(path.join(__dirname, 'long-sequences-results.json'), JSON.stringify({ machine, rounds, layer: rows, stream: { short, long } }, null, 2));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
