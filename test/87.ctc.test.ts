/**
 * CTC: ctcLoss against PyTorch's ctc_loss on golden cases (values and gradients, every
 * reduction, zeroInfinity, any blank, repeated labels, impossible alignments), the fast kernel
 * against the double-precision log-space reference, gradients against finite differences, long
 * sequences, the decoders on inputs whose answer is known, bad input, and a model that learns.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  Adam, LSTM, Linear, Tensor, ctcBeamSearch, ctcGreedyDecode, ctcLoss, runAsync, seed,
} from '../lib/index';
import { native } from '../lib/core/native';
import { expectClose, seededRandom } from './helpers';

interface Case {
  name: string; T: number; B: number; C: number; blank: number;
  logProbs: number[]; targets: number[][]; inputLengths: number[]; targetLengths: number[]; weights: number[];
  results: { reduction: 'mean' | 'sum' | 'none'; zeroInfinity: boolean; loss: (number | string)[]; grad: (number | string)[] }[];
}
const fixtures = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'ctc', 'cases.json'), 'utf8')) as { torch: string; cases: Case[] };
const numberOf = (v: number | string) => (typeof v === 'number' ? v : Number(v)); // "Infinity", "NaN"

/** Log-probabilities [T, B, C] (float64) from seeded logits: log_softmax over C. */
function randomLogProbs(T: number, B: number, C: number, seedValue: number, scale = 2): Float64Array {
  const rand = seededRandom(seedValue);
  const out = new Float64Array(T * B * C);
  for (let r = 0; r < T * B; ++r) {
    let top = -Infinity;
    for (let c = 0; c < C; ++c) top = Math.max(top, (out[r * C + c] = (rand() - 0.5) * 2 * scale));
    let sum = 0;
    for (let c = 0; c < C; ++c) sum += Math.exp(out[r * C + c] - top);
    for (let c = 0; c < C; ++c) out[r * C + c] -= top + Math.log(sum);
  }
  return out;
}

function expectSame(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tol: { rtol: number; atol: number }): void {
  expect(actual.length, `${what}: length`).to.equal(expected.length);
  for (let i = 0; i < expected.length; ++i) {
    if (!Number.isFinite(expected[i])) {
      expect(Number.isNaN(expected[i]) ? Number.isNaN(actual[i]) : actual[i] === expected[i], `${what}[${i}]: ${actual[i]} against ${expected[i]}`).to.equal(true);
    }
  }
  const finiteAt = [...Array(expected.length).keys()].filter((i) => Number.isFinite(expected[i]));
  expectClose(finiteAt.map((i) => actual[i]), finiteAt.map((i) => expected[i]), what, tol);
}

describe('ctcLoss against torch.nn.functional.ctc_loss', () => {
  for (const c of fixtures.cases) {
    it(`${c.name}: every reduction, with and without zeroInfinity, within 1e-4 (torch ${fixtures.torch}, in float64)`, () => {
      for (const r of c.results) {
        const logProbs = Tensor.from(Float32Array.from(c.logProbs), [c.T, c.B, c.C], { requiresGrad: true });
        const loss = ctcLoss(logProbs, c.targets, c.inputLengths, c.targetLengths, { blank: c.blank, reduction: r.reduction, zeroInfinity: r.zeroInfinity });
        const what = `${r.reduction}${r.zeroInfinity ? ', zeroInfinity' : ''}`;
        expect(loss.shape).to.deep.equal(r.reduction === 'none' ? [c.B] : []);
        expectSame(loss.toArray(), r.loss.map(numberOf), `${what}: loss`, { rtol: 1e-4, atol: 1e-5 });
        (r.reduction === 'none' ? loss.mul(Tensor.from(c.weights, [c.B])).sum() : loss).backward();
        expectSame(logProbs.grad!.toArray(), r.grad.map(numberOf), `${what}: gradient`, { rtol: 1e-4, atol: 1e-7 });
      }
    });
  }
});

describe('the CTC kernel', () => {
  const run = (lp: Float64Array, T: number, B: number, C: number, targets: number[][], inputs: number[], blank = 0) => {
    const logProbs = Tensor.from(Float32Array.from(lp), [T, B, C], { requiresGrad: true });
    const loss = ctcLoss(logProbs, targets, inputs, targets.map((t) => t.length), { blank, reduction: 'sum' });
    loss.backward();
    const reference = native.ctcLossReference(Float64Array.from(Float32Array.from(lp)), T, B, C, blank, Int32Array.from(targets.flat()),
      Int32Array.from(targets.map((t) => t.length)), Int32Array.from(inputs), true);
    return { loss: loss.item(), grad: logProbs.grad!.toArray(), reference };
  };

  it('matches the double-precision log-space reference on random cases (repeats, any blank, ragged)', () => {
    const rand = seededRandom(11);
    for (let k = 0; k < 12; ++k) {
      const T = 5 + Math.floor(rand() * 60);
      const B = 1 + Math.floor(rand() * 4);
      const C = 2 + Math.floor(rand() * 9);
      const blank = Math.floor(rand() * C);
      const inputs = Array.from({ length: B }, () => 1 + Math.floor(rand() * T));
      const targets = inputs.map((n) => Array.from({ length: Math.floor(rand() * Math.min(n, 12)) }, () => {
        const label = Math.floor(rand() * (C - 1));
        return label >= blank ? label + 1 : label;
      }));
      const lp = randomLogProbs(T, B, C, 100 + k);
      const { loss, grad, reference } = run(lp, T, B, C, targets, inputs, blank);
      const expected = reference.losses.reduce((a, b) => a + b, 0);
      if (Number.isFinite(expected)) expect(loss, `case ${k}`).to.be.closeTo(expected, 1e-5 * Math.abs(expected) + 1e-6);
      else expect(loss, `case ${k}`).to.equal(Infinity);
      if (Number.isFinite(expected)) expectClose(grad, reference.grad!, `case ${k}: gradient`, { rtol: 1e-4, atol: 1e-6 });
    }
  });

  it('its gradient is the loss\'s derivative with respect to the logits (finite differences through logSoftmax)', () => {
    const T = 7, B = 2, C = 4;
    const rand = seededRandom(5);
    const logits = Float64Array.from({ length: T * B * C }, () => (rand() - 0.5) * 3);
    const targets = [[1, 1, 2], [3]];
    const inputs = [7, 5];
    const lossOf = (values: Float64Array) => {
      const lp = new Float64Array(values.length);
      for (let r = 0; r < T * B; ++r) {
        let top = -Infinity;
        for (let c = 0; c < C; ++c) top = Math.max(top, values[r * C + c]);
        let sum = 0;
        for (let c = 0; c < C; ++c) sum += Math.exp(values[r * C + c] - top);
        for (let c = 0; c < C; ++c) lp[r * C + c] = values[r * C + c] - top - Math.log(sum);
      }
      const ref = native.ctcLossReference(lp, T, B, C, 0, Int32Array.from(targets.flat()), Int32Array.from([3, 1]), Int32Array.from(inputs), false);
      return ref.losses[0] + ref.losses[1];
    };
    const x = Tensor.from(Float32Array.from(logits), [T, B, C], { requiresGrad: true });
    ctcLoss(x.logSoftmax(), targets, inputs, [3, 1], { reduction: 'sum' }).backward();
    const numeric = Array.from(logits, (_, i) => {
      const plus = Float64Array.from(logits); plus[i] += 1e-5;
      const minus = Float64Array.from(logits); minus[i] -= 1e-5;
      return (lossOf(plus) - lossOf(minus)) / 2e-5;
    });
    expectClose(x.grad!.toArray(), numeric, 'dL/dlogits', { rtol: 1e-3, atol: 1e-4 });
  });

  it('long sequences: T = 10,000 against the reference, and a target as long as the input (one alignment)', function () {
    this.timeout(120_000);
    const T = 10_000, C = 6;
    const targets = [Array.from({ length: 1500 }, (_, i) => 1 + ((i * 7) % 5) % 5)]; // repeats included
    const { loss, grad, reference } = run(randomLogProbs(T, 1, C, 7, 1), T, 1, C, targets, [T]);
    expect(loss).to.be.closeTo(reference.losses[0], 1e-6 * reference.losses[0]);
    expectClose(grad, reference.grad!, 'T = 10,000: gradient', { rtol: 1e-4, atol: 1e-6 });
    // S = T with no two equal neighbours: the only alignment emits label t at frame t
    const S = 3000;
    const labels = Array.from({ length: S }, (_, i) => 1 + (i % 3));
    const lp = randomLogProbs(S, 1, 4, 9);
    const exact = -labels.reduce((sum, label, t) => sum + Math.fround(lp[t * 4 + label]), 0);
    expect(run(lp, S, 1, 4, [labels], [S]).loss).to.be.closeTo(exact, 1e-5 * exact);
    // and one label more than fits: no alignment
    expect(run(lp, S, 1, 4, [[...labels.slice(1), 1, 2]], [S - 1]).loss).to.equal(Infinity);
  });

  it('every precision path agrees with the reference: peaked and flat inputs, short and long', function () {
    this.timeout(60_000);
    // flat inputs over long sequences spread the states beyond one scale per step; peaked ones
    // (off-path classes at e^-60) beyond a scale per block of states
    for (const [T, S, spread] of [[200, 40, 1], [3000, 600, 1], [300, 60, 60], [2000, 300, 60]] as const) {
      const C = 7;
      const rand = seededRandom(T + S);
      const labels = Array.from({ length: S }, () => 1 + Math.floor(rand() * (C - 1)));
      const lp = new Float64Array(T * C);
      for (let t = 0; t < T; ++t) {
        const favourite = spread > 1 ? (t % 2 ? 0 : labels[Math.min(S - 1, Math.floor((t / T) * S))]) : -1;
        let sum = 0;
        for (let c = 0; c < C; ++c) sum += Math.exp((lp[t * C + c] = c === favourite ? 0 : -spread * rand()));
        for (let c = 0; c < C; ++c) lp[t * C + c] -= Math.log(sum);
      }
      const { loss, grad, reference } = run(lp, T, 1, C, [labels], [T]);
      expect(loss, `T = ${T}, spread ${spread}`).to.be.closeTo(reference.losses[0], 1e-6 * reference.losses[0] + 1e-4);
      expectClose(grad, reference.grad!, `T = ${T}, spread ${spread}: gradient`, { rtol: 1e-4, atol: 1e-6 });
    }
  });

  it('runs queued in async mode with the same values and gradients', async () => {
    const lp = randomLogProbs(20, 3, 5, 3);
    const make = () => Tensor.from(Float32Array.from(lp), [20, 3, 5], { requiresGrad: true });
    const sync = make();
    const expected = ctcLoss(sync, [[1, 2], [3, 3], [4]], [20, 15, 10], [2, 2, 1]);
    expected.backward();
    const queued = make();
    const value = await runAsync(() => {
      const loss = ctcLoss(queued, [[1, 2], [3, 3], [4]], [20, 15, 10], [2, 2, 1]);
      loss.backward();
      return loss;
    });
    expect(value.item()).to.equal(expected.item());
    expect(Array.from(queued.grad!.toArray())).to.deep.equal(Array.from(sync.grad!.toArray()));
  });
});

describe('ctcGreedyDecode and ctcBeamSearch', () => {
  /** Log-probabilities from per-frame probability rows, batch of one. */
  const frames = (rows: number[][]) => Tensor.from(rows.flat().map(Math.log), [rows.length, 1, rows[0].length]);

  it('best path: the likeliest class per frame, repeats merged, blanks dropped, within each input length', () => {
    const onehot = (ids: number[], C: number) => ids.map((id) => Array.from({ length: C }, (_, c) => (c === id ? 0.9 : 0.1 / (C - 1))));
    expect(ctcGreedyDecode(frames(onehot([1, 1, 0, 1, 2, 2, 0, 0, 3], 4)), [9])).to.deep.equal([[1, 1, 2, 3]]);
    expect(ctcGreedyDecode(frames(onehot([1, 1, 0, 1, 2, 2, 0, 0, 3], 4)), [5])).to.deep.equal([[1, 1, 2]]);
    expect(ctcGreedyDecode(frames(onehot([3, 0, 3, 3, 1], 4)), [5], { blank: 3 })).to.deep.equal([[0, 1]]);
  });

  it('prefix beam search finds the sequence whose alignments together are likeliest, where best path does not', () => {
    // two frames of blank 0.4, a 0.35, b 0.25: the best path is blank-blank (0.16, ""), but "a"
    // is spelt by aa, a-, -a (0.1225 + 0.14 + 0.14 = 0.4025)
    const lp = frames([[0.4, 0.35, 0.25], [0.4, 0.35, 0.25]]);
    expect(ctcGreedyDecode(lp, [2])).to.deep.equal([[]]);
    expect(ctcBeamSearch(lp, [2], { beamWidth: 5 })).to.deep.equal([[1]]);
    expect(ctcBeamSearch(lp, [2], { beamWidth: 1 })).to.deep.equal([[]]); // a beam of one is best path's greedy prefix
    // a repeat needs a blank between: "a a" only through a-a
    const repeat = frames([[0.05, 0.9, 0.05], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05]]);
    expect(ctcBeamSearch(repeat, [3])).to.deep.equal([[1, 1]]);
    expect(ctcGreedyDecode(repeat, [3])).to.deep.equal([[1, 1]]);
  });
});

describe('CTC input checks', () => {
  const lp = Tensor.from(randomLogProbs(6, 2, 4, 1), [6, 2, 4]);
  const code = (fn: () => unknown, kind: typeof TypeError | typeof RangeError, pattern: RegExp, errorCode: string) => {
    expect(fn).to.throw(kind, pattern).with.property('code', errorCode);
  };
  it('name the argument: lengths past T, blanks and unknown labels, batch sizes, non-log-probabilities', () => {
    code(() => ctcLoss(lp, [[1], [2]], [6, 7], [1, 1]), RangeError, /inputLengths\[1\] is 7, longer than the 6 frames/, 'ERR_INVALID_ARG_VALUE');
    code(() => ctcLoss(lp, [[1], [0]], [6, 6], [1, 1]), RangeError, /targets\[1\]\[0\] is the blank \(0\)/, 'ERR_INVALID_ARG_VALUE');
    code(() => ctcLoss(lp, [[1], [4]], [6, 6], [1, 1]), RangeError, /targets\[1\]\[0\] is 4, not a class in \[0, 4\)/, 'ERR_INVALID_ARG_VALUE');
    code(() => ctcLoss(lp, [[1, 2], [3]], [6, 6], [1, 1], { blank: 3 }), RangeError, /targets\[1\]\[0\] is the blank \(3\)/, 'ERR_INVALID_ARG_VALUE');
    code(() => ctcLoss(lp, [[1]], [6, 6], [1, 1]), RangeError, /one label sequence per batch row \(2\)/, 'ERR_SHAPE_MISMATCH');
    code(() => ctcLoss(lp, [[1], [2]], [6], [1, 1]), RangeError, /inputLengths to have one entry per batch row \(2\)/, 'ERR_SHAPE_MISMATCH');
    code(() => ctcLoss(lp, [[1], [2]], [6, 6], [1, 2]), RangeError, /targetLengths\[1\] is 2 but targets\[1\] holds 1/, 'ERR_INVALID_ARG_VALUE');
    code(() => ctcLoss(lp.reshape([12, 4]), [[1], [2]], [6, 6], [1, 1]), RangeError, /shape \[T, B, C\]/, 'ERR_SHAPE_MISMATCH');
    code(() => ctcLoss(lp, [[1], [2]], [6, 6], [1, 1], { blank: 4 }), RangeError, /options.blank/, 'ERR_INVALID_ARG_VALUE');
    code(() => ctcLoss(lp, 'ab' as never, [6, 6], [1, 1]), TypeError, /expected targets to be number\[\]\[\]/, 'ERR_INVALID_ARG_TYPE');
    code(() => ctcLoss(lp.mul(3), [[1], [2]], [6, 6], [1, 1]), RangeError, /log-probabilities .*logSoftmax/, 'ERR_INVALID_ARG_VALUE');
    code(() => ctcGreedyDecode(lp, [6, 9]), RangeError, /inputLengths\[1\] is 9/, 'ERR_INVALID_ARG_VALUE');
    code(() => ctcBeamSearch(lp, [6, 6], { beamWidth: 0 }), RangeError, /beamWidth/, 'ERR_INVALID_ARG_VALUE');
    // padded targets: a Tensor or an Int32Array [B, S]
    const padded = ctcLoss(lp, Int32Array.from([1, 2, 3, 0]), [6, 6], [2, 1], { reduction: 'none' }).toArray();
    expect(Array.from(ctcLoss(lp, Tensor.from([[1, 2], [3, 0]]), [6, 6], [2, 1], { reduction: 'none' }).toArray())).to.deep.equal(Array.from(padded));
    expect(Array.from(ctcLoss(lp, [[1, 2], [3]], [6, 6], [2, 1], { reduction: 'none' }).toArray())).to.deep.equal(Array.from(padded));
  });
});

describe('a bidirectional LSTM with CTC', function () {
  this.timeout(60_000);
  it('learns to read out the digits of a sequence with repeats and blanks between them', () => {
    seed(3);
    // input: each label shown for 2 frames, with a gap of noise frames; target: the labels
    const C = 5, N = 24, T = 16;
    const rand = seededRandom(17);
    const samples = Array.from({ length: N }, () => Array.from({ length: 3 + Math.floor(rand() * 3) }, () => 1 + Math.floor(rand() * (C - 1))));
    const x = new Float32Array(T * N * C);
    samples.forEach((labels, n) => labels.forEach((label, i) => {
      for (const t of [3 * i, 3 * i + 1]) x[(t * N + n) * C + label] = 1;
    }));
    const input = Tensor.from(x, [T, N, C]);
    const lstm = new LSTM({ inputSize: C, hiddenSize: 24, bidirectional: true });
    const head = new Linear({ inFeatures: 48, outFeatures: C });
    const optimizer = new Adam([...lstm.parameters(), ...head.parameters()], { lr: 0.02 });
    const lengths = samples.map(() => T);
    const losses: number[] = [];
    for (let step = 0; step < 120; ++step) {
      const loss = ctcLoss(head.forward(lstm.forward(input).output).logSoftmax(), samples, lengths, samples.map((s) => s.length));
      optimizer.zeroGrad();
      loss.backward();
      optimizer.step();
      losses.push(loss.item());
    }
    expect(losses[losses.length - 1]).to.be.below(losses[0] / 10);
    const decoded = ctcGreedyDecode(head.forward(lstm.forward(input).output).logSoftmax(), lengths);
    expect(decoded.filter((d, n) => d.join() === samples[n].join()).length, 'sequences read exactly').to.be.at.least(N - 2);
    expect(ctcBeamSearch(head.forward(lstm.forward(input).output).logSoftmax(), lengths, { beamWidth: 4 })).to.deep.equal(decoded);
  });
});
