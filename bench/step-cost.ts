/**
 * What one call of a small step costs, piece by piece: an LSTM (I = 64, H = 256, 2 layers) at
 * T = 1, B = 1, under noGrad, one thread. Each line times one piece alone (medians of 9 rounds of
 * at least 300 ms):
 *   - the native layer calls alone, on buffers allocated once (N-API, validation in C++, kernel);
 *   - the same calls on a 4-unit layer (what a call costs besides the arithmetic);
 *   - allocating the outputs (a native Storage each);
 *   - forward(x, { h0, c0 }) whole (adds the JS facade: argument checks, the autograd node);
 *   - step(x, state) and step(x, state, { out }) whole, and the latter on the 4-unit layer.
 *
 *   npx tsx bench/step-cost.ts [name] [--before other-run.json]
 * Writes bench/<name: step-cost-results>.md and .json; --before adds another run's numbers (an
 * older build's) as a column.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeMachine, median } from './harness';
import { LSTM, Tensor, noGrad, seed, setNumThreads } from '../lib/index';
import { CellKind, layerForward, native } from '../lib/core/native';

function micros(fn: () => unknown): number {
  const rounds: number[] = [];
  for (let r = 0; r < 9; ++r) {
    const samples: number[] = [];
    const started = performance.now();
    while (performance.now() - started < 300) {
      const t = performance.now();
      for (let i = 0; i < 20; ++i) fn();
      samples.push((performance.now() - t) / 20);
    }
    rounds.push(median(samples) * 1000);
  }
  return median(rounds);
}

function main(): void {
  setNumThreads(1);
  seed(1);
  const I = 64, H = 256, L = 2;
  const lstm = new LSTM({ inputSize: I, hiddenSize: H, numLayers: L });
  lstm.eval();
  const x = Tensor.randn([1, 1, I]);
  const h0 = Tensor.randn([L, 1, H]).mul(0.5);
  const c0 = Tensor.randn([L, 1, H]).mul(0.5);
  const weights = (layer: LSTM) => layer.namedParameters().map(([, t]) => t.storage);
  const args = process.argv.slice(2);
  const beforeAt = args.indexOf('--before');
  // --before FILE: another run's .json (an older build: the column "before")
  const before = beforeAt >= 0 ? new Map((JSON.parse(fs.readFileSync(args[beforeAt + 1], 'utf8')) as { rows: [string, number][] }).rows) : null;
  const name = args.find((a, i) => !a.startsWith('--') && (beforeAt < 0 || i !== beforeAt + 1)) ?? 'step-cost-results';
  const w = weights(lstm);
  const y0 = Tensor.empty([1, 1, H]), y1 = Tensor.empty([1, 1, H]), h = Tensor.empty([L, 1, H]), c = Tensor.empty([L, 1, H]);
  const nativeCalls = (layer: LSTM, input: Tensor, width: number, hidden: number, ws: typeof w, a: Tensor, b: Tensor, hs: Tensor, cs: Tensor) => () => {
    for (let l = 0; l < L; ++l) {
      layerForward({
        cell: CellKind.Lstm, timeSteps: 1, batch: 1, inputSize: l === 0 ? width : hidden, hiddenSize: hidden, directions: 1,
        x: l === 0 ? input.storage : a.storage, lengths: null, weights: ws.slice(4 * l, 4 * l + 4), stateOffset: l * hidden,
        y: l === 0 ? a.storage : b.storage, hN: hs.storage, cN: cs.storage, reserve: null, h0: hs.storage, c0: cs.storage,
      });
    }
  };
  const tiny = new LSTM({ inputSize: 4, hiddenSize: 4, numLayers: L });
  const tx = Tensor.randn([1, 1, 4]);
  const ta = Tensor.empty([1, 1, 4]), tb = Tensor.empty([1, 1, 4]), th = Tensor.empty([L, 1, 4]), tc = Tensor.empty([L, 1, 4]);
  // (step() came with the packed-weight cache: without it, this script measures the rest)
  const stepping = typeof (lstm as { step?: unknown }).step === 'function';
  const state = stepping ? lstm.initialState(1) : null;
  const input = x.reshape([1, I]);
  const out = Tensor.empty([1, H]);
  const tinyState = stepping ? tiny.initialState(1) : null;
  const tinyInput = tx.reshape([1, 4]);
  const tinyOut = Tensor.empty([1, 4]);
  const rows: [string, number][] = [
    ['native layer calls (2), buffers allocated once', micros(nativeCalls(lstm, x, I, H, w, y0, y1, h, c))],
    ['the same on a 4-unit layer (the calls without the arithmetic)', micros(nativeCalls(tiny, tx, 4, 4, weights(tiny), ta, tb, th, tc))],
    ['allocating 4 outputs (y of each layer, h, c)', micros(() => { for (let i = 0; i < 4; ++i) new native.Storage(H * L, true).dispose(); })],
    ['forward(x, { h0, c0 })', micros(() => noGrad(() => lstm.forward(x, { h0, c0 })))],
    ...(stepping ? [
      ['step(x, state)', micros(() => lstm.step(input, state!))],
      ['step(x, state, { out })', micros(() => lstm.step(input, state!, { out }))],
      ['step(x, state, { out }) on a 4-unit layer (the call without the arithmetic)', micros(() => tiny.step(tinyInput, tinyState!, { out: tinyOut }))],
    ] as [string, number][] : []),
  ];
  const cpu = describeMachine();
  const lines = [
    '## One step, piece by piece (LSTM, I = 64, H = 256, 2 layers, T = B = 1, one thread)',
    '',
    `Machine: ${cpu}. Medians of 9 rounds. \`npx tsx bench/step-cost.ts${before ? ` --before ${args[beforeAt + 1]}` : ''}\`.`,
    '',
    ...(before
      ? ['| piece | before (us per call) | now (us per call) |', '|---|---|---|',
        ...rows.map(([piece, us]) => `| ${piece} | ${before.has(piece) ? before.get(piece)!.toFixed(1) : '-'} | ${us.toFixed(1)} |`)]
      : ['| piece | us per call |', '|---|---|', ...rows.map(([piece, us]) => `| ${piece} | ${us.toFixed(1)} |`)]),
    '',
  ];
  for (const [name, us] of rows) console.log(`${name}: ${us.toFixed(1)} us`);
  fs.writeFileSync(path.join(__dirname, `${name}.md`), lines.join('\n'));
  fs.writeFileSync(path.join(__dirname, `${name}.json`), JSON.stringify({ machine: cpu, rows }, null, 1));
}

main();
