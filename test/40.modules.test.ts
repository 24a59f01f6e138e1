import { expect } from 'chai';
import { Dropout, Embedding, GRU, LSTM, Linear, RNN, Sequential, Tensor, manualSeed } from '../lib/index';
import { expectClose } from './helpers';

const arr = (t: Tensor) => Array.from(t.toArray());

describe('Linear', () => {
  it('computes x W^T + b over the last dim, with gradients', () => {
    const lin = new Linear({ inFeatures: 3, outFeatures: 2 });
    lin.loadStateDict({ weight: Tensor.from([[1, 0, -1], [2, 1, 0]]), bias: Tensor.from([0.5, -0.5]) });
    const x = Tensor.from([[[1, 2, 3]], [[0, 1, 0]]], undefined, { requiresGrad: true });
    const y = lin.forward(x);
    expect(y.shape).to.deep.equal([2, 1, 2]);
    expect(arr(y)).to.deep.equal([-1.5, 3.5, 0.5, 0.5]);
    y.sum().backward();
    expect(arr(x.grad!)).to.deep.equal([3, 1, -1, 3, 1, -1]);
    expect(arr(lin.weight.grad!)).to.deep.equal([1, 3, 3, 1, 3, 3]);
    expect(arr(lin.bias!.grad!)).to.deep.equal([2, 2]);
  });

  it('initializes U(-1/sqrt(in), 1/sqrt(in)) like PyTorch, and bias: false drops the bias', () => {
    const lin = new Linear({ inFeatures: 16, outFeatures: 64 });
    const w = lin.weight.toArray();
    expect(Math.max(...w.map(Math.abs))).to.be.at.most(0.25);
    expect(Math.max(...w.map(Math.abs))).to.be.above(0.2);
    const noBias = new Linear({ inFeatures: 4, outFeatures: 2, bias: false });
    expect(noBias.bias).to.equal(null);
    expect(noBias.namedParameters().map(([n]) => n)).to.deep.equal(['weight']);
  });
});

describe('Embedding', () => {
  it('gathers rows and scatters gradients back (repeated indices add up)', () => {
    const emb = new Embedding({ numEmbeddings: 4, embeddingDim: 2 });
    emb.loadStateDict({ weight: Tensor.from([[0, 1], [2, 3], [4, 5], [6, 7]]) });
    const out = emb.forward(Tensor.from([[1, 3], [1, 0]]));
    expect(out.shape).to.deep.equal([2, 2, 2]);
    expect(arr(out)).to.deep.equal([2, 3, 6, 7, 2, 3, 0, 1]);
    out.sum().backward();
    expect(arr(emb.weight.grad!)).to.deep.equal([1, 1, 2, 2, 0, 0, 1, 1]);
  });

  it('paddingIdx maps to zeros and receives no gradient; bad indices throw', () => {
    const emb = new Embedding({ numEmbeddings: 3, embeddingDim: 2, paddingIdx: 0 });
    expect(arr(emb.forward([0]))).to.deep.equal([0, 0]);
    emb.forward(Int32Array.from([0, 2])).sum().backward();
    expect(arr(emb.weight.grad!).slice(0, 2)).to.deep.equal([0, 0]);
    expect(() => emb.forward([3])).to.throw(RangeError, /indices\[0\]/);
    expect(() => emb.forward(Tensor.from([0.5]))).to.throw(RangeError, /integers/);
  });
});

describe('Dropout', () => {
  it('zeroes about p of the elements and scales the rest by 1/(1-p), only in training', () => {
    const drop = new Dropout(0.25);
    const y = drop.forward(Tensor.ones([10000])).toArray();
    const zeros = y.filter((v) => v === 0).length;
    expect(zeros / y.length).to.be.closeTo(0.25, 0.02);
    expect(y.filter((v) => v !== 0).every((v) => Math.abs(v - 4 / 3) < 1e-6)).to.equal(true);
    drop.eval();
    expect(arr(drop.forward(Tensor.ones([5])))).to.deep.equal([1, 1, 1, 1, 1]);
  });

  it('manualSeed makes masks repeatable', () => {
    manualSeed(5);
    const a = new Dropout(0.5).forward(Tensor.ones([64])).toArray();
    manualSeed(5);
    const b = new Dropout(0.5).forward(Tensor.ones([64])).toArray();
    expect(Array.from(a)).to.deep.equal(Array.from(b));
  });
});

describe('Sequential', () => {
  it('chains embedding -> LSTM -> Linear, passing the LSTM output on, with PyTorch-style names', () => {
    const model = new Sequential(new Embedding({ numEmbeddings: 10, embeddingDim: 4 }), new LSTM({ inputSize: 4, hiddenSize: 6 }), new Linear({ inFeatures: 6, outFeatures: 10 }));
    const logits = model.forward(Tensor.from([[1, 2], [3, 4], [5, 6]]));
    expect(logits.shape).to.deep.equal([3, 2, 10]);
    expect(model.namedParameters().map(([n]) => n)).to.deep.equal([
      '0.weight', '1.weight_ih_l0', '1.weight_hh_l0', '1.bias_ih_l0', '1.bias_hh_l0', '2.weight', '2.bias',
    ]);
    logits.logSoftmax().mean().backward();
    expect(model.parameters().every((p) => p.grad !== null)).to.equal(true);
    model.zeroGrad();
    expect(model.parameters().every((p) => p.grad === null)).to.equal(true);
    model.eval();
    expect(model.layers.every((m) => !m.training)).to.equal(true);
  });
});

describe('recurrent modules: parameters and state dicts', () => {
  it('names and shapes match PyTorch for a 2-layer bidirectional LSTM', () => {
    const lstm = new LSTM({ inputSize: 3, hiddenSize: 5, numLayers: 2, bidirectional: true });
    const shapes = Object.fromEntries(lstm.namedParameters().map(([n, p]) => [n, p.shape]));
    expect(shapes).to.deep.equal({
      weight_ih_l0: [20, 3], weight_hh_l0: [20, 5], bias_ih_l0: [20], bias_hh_l0: [20],
      weight_ih_l0_reverse: [20, 3], weight_hh_l0_reverse: [20, 5], bias_ih_l0_reverse: [20], bias_hh_l0_reverse: [20],
      weight_ih_l1: [20, 10], weight_hh_l1: [20, 5], bias_ih_l1: [20], bias_hh_l1: [20],
      weight_ih_l1_reverse: [20, 10], weight_hh_l1_reverse: [20, 5], bias_ih_l1_reverse: [20], bias_hh_l1_reverse: [20],
    });
    expect(new GRU({ inputSize: 3, hiddenSize: 5 }).namedParameters().map(([, p]) => p.shape[0])).to.deep.equal([15, 15, 15, 15]);
    expect(new RNN({ inputSize: 3, hiddenSize: 5, bias: false }).namedParameters().map(([n]) => n)).to.deep.equal(['weight_ih_l0', 'weight_hh_l0']);
  });

  it('initializes every parameter U(-1/sqrt(H), 1/sqrt(H))', () => {
    const gru = new GRU({ inputSize: 8, hiddenSize: 16 });
    for (const [name, p] of gru.namedParameters()) {
      const values = p.toArray();
      expect(Math.max(...values.map(Math.abs)), name).to.be.at.most(0.25);
      expect(Math.max(...values.map(Math.abs)), name).to.be.above(0.2);
    }
  });

  it('stateDict -> loadStateDict copies values into another model (same outputs)', () => {
    const a = new GRU({ inputSize: 3, hiddenSize: 4, numLayers: 2 });
    const b = new GRU({ inputSize: 3, hiddenSize: 4, numLayers: 2 });
    const x = Tensor.randn([5, 2, 3]);
    b.loadStateDict(a.stateDict());
    expectClose(b.forward(x).output.toArray(), a.forward(x).output.toArray(), 'output', { rtol: 0, atol: 0 });
    const viaMap = new GRU({ inputSize: 3, hiddenSize: 4, numLayers: 2 });
    viaMap.loadStateDict(new Map(Object.entries(a.stateDict())));
    expectClose(viaMap.forward(x).h.toArray(), a.forward(x).h.toArray(), 'h', { rtol: 0, atol: 0 });
  });

  it('loadStateDict names the missing, unexpected or mis-shaped key and changes nothing', () => {
    const lstm = new LSTM({ inputSize: 3, hiddenSize: 2 });
    const good = lstm.stateDict();
    const before = lstm.stateDict().weight_ih_l0.toArray();
    const { bias_hh_l0: _omitted, ...missing } = good;
    expect(() => lstm.loadStateDict(missing)).to.throw(RangeError, /missing key "bias_hh_l0"/);
    expect(() => lstm.loadStateDict({ ...good, weight_ih_l1: Tensor.zeros([8, 2]) })).to.throw(RangeError, /unexpected key "weight_ih_l1"/);
    expect(() => lstm.loadStateDict({ ...good, weight_ih_l0: Tensor.zeros([8, 3]), weight_hh_l0: Tensor.zeros([8, 3]) }))
      .to.throw(RangeError, /"weight_hh_l0" of shape \[8, 2\] but received \[8, 3\]/);
    expect(Array.from(lstm.stateDict().weight_ih_l0.toArray())).to.deep.equal(Array.from(before));
    expect(() => lstm.loadStateDict({ ...good, bias_ih_l0: [1, 2] as never })).to.throw(TypeError, /"bias_ih_l0" to be a Tensor/);
    const result = lstm.loadStateDict(missing, { strict: false });
    expect(result.missingKeys).to.deep.equal(['bias_hh_l0']);
  });
});
