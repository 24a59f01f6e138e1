/**
 * Inference against onnxruntime-node on the same model: each model is exported with
 * exportOnnxBuffer(model, { stateInputs: true }) and run by onnxruntime-node from those bytes,
 * beside our forward() under noGrad, in one process, rounds alternating, medians of medians:
 *   - LSTM, GRU and tanh RNN; I = 64; B = 1, 8, 32, 128; T = 1, 32, 100; H = 128, 256, 512; one and
 *     two layers; on 1 and 2 threads (setNumThreads / intraOpNumThreads);
 *   - generate(): characters per second of CharLanguageModel with the demo's 2 x 192 LSTM on one
 *     thread, and the same loop (state in, logits out, one character at a time) through
 *     onnxruntime-node on the exported file;
 *   - a training step at B = 1 (LSTM, T = 32, H = 128, Adam), steps per second.
 * Outputs are compared once per shape (max |difference|), so both run the same model.
 *
 *   npm run bench:ort [-- --rounds 3] [--quick]      (--quick: B = 1 and 32, T = 1 and 32, H = 256)
 *   A part of the grid: --cells lstm --layers 1 --hiddens 128,512 --batches 8,32 --steps 32
 *   --threads 1,2; --grid-only skips generate() and training and prints instead of writing files;
 *   --loops-only runs generate() and training alone (printed). Both run before the grid.
 * Writes bench/onnxruntime-results.md and .json (the whole run only).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { describeMachine, median, root } from './harness';
import {
  Adam, CharLanguageModel, GRU, LSTM, RNN, Tensor, backward, exportOnnxBuffer, noGrad, seed, setNumThreads,
} from '../lib/index';

const argv = process.argv.slice(2);
const roundsAt = argv.indexOf('--rounds');
const rounds = roundsAt >= 0 ? Number(argv[roundsAt + 1]) : 3;
const quick = argv.includes('--quick');
/** `--name a,b,c`: a subset of the grid (numbers or cell names), else `all`. */
function pick<T extends string | number>(name: string, all: readonly T[]): T[] {
  const at = argv.indexOf(`--${name}`);
  if (at < 0) return [...all];
  const wanted = argv[at + 1].split(',');
  const chosen = all.filter((value) => wanted.includes(String(value)));
  if (chosen.length !== wanted.length) throw new Error(`--${name} ${argv[at + 1]}: expected some of ${all.join(', ')}`);
  return chosen;
}
const I = 64;
const cells = pick('cells', ['lstm', 'gru', 'rnn'] as const);
const batches = pick('batches', quick ? [1, 32] : [1, 8, 32, 128]);
const steps = pick('steps', quick ? [1, 32] : [1, 32, 100]);
const hiddens = pick('hiddens', quick ? [256] : [128, 256, 512]);
const layerCounts = pick('layers', [1, 2]);
const threadCounts = pick('threads', [1, 2]);
// a part of the grid, or --grid-only: the shapes alone, printed, nothing written
const gridOnly = argv.includes('--grid-only') || ['cells', 'batches', 'steps', 'hiddens', 'layers', 'threads'].some((name) => argv.includes(`--${name}`));
const loopsOnly = argv.includes('--loops-only');

type Cell = (typeof cells)[number];
type Layer = LSTM | GRU | RNN;

/**
 * Waits until this process is idle: both libraries' worker threads spin a while after a call (ours
 * about 2 ms; onnxruntime-node's intra-op pool 60-90 ms here, measured with process.cpuUsage()), and
 * on a machine with few cores the other library's spinning threads would take this one's cores: a
 * fixed 20 ms pause left two-thread rows of ours 2-60x slow right after onnxruntime. At least 20 ms,
 * then until a 5 ms window uses under 10% of a core (at most 1 s).
 */
async function quiet(): Promise<void> {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  await sleep(20);
  const started = performance.now();
  while (performance.now() - started < 1000) {
    const before = process.cpuUsage();
    const t = performance.now();
    await sleep(5);
    const used = process.cpuUsage(before);
    if ((used.user + used.system) / 1000 < 0.1 * (performance.now() - t)) return;
  }
}

/** Median seconds of one call of `fn`: rounds of at least 2 calls and 50 ms, the median call of each, on a quiet process. */
async function timeRound(fn: () => unknown | Promise<unknown>): Promise<number> {
  await quiet();
  await fn();
  const samples: number[] = [];
  const started = performance.now();
  while (samples.length < 2 || performance.now() - started < 50) {
    const t = performance.now();
    await fn();
    samples.push((performance.now() - t) / 1000);
  }
  return median(samples);
}

function machine(): string {
  return `${describeMachine()}, onnxruntime-node ${require('onnxruntime-node/package.json').version}`;
}

function makeLayer(cell: Cell, H: number, L: number): Layer {
  const options = { inputSize: I, hiddenSize: H, numLayers: L };
  const layer = cell === 'lstm' ? new LSTM(options) : cell === 'gru' ? new GRU(options) : new RNN(options);
  layer.eval();
  return layer;
}

interface Row {
  cell: Cell; layers: number; hidden: number; batch: number; steps: number; threads: number;
  oursMicros: number; ortMicros: number; ratio: number; maxDiff: number;
  /** T = 1: step(x, state), the API for step-by-step inference, and onnxruntime's time over it */
  stepMicros: number | null; stepRatio: number | null;
}

async function compareShapes(rows: Row[]): Promise<void> {
  for (const cell of cells) {
    for (const L of layerCounts) {
      for (const H of hiddens) {
        seed(1);
        const layer = makeLayer(cell, H, L);
        const bytes = exportOnnxBuffer(layer, { stateInputs: true });
        const sessions = new Map<number, ort.InferenceSession>();
        for (const threads of threadCounts) {
          sessions.set(threads, await ort.InferenceSession.create(bytes, {
            intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', logSeverityLevel: 3,
          }));
        }
        for (const B of batches) {
          for (const T of steps) {
            const x = Tensor.randn([T, B, I]);
            const state = Tensor.randn([L, B, H]).mul(0.5);
            const cellState = cell === 'lstm' ? Tensor.randn([L, B, H]).mul(0.5) : null;
            const feeds: Record<string, ort.Tensor> = {
              input: new ort.Tensor('float32', x.toArray(), [T, B, I]),
              h0: new ort.Tensor('float32', state.toArray(), [L, B, H]),
              ...(cellState ? { c0: new ort.Tensor('float32', cellState.toArray(), [L, B, H]) } : {}),
            };
            const options = { h0: state, ...(cellState ? { c0: cellState } : {}) };
            // step(): the same state, updated in place (the values do not matter for the time)
            const stepState = { h: Tensor.from(state.toArray(), state.shape), ...(cellState ? { c: Tensor.from(cellState.toArray(), cellState.shape) } : {}) };
            const stepInput = x.select(0, 0);
            const stepOut = Tensor.empty([B, H]);
            const stepped = () => layer.step(stepInput, stepState, { out: stepOut });
            const ours = () => noGrad(() => {
              const out = layer.forward(x, options);
              out.output.dispose();
              out.h.dispose();
              if ('c' in out) (out as { c: Tensor }).c.dispose();
            });
            for (const threads of threadCounts) {
              setNumThreads(threads);
              const session = sessions.get(threads)!;
              const theirs = () => session.run(feeds);
              const expected = (await theirs()).output.data as Float32Array;
              const actual = noGrad(() => layer.forward(x, options).output.toArray());
              let maxDiff = 0;
              for (let i = 0; i < actual.length; ++i) maxDiff = Math.max(maxDiff, Math.abs(actual[i] - expected[i]));
              const oursRounds: number[] = [];
              const ortRounds: number[] = [];
              const stepRounds: number[] = [];
              for (let r = 0; r < rounds; ++r) {
                oursRounds.push(await timeRound(ours));
                ortRounds.push(await timeRound(theirs));
                if (T === 1) stepRounds.push(await timeRound(stepped));
              }
              const stepMicros = T === 1 ? median(stepRounds) * 1e6 : null;
              const row: Row = {
                cell, layers: L, hidden: H, batch: B, steps: T, threads,
                oursMicros: median(oursRounds) * 1e6, ortMicros: median(ortRounds) * 1e6, ratio: median(ortRounds) / median(oursRounds), maxDiff,
                stepMicros, stepRatio: stepMicros === null ? null : (median(ortRounds) * 1e6) / stepMicros,
              };
              rows.push(row);
              console.log(`${cell} L=${L} H=${H} B=${B} T=${T} threads=${threads}: ours ${row.oursMicros.toFixed(1)} us, ` +
                `onnxruntime ${row.ortMicros.toFixed(1)} us, ${row.ratio.toFixed(2)}x (max |diff| ${maxDiff.toExponential(1)})` +
                (stepMicros === null ? '' : `; step() ${stepMicros.toFixed(1)} us, ${row.stepRatio!.toFixed(2)}x`));
            }
            x.dispose();
          }
        }
        for (const session of sessions.values()) await session.release();
      }
    }
  }
}

/** Characters per second of generate() and of the same loop through onnxruntime, one thread. */
async function generation(): Promise<{ ours: number; ort: number }> {
  setNumThreads(1);
  seed(1);
  const text = fs.readFileSync(path.join(root, 'examples', 'data', 'sotu.txt'), 'utf8');
  const lm = new CharLanguageModel({ text }, { hiddenSize: 192, numLayers: 2 });
  const length = 2000;
  const oursRounds: number[] = [];
  const ortRounds: number[] = [];
  const bytes = exportOnnxBuffer(lm, { stateInputs: true });
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 });
  const V = lm.tokenizer.vocabSize;
  const stateSize = 2 * 192;
  const ortGenerate = async () => {
    let h: ort.Tensor = new ort.Tensor('float32', new Float32Array(stateSize), [2, 1, 192]);
    let c: ort.Tensor = new ort.Tensor('float32', new Float32Array(stateSize), [2, 1, 192]);
    let token = 1;
    for (let i = 0; i < length; ++i) {
      const out = await session.run({ input: new ort.Tensor('int64', BigInt64Array.of(BigInt(token)), [1, 1]), h0: h, c0: c });
      h = out.h_n as ort.Tensor;
      c = out.c_n as ort.Tensor;
      const logits = out.output.data as Float32Array;
      // sample as generate() does: softmax at temperature 1, never id 0
      let max = -Infinity;
      for (let v = 1; v < V; ++v) max = Math.max(max, logits[v]);
      let total = 0;
      const p = new Float64Array(V);
      for (let v = 1; v < V; ++v) total += p[v] = Math.exp(logits[v] - max);
      let u = Math.random() * total;
      token = V - 1;
      for (let v = 1; v < V; ++v) if ((u -= p[v]) <= 0) { token = v; break; }
    }
  };
  for (let r = 0; r < rounds; ++r) {
    await quiet();
    let t = performance.now();
    lm.generate({ length, seed: r });
    oursRounds.push(length / ((performance.now() - t) / 1000));
    await quiet();
    t = performance.now();
    await ortGenerate();
    ortRounds.push(length / ((performance.now() - t) / 1000));
  }
  await session.release();
  return { ours: median(oursRounds), ort: median(ortRounds) };
}

/** Training steps per second at B = 1 (LSTM, I = 64, H = 128, T = 32, Adam), one and two threads. */
function trainingAtBatchOne(): Record<number, number> {
  const out: Record<number, number> = {};
  for (const threads of threadCounts) {
    setNumThreads(threads);
    seed(1);
    const lstm = new LSTM({ inputSize: I, hiddenSize: 128 });
    const opt = new Adam(lstm.parameters(), { lr: 1e-3 });
    const x = Tensor.randn([32, 1, I]);
    const dy = Tensor.randn([32, 1, 128]);
    const step = () => {
      opt.zeroGrad();
      const { output } = lstm.forward(x);
      backward([output], [dy]);
      opt.step();
    };
    const perRound: number[] = [];
    for (let r = 0; r < rounds; ++r) {
      const started = performance.now();
      let n = 0;
      while (performance.now() - started < 300) {
        step();
        ++n;
      }
      perRound.push(n / ((performance.now() - started) / 1000));
    }
    out[threads] = median(perRound);
  }
  return out;
}

async function main(): Promise<void> {
  const where = machine();
  console.log(`machine: ${where}`);
  // generate() and training at B = 1 first, in a fresh process (after the grid's hundreds of
  // sessions and tensors, V8's heap and the allocator's caches made both loops 5-15% slower,
  // ours and onnxruntime's alike); --loops-only: these alone, printed, nothing written
  const gen = gridOnly ? null : await generation();
  if (gen) console.log(`generate(), 2 x 192 LSTM, one thread: ${gen.ours.toFixed(0)} characters/s; through onnxruntime-node: ${gen.ort.toFixed(0)}`);
  const training = gridOnly ? null : trainingAtBatchOne();
  if (training) console.log(`training at B = 1 (T = 32, H = 128): ${training[1].toFixed(0)} steps/s on one thread, ${training[2].toFixed(0)} on two`);
  if (loopsOnly) return;
  const rows: Row[] = [];
  await compareShapes(rows);
  if (gridOnly) {
    const ratios = rows.map((r) => r.ratio).sort((a, b) => a - b);
    console.log(`${rows.length} shapes: ratio median ${median(ratios).toFixed(2)}x, lowest ${ratios[0].toFixed(2)}x; ` +
      `${rows.filter((r) => r.ratio < 1).length} below 1.0x (a part of the grid: nothing written)`);
    return;
  }
  if (!gen || !training) return;

  const ratios = rows.map((r) => r.ratio);
  const below = rows.filter((r) => r.ratio < 1);
  const stepRows = rows.filter((r) => r.stepRatio !== null);
  const stepRatios = stepRows.map((r) => r.stepRatio!);
  const oneStep = rows.filter((r) => r.cell === 'lstm' && r.steps === 1 && r.batch === 1 && r.hidden === 256 && r.layers === 2);
  const lines = [
    '## Inference against onnxruntime-node (npm run bench:ort)',
    '',
    `Machine: ${where}. Rounds alternating, ${rounds} rounds, medians of per-call medians. Each model exported with ` +
      '`exportOnnxBuffer(model, { stateInputs: true })` and run from those bytes; ours is `forward(x, { h0, c0 })` under noGrad. ' +
      'I = 64; ratio = onnxruntime time / ours (above 1: ours is faster).',
    '',
    `Shapes: ${rows.length}; ratio median ${median(ratios).toFixed(2)}x, lowest ${Math.min(...ratios).toFixed(2)}x, highest ${Math.max(...ratios).toFixed(2)}x; ` +
      `${below.length} below 1.0x. Outputs agree to ${Math.max(...rows.map((r) => r.maxDiff)).toExponential(1)} at most.`,
    '',
    stepRows.length > 0
      ? `At T = 1, step() (the step-by-step API): ratio median ${median(stepRatios).toFixed(2)}x, lowest ${Math.min(...stepRatios).toFixed(2)}x; ` +
        `${stepRows.filter((r) => r.stepRatio! < 1).length} of ${stepRows.length} below 1.0x.`
      : '',
    '',
    ...oneStep.map((r) => `The one-step call (LSTM, T = B = 1, H = 256, 2 layers), ${r.threads} thread${r.threads > 1 ? 's' : ''}: ` +
      `onnxruntime ${r.ortMicros.toFixed(1)} us; forward() ${r.oursMicros.toFixed(1)} us (${r.ratio.toFixed(2)}x); step() ${r.stepMicros!.toFixed(1)} us (${r.stepRatio!.toFixed(2)}x).`),
    '',
    `generate() with the demo's 2 x 192 LSTM on one thread: **${gen.ours.toFixed(0)} characters/s**; the same loop through onnxruntime-node: ${gen.ort.toFixed(0)}.`,
    '',
    `Training at B = 1 (LSTM, T = 32, H = 128, Adam): ${training[1].toFixed(0)} steps/s on one thread, ${training[2].toFixed(0)} on two.`,
    '',
    '| cell | layers | H | B | T | threads | recurrent forward() | onnxruntime-node | ratio | step() (T = 1) | ratio |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.cell} | ${r.layers} | ${r.hidden} | ${r.batch} | ${r.steps} | ${r.threads} | ${formatMicros(r.oursMicros)} | ` +
      `${formatMicros(r.ortMicros)} | ${r.ratio.toFixed(2)}x | ${r.stepMicros === null ? '' : formatMicros(r.stepMicros)} | ` +
      `${r.stepRatio === null ? '' : `${r.stepRatio.toFixed(2)}x`} |`),
    '',
  ];
  const name = quick ? 'onnxruntime-results-quick' : 'onnxruntime-results';
  fs.writeFileSync(path.join(__dirname, `${name}.md`), lines.join('\n'));
  fs.writeFileSync(path.join(__dirname, `${name}.json`), JSON.stringify({ machine: where, rounds, rows, generate: gen, trainingAtBatchOne: training }, null, 1));
  console.log(`wrote bench/${name}.md`);
}

function formatMicros(us: number): string {
  return us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(1)} us`;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
