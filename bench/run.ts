/**
 * Side-by-side training and inference throughput of recurrent layers: recurrent against
 * TensorFlow.js (cpu and wasm backends), brain.js and synaptic, in the same process.
 * Reports timestep-samples per second (T x B / s), GFLOP/s and the ratio to each peer,
 * as medians of repeated runs; writes bench/results.md, bench/results.json and bench/results.svg.
 * `npm run bench` then runs bench/native.ts: the layer alone against oneDNN, the GEMM against OpenBLAS.
 *
 *   npm run bench            (about 10 minutes on 2 cores: the JS peers are slow)
 *   npm run bench -- --quick (fewer repeats)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import { GRU, LSTM, RNN, Tensor, backward, backends, noGrad, scope } from '../lib/index';

const quick = process.argv.includes('--quick');
const T = 32;
const B = 32;

type Cell = 'lstm' | 'gru' | 'rnn';
const GATES: Record<Cell, number> = { lstm: 4, gru: 3, rnn: 1 };

interface Job {
  cell: Cell;
  hidden: number;
  mode: 'train' | 'inference';
}

const jobs: Job[] = [
  { cell: 'lstm', hidden: 128, mode: 'train' },
  { cell: 'lstm', hidden: 512, mode: 'train' },
  { cell: 'gru', hidden: 512, mode: 'train' },
  { cell: 'rnn', hidden: 512, mode: 'train' },
  { cell: 'lstm', hidden: 512, mode: 'inference' },
];

/** Median seconds of `fn` over repeats, within a time budget (at least `min` runs after one warm-up). */
function timeIt(fn: () => void, budgetSeconds: number, min = 3, warmup = true): number {
  if (warmup) fn();
  const times: number[] = [];
  const started = performance.now();
  while (times.length < min || (performance.now() - started) / 1000 < budgetSeconds) {
    const t0 = performance.now();
    fn();
    times.push((performance.now() - t0) / 1000);
    if (times.length >= 50) break;
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

function flops(job: Job, batch: number): number {
  // per step: 2 * B * (I + H) * G * H multiply-adds; training counts forward + 2x backward
  const perStep = 2 * batch * (job.hidden + job.hidden) * GATES[job.cell] * job.hidden;
  return (job.mode === 'train' ? 3 : 1) * perStep * T;
}

// ---------------------------------------------------------------------------

function benchRecurrent(job: Job): number {
  const H = job.hidden;
  const layer = job.cell === 'lstm' ? new LSTM({ inputSize: H, hiddenSize: H }) : job.cell === 'gru' ? new GRU({ inputSize: H, hiddenSize: H }) : new RNN({ inputSize: H, hiddenSize: H });
  const x = Tensor.randn([T, B, H]);
  const grad = Tensor.ones([T, B, H]);
  // a training step as fit() runs it: in a scope (the step's memory goes back to the cache
  // at once), the previous step's gradients disposed before the new ones are made
  const step = job.mode === 'train'
    ? () => scope(() => {
        for (const p of layer.parameters()) p.grad?.dispose();
        layer.zeroGrad();
        const { output } = layer.forward(x);
        backward([output], [grad]);
        return null;
      })
    : () => scope(() => noGrad(() => layer.forward(x).output.toArray()));
  return (T * B) / timeIt(step, quick ? 2 : 5, 5);
}

function tfLayer(job: Job): tfl.layers.Layer {
  const common = { units: job.hidden, returnSequences: true, kernelInitializer: 'glorotUniform', recurrentInitializer: 'glorotUniform' } as const;
  return job.cell === 'lstm' ? tfl.layers.lstm({ ...common, recurrentActivation: 'sigmoid' })
    : job.cell === 'gru' ? tfl.layers.gru({ ...common, recurrentActivation: 'sigmoid' })
      : tfl.layers.simpleRNN(common);
}

async function benchTfjs(job: Job, backend: 'cpu' | 'wasm'): Promise<number> {
  await tf.setBackend(backend);
  const layer = tfLayer(job);
  const x = tf.randomNormal([B, T, job.hidden]);
  layer.apply(x); // build
  const step = job.mode === 'train'
    ? () => tf.tidy(() => {
        const { grads } = tf.variableGrads(() => tf.sum(layer.apply(x) as tf.Tensor) as tf.Scalar, layer.trainableWeights.map((w) => (w as unknown as { val: tf.Variable }).val));
        Object.values(grads).forEach((g) => g.dataSync());
      })
    : () => tf.tidy(() => (layer.apply(x) as tf.Tensor).dataSync());
  const slow = job.hidden >= 512;
  const seconds = timeIt(step, quick ? 1 : slow ? 10 : 5, slow ? 1 : 3, !slow);
  x.dispose();
  return (T * B) / seconds;
}

/** brain.js: a character model (vocabulary 64, softmax head) trained one sequence at a time (B = 1). */
function benchBrain(job: Job): number {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const brain = require('brain.js');
  const Net = job.cell === 'lstm' ? brain.recurrent.LSTM : job.cell === 'gru' ? brain.recurrent.GRU : brain.recurrent.RNN;
  const alphabet = Array.from({ length: 64 }, (_, i) => String.fromCharCode(48 + i));
  let seed = 1;
  const rand = () => ((seed = (seed * 48271) % 0x7fffffff) / 0x7fffffff);
  const text = () => Array.from({ length: T }, () => alphabet[Math.floor(rand() * 64)]).join('');
  const net = new Net({ hiddenLayers: [job.hidden], inputSize: 64, outputSize: 64 });
  const sequences = Array.from({ length: quick ? 2 : 4 }, text);
  const initial = [alphabet.join(''), ...sequences];
  net.train(initial, { iterations: 1, log: false }); // builds the model and vocabulary
  if (job.mode === 'train') {
    const seconds = timeIt(() => net.train(sequences, { iterations: 1, log: false }), quick ? 1 : 5, 1, false);
    return (sequences.length * T) / seconds;
  }
  const seconds = timeIt(() => net.run(sequences[0].slice(0, T - 1)), quick ? 1 : 5, 1, false);
  return T / seconds;
}

/** synaptic: LSTM built neuron by neuron, one time step and one sample at a time (B = 1). */
function benchSynaptic(job: Job): number | null {
  if (job.cell !== 'lstm' || job.hidden > 128) return null; // building a 512-unit synaptic LSTM takes minutes
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const synaptic = require('synaptic');
  const net = new synaptic.Architect.LSTM(64, job.hidden, 64);
  const input = Array.from({ length: 64 }, (_, i) => (i === 3 ? 1 : 0));
  const step = () => {
    for (let t = 0; t < T; ++t) {
      net.activate(input);
      if (job.mode === 'train') net.propagate(0.1, input);
    }
  };
  return T / timeIt(step, quick ? 1 : 4, 1, false);
}

/** A peer's result, or null where it cannot run the job (it throws, e.g. diverges). */
function attempt(fn: () => number): number | null {
  try {
    return fn();
  } catch (error) {
    console.log(`  (skipped: ${(error as Error).message.split('\n')[0]})`);
    return null;
  }
}

function rate(v: number): string {
  return v >= 100 ? Math.round(v).toLocaleString('en-US') : v >= 10 ? v.toFixed(1) : v.toPrecision(2);
}

// ---------------------------------------------------------------------------

interface Row {
  job: Job;
  ours: number;
  peers: Record<string, number | null>;
}

async function main(): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const wasm = require('@tensorflow/tfjs-backend-wasm');
  wasm.setWasmPaths(path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')), '/'));
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const machine = `${cpu}, ${os.cpus().length} cores, Node ${process.version}, recurrent GEMM ISA ${backends().cpu.isa}, ${backends().cpu.threads} thread(s)`;
  console.log(`machine: ${machine}`);
  console.log(`T = ${T}, B = ${B}, I = H; timestep-samples per second (T x B / s), medians\n`);
  const rows: Row[] = [];
  for (const job of jobs) {
    const name = `${job.cell.toUpperCase()} H=${job.hidden} ${job.mode}`;
    const ours = benchRecurrent(job);
    const peers: Record<string, number | null> = {};
    peers['tfjs cpu'] = await benchTfjs(job, 'cpu');
    peers['tfjs wasm'] = await benchTfjs(job, 'wasm');
    peers['brain.js (B=1)'] = attempt(() => benchBrain(job));
    peers['synaptic (B=1)'] = benchSynaptic(job);
    rows.push({ job, ours, peers });
    const gflops = (flops(job, B) * ours) / (T * B) / 1e9;
    const parts = Object.entries(peers).map(([k, v]) => `${k} ${v === null ? '-' : `${rate(v)} (${(ours / v).toFixed(0)}x)`}`);
    console.log(`${name.padEnd(24)} recurrent ${rate(ours)} (${gflops.toFixed(1)} GFLOP/s) | ${parts.join(' | ')}`);
  }

  const peerNames = Object.keys(rows[0].peers);
  const lines = [
    `# Benchmark: recurrent layers in Node.js`,
    '',
    `Machine: ${machine}. T = ${T}, B = ${B}, I = H, one layer; training is forward + backward. ` +
      'Numbers are timestep-samples per second (T x B / s), medians of repeated runs in one process; ' +
      'in parentheses, how many times faster recurrent is. brain.js and synaptic train one sequence at a time (B = 1) ' +
      'on a vocabulary-64 character model; TensorFlow.js runs the same layer shapes as recurrent.',
    '',
    `| job | recurrent | GFLOP/s | ${peerNames.join(' | ')} |`,
    `|---|---|---|${peerNames.map(() => '---').join('|')}|`,
    ...rows.map((r) => {
      const g = (flops(r.job, B) * r.ours) / (T * B) / 1e9;
      return `| ${r.job.cell.toUpperCase()} H=${r.job.hidden} ${r.job.mode} | ${rate(r.ours)} | ${g.toFixed(1)} | ` +
        peerNames.map((p) => (r.peers[p] ? `${rate(r.peers[p]!)} (${(r.ours / r.peers[p]!).toFixed(0)}x)` : '-')).join(' | ') + ' |';
    }),
    '',
  ];
  fs.writeFileSync(path.join(__dirname, 'results.md'), lines.join('\n'));
  fs.writeFileSync(path.join(__dirname, 'results.json'), JSON.stringify({ machine, T, B, rows }, null, 2) + '\n');
  const vega = await import('vega');
  const vegaLite = await import('vega-lite');
  const values = rows.flatMap((r) => [
    { job: `${r.job.cell.toUpperCase()} ${r.job.hidden} ${r.job.mode}`, library: 'recurrent', value: r.ours },
    ...peerNames.filter((p) => r.peers[p]).map((p) => ({ job: `${r.job.cell.toUpperCase()} ${r.job.hidden} ${r.job.mode}`, library: p, value: r.peers[p]! })),
  ]);
  const spec = vegaLite.compile({
    title: 'timestep-samples per second (log scale)', data: { values }, mark: 'bar', width: 120, height: 220,
    encoding: {
      column: { field: 'job', type: 'nominal', title: null },
      x: { field: 'library', type: 'nominal', axis: { labelAngle: -45 }, title: null },
      y: { field: 'value', type: 'quantitative', scale: { type: 'log' }, title: 'timestep-samples/s' },
      color: { field: 'library', type: 'nominal' },
    },
  } as never).spec;
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  fs.writeFileSync(path.join(__dirname, 'results.svg'), await view.toSVG());
  console.log('\nwrote bench/results.md, bench/results.json and bench/results.svg');
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
