/**
 * Diagnostics: gradient flow over time from the real backward pass (checked against gradients
 * of the state computed another way), W_hh's spectrum, and gate statistics on hand-set weights.
 */
import { expect } from 'chai';
import { GRU, LSTM, Linear, RNN, Tensor, gateStatistics, gradientFlow, noGrad, seed } from '../lib/index';

function setParam(module: RNN | LSTM | GRU, name: string, fill: (i: number) => number): void {
  const p = module.namedParameters().find(([n]) => n === name)![1];
  p.storage.write(Float32Array.from({ length: p.size }, (_, i) => fill(i)), 0);
}

describe('gradientFlow()', () => {
  for (const Cell of [RNN, LSTM, GRU]) {
    it(`${Cell.name}: ||dL/dh_t|| equals the gradient of a run restarted from h_t`, () => {
      seed(31);
      const m = new Cell({ inputSize: 3, hiddenSize: 5 });
      const T = 6;
      const x = Tensor.randn([T, 2, 3]);
      const { layers } = gradientFlow(m, x);
      expect(layers).to.have.length(1);
      expect(layers[0].norms).to.have.length(T);
      expect(layers[0].norms[T - 1]).to.be.closeTo(Math.sqrt(2 * 5), 1e-5); // the loss is the sum of h_(T-1)
      for (let t = 0; t < T - 1; ++t) {
        // h_t and c_t from the prefix, then the suffix from a leaf h_t: its gradient is dL/dh_t
        const prefix = noGrad(() => m.forward(x.slice(0, 0, t + 1)));
        const h0 = prefix.h.detach().requiresGrad_(true);
        const c0 = 'c' in prefix && prefix.c ? (prefix.c as Tensor).detach() : undefined;
        const rest = m.forward(x.slice(0, t + 1, T), c0 ? { h0, c0 } : { h0 });
        rest.output.select(0, T - t - 2).sum().backward();
        const expected = Math.sqrt(Array.from(h0.grad!.toArray()).reduce((s, v) => s + v * v, 0));
        expect(layers[0].norms[t], `t = ${t}`).to.be.closeTo(expected, 1e-5 + 1e-4 * expected);
      }
      m.zeroGrad();
    });
  }

  it('a tanh RNN with a small W_hh vanishes; an LSTM with forget bias 1 keeps the gradient alive', () => {
    seed(32);
    const T = 40;
    const x = Tensor.randn([T, 4, 2]);
    const rnn = new RNN({ inputSize: 2, hiddenSize: 16 });
    setParam(rnn, 'weight_hh_l0', (i) => (((i * 37) % 11) / 11 - 0.5) * 0.2);
    const lstm = new LSTM({ inputSize: 2, hiddenSize: 16 });
    setParam(lstm, 'bias_ih_l0', (i) => (i >= 16 && i < 32 ? 1 : 0)); // forget gate block
    const r = gradientFlow(rnn, x).layers[0];
    const l = gradientFlow(lstm, x).layers[0];
    console.log(`      first/last step gradient, T = ${T}: tanh RNN ${r.ratio.toExponential(2)}, LSTM ${l.ratio.toExponential(2)}`);
    expect(r.largestSingularValue[0]).to.be.below(1);
    expect(r.ratio).to.be.below(1e-6);
    expect(l.ratio).to.be.above(1e3 * r.ratio);
    // decay is monotone for the small-weight RNN
    for (let t = 1; t < T; ++t) expect(r.norms[t]).to.be.above(r.norms[t - 1]);
  });

  it('largest singular value of W_hh per gate, layers and directions, parameter gradients untouched', () => {
    const rnn = new RNN({ inputSize: 2, hiddenSize: 3, numLayers: 2, bidirectional: true });
    setParam(rnn, 'weight_hh_l0', (i) => [0.5, 0, 0, 0, -2, 0, 0, 0, 1][i]);
    const gru = new GRU({ inputSize: 2, hiddenSize: 2 });
    setParam(gru, 'weight_hh_l0', (i) => [3, 4, 0, 0, /* z */ 1, 0, 0, 1, /* n */ 0, 0, 0, 0][i]);
    const p = rnn.parameters()[0];
    p.grad = Tensor.full(p.shape, 7);
    const flow = gradientFlow(rnn, Tensor.randn([5, 2, 2]));
    expect(flow.layers.map((l) => [l.layer, l.direction])).to.deep.equal([[0, 0], [0, 1], [1, 0], [1, 1]]);
    expect(flow.layers[0].largestSingularValue[0]).to.be.closeTo(2, 1e-5);
    expect(p.grad!.toArray().every((v) => v === 7)).to.equal(true);
    expect(rnn.parameters()[1].grad).to.equal(null);
    const g = gradientFlow(gru, Tensor.randn([5, 2, 2])).layers[0].largestSingularValue;
    expect(g[0]).to.be.closeTo(5, 1e-5);
    expect(g[1]).to.be.closeTo(1, 1e-5);
    expect(g[2]).to.equal(0);
  });

  it('bad arguments: a clear error naming them', () => {
    expect(() => gradientFlow(new Linear({ inFeatures: 2, outFeatures: 2 }) as never, Tensor.zeros([2, 2, 2]))).to.throw(TypeError, /RNN, LSTM or GRU/);
    expect(() => gradientFlow(new RNN({ inputSize: 2, hiddenSize: 2 }), Tensor.zeros([2, 2]))).to.throw(RangeError, /\[T, B, I\]/);
    expect(() => gradientFlow(new RNN({ inputSize: 2, hiddenSize: 2 }), Tensor.zeros([2, 2, 2]), { loss: 3 as never })).to.throw(TypeError, /options.loss/);
  });
});

describe('gateStatistics()', () => {
  it('LSTM gates and forget time constants on hand-set weights', () => {
    const lstm = new LSTM({ inputSize: 2, hiddenSize: 4 });
    for (const name of ['weight_ih_l0', 'weight_hh_l0', 'bias_hh_l0']) setParam(lstm, name, () => 0);
    // i = s(2), f = 0.925, g = tanh(0), o = s(-4)
    setParam(lstm, 'bias_ih_l0', (i) => [2, Math.log(0.925 / 0.075), 0, -4][Math.floor(i / 4)]);
    const stats = gateStatistics(lstm, Tensor.randn([6, 3, 2]));
    const { gates, forgetTimeConstants } = stats.layers[0];
    expect(Object.keys(gates)).to.deep.equal(['i', 'f', 'o']);
    expect(gates.i.mean).to.be.closeTo(1 / (1 + Math.exp(-2)), 1e-6);
    expect(gates.f.mean).to.be.closeTo(0.925, 1e-6);
    expect(gates.o.saturated).to.equal(1); // s(-4) = 0.018
    expect(gates.i.saturated).to.equal(0);
    expect(gates.f.histogram[18]).to.equal(6 * 3 * 4); // in [0.9, 0.95)
    expect(forgetTimeConstants).to.have.length(4);
    for (const tau of forgetTimeConstants!) expect(tau).to.be.closeTo(-1 / Math.log(0.925), 1e-3);
  });

  it('GRU r and z per direction; steps past a row\'s length are left out', () => {
    const gru = new GRU({ inputSize: 2, hiddenSize: 3, bidirectional: true });
    for (const [name] of gru.namedParameters()) setParam(gru, name, () => 0);
    setParam(gru, 'bias_ih_l0', (i) => (i < 3 ? 3 : 0)); // r = s(3), z = 0.5 forward
    const stats = gateStatistics(gru, Tensor.randn([5, 2, 2]), { lengths: [5, 2] });
    expect(stats.layers.map((l) => l.direction)).to.deep.equal([0, 1]);
    expect(stats.layers[0].gates.r.mean).to.be.closeTo(1 / (1 + Math.exp(-3)), 1e-6);
    expect(stats.layers[0].gates.z.mean).to.be.closeTo(0.5, 1e-6);
    expect(stats.layers[1].gates.r.mean).to.be.closeTo(0.5, 1e-6);
    expect(stats.layers[0].gates.z.histogram.reduce((a, b) => a + b, 0)).to.equal((5 + 2) * 3);
    expect(stats.layers[0].forgetTimeConstants).to.equal(undefined);
  });
});
