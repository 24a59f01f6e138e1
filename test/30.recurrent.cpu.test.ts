/**
 * The recurrent layers on the CPU: the fast float32 kernels, driven through the
 * modules and autograd, against the double-precision reference (PyTorch's equations),
 * and the reference's own gradients against finite differences.
 */
import { expect } from 'chai';
import { GRU, LSTM, RNN, Tensor, backends, backward, noGrad, setNumThreads } from '../lib/index';
import { native } from '../lib/core/native';
import {
  CELL_CODE,
  CellName,
  GATES,
  StackConfig,
  expectClose,
  paramNames,
  randomArray,
  referenceStack,
  referenceStackBackward,
  roundToF32,
  seededRandom,
  tensorOf,
} from './helpers';

function makeModule(cfg: StackConfig, batchFirst = false): RNN | LSTM | GRU {
  const common = { inputSize: cfg.I, hiddenSize: cfg.H, numLayers: cfg.L, bidirectional: cfg.D === 2, bias: cfg.bias, batchFirst };
  switch (cfg.cell) {
    case 'lstm': return new LSTM(common);
    case 'gru': return new GRU(common);
    case 'rnn_tanh': return new RNN({ ...common, nonlinearity: 'tanh' });
    case 'rnn_relu': return new RNN({ ...common, nonlinearity: 'relu' });
  }
}

function randomParams(cfg: StackConfig, rand: () => number): Map<string, Float64Array> {
  const params = new Map<string, Float64Array>();
  const gh = GATES[cfg.cell] * cfg.H;
  const scale = 1 / Math.sqrt(cfg.H);
  for (let layer = 0; layer < cfg.L; ++layer) {
    const inSize = layer === 0 ? cfg.I : cfg.D * cfg.H;
    for (let d = 0; d < cfg.D; ++d) {
      const [wih, whh, bih, bhh] = paramNames(cfg, layer, d);
      params.set(wih, roundToF32(randomArray(rand, gh * inSize, scale)));
      params.set(whh, roundToF32(randomArray(rand, gh * cfg.H, scale)));
      if (cfg.bias) {
        params.set(bih, roundToF32(randomArray(rand, gh, scale)));
        params.set(bhh, roundToF32(randomArray(rand, gh, scale)));
      }
    }
  }
  return params;
}

function stateDictOf(cfg: StackConfig, params: Map<string, Float64Array>): Record<string, Tensor> {
  const gh = GATES[cfg.cell] * cfg.H;
  const out: Record<string, Tensor> = {};
  for (const [name, values] of params) {
    const shape = name.startsWith('bias') ? [gh] : [gh, values.length / gh];
    out[name] = tensorOf(values, shape);
  }
  return out;
}

interface Case {
  label: string;
  L: number;
  D: number;
  bias: boolean;
  lengths: number[] | null;
  initialState: boolean;
}

const T = 6;
const CASES: Case[] = [
  { label: '1 layer, full lengths', L: 1, D: 1, bias: true, lengths: null, initialState: true },
  { label: '2 layers, bidirectional, ragged unsorted lengths', L: 2, D: 2, bias: true, lengths: [6, 3, 1, 5], initialState: true },
  { label: '2 layers, sorted lengths, no bias', L: 2, D: 1, bias: false, lengths: [6, 6, 4, 2], initialState: true },
  { label: '3 layers, bidirectional, zero initial state', L: 3, D: 2, bias: true, lengths: null, initialState: false },
];
const CELLS: CellName[] = ['rnn_tanh', 'rnn_relu', 'lstm', 'gru'];

describe('recurrent layers (CPU) against the double reference', () => {
  for (const cell of CELLS) {
    for (const c of CASES) {
      it(`${cell}: ${c.label}: forward outputs and every gradient`, () => {
        const cfg: StackConfig = { cell, T, B: 4, I: 5, H: 7, L: c.L, D: c.D, bias: c.bias };
        const rand = seededRandom(CELL_CODE[cell] * 100 + c.L * 10 + c.D);
        const params = randomParams(cfg, rand);
        const state = cfg.L * cfg.D * cfg.B * cfg.H;
        const x = roundToF32(randomArray(rand, T * cfg.B * cfg.I));
        const h0 = c.initialState ? roundToF32(randomArray(rand, state, 0.5)) : null;
        const c0 = c.initialState && cell === 'lstm' ? roundToF32(randomArray(rand, state, 0.5)) : null;
        const dy = roundToF32(randomArray(rand, T * cfg.B * cfg.D * cfg.H));
        const dhN = roundToF32(randomArray(rand, state));
        const dcN = cell === 'lstm' ? roundToF32(randomArray(rand, state)) : null;
        const lengths = c.lengths ? Int32Array.from(c.lengths) : null;

        const module = makeModule(cfg);
        module.loadStateDict(stateDictOf(cfg, params));
        const xt = tensorOf(x, [T, cfg.B, cfg.I], true);
        const h0t = h0 ? tensorOf(h0, [cfg.L * cfg.D, cfg.B, cfg.H], true) : null;
        const c0t = c0 ? tensorOf(c0, [cfg.L * cfg.D, cfg.B, cfg.H], true) : null;
        const result = module.forward(xt, { h0: h0t, ...(c0t ? { c0: c0t } : {}), lengths: c.lengths });
        const ref = referenceStack(cfg, params, x, h0, c0, lengths);

        expect(result.output.shape).to.deep.equal([T, cfg.B, cfg.D * cfg.H]);
        expect(result.h.shape).to.deep.equal([cfg.L * cfg.D, cfg.B, cfg.H]);
        expectClose(result.output.toArray(), ref.y, 'output');
        expectClose(result.h.toArray(), ref.hN, 'h');
        const outputs = [result.output, result.h];
        const grads = [tensorOf(dy, result.output.shape), tensorOf(dhN, result.h.shape)];
        if (cell === 'lstm') {
          const lstmC = (result as unknown as { c: Tensor }).c;
          expectClose(lstmC.toArray(), ref.cN!, 'c');
          outputs.push(lstmC);
          grads.push(tensorOf(dcN!, lstmC.shape));
        }
        if (lengths) {
          // packed semantics: steps past a row's length are exactly zero
          const y = result.output.toArray();
          for (let b = 0; b < cfg.B; ++b)
            for (let t = lengths[b]; t < T; ++t)
              for (let j = 0; j < cfg.D * cfg.H; ++j) expect(y[(t * cfg.B + b) * cfg.D * cfg.H + j]).to.equal(0);
        }

        backward(outputs, grads);
        const refGrads = referenceStackBackward(cfg, params, x, h0, c0, lengths, dy, dhN, dcN);
        expectClose(xt.grad!.toArray(), refGrads.dx, 'x.grad');
        if (h0t) expectClose(h0t.grad!.toArray(), refGrads.dh0, 'h0.grad');
        if (c0t) expectClose(c0t.grad!.toArray(), refGrads.dc0!, 'c0.grad');
        const named = new Map(module.namedParameters());
        expect([...named.keys()].sort()).to.deep.equal([...refGrads.params.keys()].sort());
        for (const [name, g] of refGrads.params) expectClose(named.get(name)!.grad!.toArray(), g, `${name}.grad`);
      });
    }
  }

  it('inference through one-direction stacks (one native call; on two threads a pipeline over time) against the reference, bit for bit the training path', () => {
    // Under noGrad a stack of one-direction layers is one native call, which on two threads runs
    // small layers as a pipeline (each thread its layers, chunk by chunk of time steps); with
    // gradients each layer is its own call. Both must give the same bits, on one thread and two.
    // The pipeline is forced on (native.setStackPipeline(1)) as well as chosen by size (0): these
    // small layers alone would not be worth a second thread.
    const before = backends().cpu.threads;
    try {
      for (const [threads, pipeline] of [[1, 0], [2, 0], [2, 1]]) {
        setNumThreads(threads);
        native.setStackPipeline(pipeline);
        for (const cell of CELLS) {
          for (const [L, lengths, initialState] of [[2, null, true], [3, [40, 33, 33, 9], false], [2, [12, 40, 1], true]] as const) {
            const B = lengths ? lengths.length : 2;
            const cfg: StackConfig = { cell, T: 40, B, I: 5, H: 9, L, D: 1, bias: true };
            const rand = seededRandom(CELL_CODE[cell] * 7 + L + threads * 100);
            const params = randomParams(cfg, rand);
            const state = L * B * cfg.H;
            const x = roundToF32(randomArray(rand, cfg.T * B * cfg.I));
            const h0 = initialState ? roundToF32(randomArray(rand, state, 0.5)) : null;
            const c0 = initialState && cell === 'lstm' ? roundToF32(randomArray(rand, state, 0.5)) : null;
            const module = makeModule(cfg);
            module.loadStateDict(stateDictOf(cfg, params));
            module.eval();
            const options = {
              h0: h0 ? tensorOf(h0, [L, B, cfg.H]) : null,
              ...(c0 ? { c0: tensorOf(c0, [L, B, cfg.H]) } : {}),
              lengths: lengths ? [...lengths] : undefined,
            };
            const inference = noGrad(() => module.forward(tensorOf(x, [cfg.T, B, cfg.I]), options));
            const training = module.forward(tensorOf(x, [cfg.T, B, cfg.I], true), options);
            const ref = referenceStack(cfg, params, x, h0, c0, lengths ? Int32Array.from(lengths) : null);
            const label = `${cell}, ${L} layers, ${threads} thread(s), pipeline ${pipeline ? 'on' : 'by size'}`;
            expectClose(inference.output.toArray(), ref.y, `${label}: output`);
            expectClose(inference.h.toArray(), ref.hN, `${label}: h`);
            expect(Array.from(inference.output.toArray())).to.deep.equal(Array.from(training.output.toArray()), `${label}: output bits`);
            expect(Array.from(inference.h.toArray())).to.deep.equal(Array.from(training.h.toArray()), `${label}: h bits`);
            if (cell === 'lstm') {
              const c = (r: unknown) => (r as { c: Tensor }).c.toArray();
              expectClose(c(inference), ref.cN!, `${label}: c`);
              expect(Array.from(c(inference))).to.deep.equal(Array.from(c(training)), `${label}: c bits`);
            }
          }
        }
      }
    } finally {
      setNumThreads(before);
      native.setStackPipeline(0);
    }
  });

  it('batchFirst gives the transposed result of the time-major layer', () => {
    const cfg: StackConfig = { cell: 'lstm', T: 5, B: 3, I: 4, H: 6, L: 2, D: 2, bias: true };
    const timeMajor = makeModule(cfg) as LSTM;
    const batchMajor = makeModule(cfg, true) as LSTM;
    batchMajor.loadStateDict(timeMajor.stateDict());
    const x = Tensor.randn([5, 3, 4]);
    const a = timeMajor.forward(x, { lengths: [5, 2, 4] });
    const b = batchMajor.forward(x.transpose(0, 1), { lengths: [5, 2, 4] });
    expect(b.output.shape).to.deep.equal([3, 5, 12]);
    expectClose(b.output.transpose(0, 1).toArray(), a.output.toArray(), 'output', { rtol: 0, atol: 0 });
    expectClose(b.h.toArray(), a.h.toArray(), 'h', { rtol: 0, atol: 0 });
  });

  it('unbatched input [T, I] matches a batch of one', () => {
    const gru = new GRU({ inputSize: 3, hiddenSize: 4, numLayers: 2 });
    const x = Tensor.randn([6, 3]);
    const h0 = Tensor.randn([2, 4]);
    const single = gru.forward(x, { h0 });
    const batched = gru.forward(x.reshape([6, 1, 3]), { h0: h0.reshape([2, 1, 4]) });
    expect(single.output.shape).to.deep.equal([6, 4]);
    expect(single.h.shape).to.deep.equal([2, 4]);
    expectClose(single.output.toArray(), batched.output.toArray(), 'output', { rtol: 0, atol: 0 });
  });

  it('a ragged row gives the same result as running it alone at its own length', () => {
    const lstm = new LSTM({ inputSize: 3, hiddenSize: 5, bidirectional: true });
    const x = Tensor.randn([7, 2, 3]);
    const both = lstm.forward(x, { lengths: [7, 4] });
    const alone = lstm.forward(x.slice(1, 1, 2).slice(0, 0, 4));
    const row1 = both.output.slice(1, 1, 2).slice(0, 0, 4);
    expectClose(row1.toArray(), alone.output.toArray(), 'output', { rtol: 1e-6, atol: 1e-7 });
    expectClose(both.h.slice(1, 1, 2).toArray(), alone.h.toArray(), 'h', { rtol: 1e-6, atol: 1e-7 });
    expectClose(both.c.slice(1, 1, 2).toArray(), alone.c.toArray(), 'c', { rtol: 1e-6, atol: 1e-7 });
  });

  it('an input that needs no gradient gets none, and the weights get the same gradients bit for bit', () => {
    // the first layer then skips its dx product (cpp/recurrent.cc); every other gradient is unchanged
    for (const cell of ['lstm', 'gru', 'rnn_tanh'] as const) {
      const cfg: StackConfig = { cell, T: 9, B: 20, I: 12, H: 20, L: 2, D: 2, bias: true };
      const module = makeModule(cfg);
      const rand = seededRandom(7);
      const x = Array.from(randomArray(rand, cfg.T * cfg.B * cfg.I));
      const dy = Array.from(randomArray(rand, cfg.T * cfg.B * cfg.D * cfg.H));
      const run = (inputGrad: boolean) => {
        module.zeroGrad();
        const xt = Tensor.from(x, [cfg.T, cfg.B, cfg.I]);
        xt.requiresGrad = inputGrad;
        const { output } = module.forward(xt, { lengths: [9, 3, 9, 7, ...Array(16).fill(9)] });
        backward([output], [Tensor.from(dy, output.shape)]);
        return { x: xt, grads: module.namedParameters().map(([name, p]) => [name, Array.from(p.grad!.toArray())] as const) };
      };
      const withX = run(true), withoutX = run(false);
      expect(withX.x.grad, `${cell}: x.grad`).to.not.equal(null);
      expect(withoutX.x.grad ?? null, `${cell}: x.grad without requiresGrad`).to.equal(null);
      for (let i = 0; i < withX.grads.length; ++i) {
        const [name, g] = withX.grads[i];
        expect(g.some((v) => v !== 0), `${cell} ${name}.grad is not all zero`).to.equal(true);
        expect(withoutX.grads[i][1], `${cell} ${name}.grad`).to.deep.equal(g);
      }
    }
  });

  it('dropout between layers is active in training mode only', () => {
    const lstm = new LSTM({ inputSize: 4, hiddenSize: 8, numLayers: 2, dropout: 0.5 });
    const x = Tensor.randn([5, 3, 4]);
    const a = lstm.forward(x).output.toArray();
    const b = lstm.forward(x).output.toArray();
    expect(Array.from(a)).to.not.deep.equal(Array.from(b)); // fresh masks each call
    lstm.eval();
    const c = lstm.forward(x).output.toArray();
    const d = lstm.forward(x).output.toArray();
    expect(Array.from(c)).to.deep.equal(Array.from(d));
  });
});

describe('double reference: gradients by finite differences', () => {
  // Loss = sum(y * dy) + sum(hN * dhN) + sum(cN * dcN), differentiated numerically.
  for (const cell of CELLS) {
    it(`${cell}: bidirectional, ragged lengths, every input and a sample of every weight`, () => {
      const T2 = 5, B = 3, I = 3, H = 4, D = 2;
      const code = CELL_CODE[cell];
      const rand = seededRandom(7 + code);
      const gh = GATES[cell] * H;
      const weights: Float64Array[] = [];
      for (let d = 0; d < D; ++d) {
        weights.push(randomArray(rand, gh * I, 0.6), randomArray(rand, gh * H, 0.6), randomArray(rand, gh, 0.3), randomArray(rand, gh, 0.3));
      }
      const x = randomArray(rand, T2 * B * I);
      // relu: keep pre-activations away from the kink so the finite difference is smooth
      const h0 = randomArray(rand, D * B * H, 0.5);
      const c0 = randomArray(rand, D * B * H, 0.5);
      const lengths = Int32Array.from([5, 2, 4]);
      const dy = randomArray(rand, T2 * B * D * H);
      const dhN = randomArray(rand, D * B * H);
      const dcN = randomArray(rand, D * B * H);
      const isLstm = cell === 'lstm';
      const loss = (): number => {
        const out = native.referenceForward(code, T2, B, I, H, D, x, lengths, h0, isLstm ? c0 : null, weights);
        let s = 0;
        out.y.forEach((v, i) => (s += v * dy[i]));
        out.hN.forEach((v, i) => (s += v * dhN[i]));
        if (isLstm) out.cN!.forEach((v, i) => (s += v * dcN[i]));
        return s;
      };
      const analytic = native.referenceBackward(code, T2, B, I, H, D, dy, dhN, isLstm ? dcN : null, x, lengths, h0,
        isLstm ? c0 : null, weights);
      const eps = 1e-6;
      const check = (values: Float64Array, grad: Float64Array, what: string, sample: number): void => {
        const step = Math.max(1, Math.floor(values.length / sample));
        for (let i = 0; i < values.length; i += step) {
          const saved = values[i];
          values[i] = saved + eps;
          const up = loss();
          values[i] = saved - eps;
          const down = loss();
          values[i] = saved;
          const numeric = (up - down) / (2 * eps);
          expect(Math.abs(numeric - grad[i]), `${what}[${i}]: numeric ${numeric}, analytic ${grad[i]}`).to.be.lessThan(
            1e-7 + 1e-6 * Math.abs(numeric),
          );
        }
      };
      check(x, analytic.dx, 'dx', x.length);
      check(h0, analytic.dh0, 'dh0', h0.length);
      if (isLstm) check(c0, analytic.dc0!, 'dc0', c0.length);
      weights.forEach((w, k) => check(w, analytic.grads[k]!, `weights[${k}]`, 24));
    });
  }
});
