/**
 * Bad arguments at every public entry point throw a TypeError (wrong kind of value) or
 * a RangeError (right kind, wrong size or shape) that names the argument. Nothing a
 * user passes may crash the process.
 */
import { expect } from 'chai';
import { Embedding, GRU, LSTM, Linear, RNN, Tensor, backward, noGrad } from '../lib/index';

type ErrorClass = typeof TypeError | typeof RangeError;

function expectError(fn: () => unknown, kind: ErrorClass, pattern: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected a ${kind.name} matching ${pattern}`).to.be.instanceOf(kind);
  expect((caught as Error).message).to.match(pattern);
  expect((caught as { code?: string }).code).to.be.a('string').and.match(/^ERR_/);
}

describe('validation: recurrent constructors', () => {
  const bad: [string, object, ErrorClass, RegExp][] = [
    ['missing hiddenSize', { inputSize: 3 }, TypeError, /options\.hiddenSize/],
    ['zero hiddenSize', { inputSize: 3, hiddenSize: 0 }, RangeError, /options\.hiddenSize.*received 0/],
    ['negative inputSize', { inputSize: -2, hiddenSize: 4 }, RangeError, /options\.inputSize/],
    ['fractional numLayers', { inputSize: 3, hiddenSize: 4, numLayers: 1.5 }, RangeError, /options\.numLayers/],
    ['NaN hiddenSize', { inputSize: 3, hiddenSize: NaN }, RangeError, /options\.hiddenSize/],
    ['string inputSize', { inputSize: '3', hiddenSize: 4 }, TypeError, /options\.inputSize/],
    ['dropout of 1', { inputSize: 3, hiddenSize: 4, dropout: 1 }, RangeError, /options\.dropout/],
    ['non-boolean bidirectional', { inputSize: 3, hiddenSize: 4, bidirectional: 1 }, TypeError, /options\.bidirectional/],
    ['misspelled option', { inputSize: 3, hiddenSize: 4, hiddensize: 4 }, TypeError, /options\.hiddensize/],
  ];
  for (const [label, options, kind, pattern] of bad) {
    it(`LSTM / GRU / RNN reject ${label}`, () => {
      expectError(() => new LSTM(options as never), kind, pattern);
      expectError(() => new GRU(options as never), kind, pattern);
      expectError(() => new RNN(options as never), kind, pattern);
    });
  }
  it('RNN rejects an unknown nonlinearity; LSTM rejects nonlinearity', () => {
    expectError(() => new RNN({ inputSize: 2, hiddenSize: 2, nonlinearity: 'sigmoid' as never }), RangeError, /nonlinearity/);
    expectError(() => new LSTM({ inputSize: 2, hiddenSize: 2, nonlinearity: 'relu' } as never), TypeError, /options\.nonlinearity/);
    expectError(() => new LSTM(null as never), TypeError, /options/);
  });
});

describe('validation: LSTM#forward() and friends', () => {
  const lstm = new LSTM({ inputSize: 32, hiddenSize: 8, numLayers: 2 });
  const gru = new GRU({ inputSize: 32, hiddenSize: 8 });
  const x = Tensor.zeros([10, 4, 32]);

  it('input of the wrong feature size or rank names the expected shape', () => {
    expectError(() => lstm.forward(Tensor.zeros([10, 4, 31])), RangeError, /expected input of shape \[T, B, 32\].*received \[10, 4, 31\]/);
    expectError(() => lstm.forward(Tensor.zeros([32])), RangeError, /received \[32\]/);
    expectError(() => lstm.forward(Tensor.zeros([2, 10, 4, 32])), RangeError, /received \[2, 10, 4, 32\]/);
    expectError(() => lstm.forward(Tensor.zeros([0, 4, 32])), RangeError, /received \[0, 4, 32\]/);
    const batchFirst = new GRU({ inputSize: 32, hiddenSize: 8, batchFirst: true });
    expectError(() => batchFirst.forward(Tensor.zeros([4, 10, 3])), RangeError, /\[B, T, 32\]/);
  });

  it('plain arrays or typed arrays where a Tensor belongs', () => {
    expectError(() => lstm.forward([[1, 2]] as never), TypeError, /input to be a Tensor.*Array/);
    expectError(() => lstm.forward(new Float32Array(10) as never), TypeError, /input to be a Tensor.*Float32Array/);
    expectError(() => lstm.forward(x, { h0: [0, 0] as never }), TypeError, /options\.h0 to be a Tensor/);
  });

  it('initial states of the wrong shape, and c0 for a GRU', () => {
    expectError(() => lstm.forward(x, { h0: Tensor.zeros([1, 4, 8]) }), RangeError, /h0 of shape \[2, 4, 8\] but received \[1, 4, 8\]/);
    expectError(() => lstm.forward(x, { c0: Tensor.zeros([2, 4, 9]) }), RangeError, /c0 of shape \[2, 4, 8\]/);
    expectError(() => gru.forward(x, { c0: Tensor.zeros([1, 4, 8]) }), TypeError, /c0 is only used by LSTM/);
  });

  it('bad lengths: wrong count, out of range, fractional, NaN, wrong type', () => {
    expectError(() => lstm.forward(x, { lengths: [10, 3] }), RangeError, /options\.lengths.*\(4\) but received 2/);
    expectError(() => lstm.forward(x, { lengths: [10, 3, 0, 1] }), RangeError, /options\.lengths\[2\].*\[1, 10\].*received 0/);
    expectError(() => lstm.forward(x, { lengths: [11, 3, 2, 1] }), RangeError, /options\.lengths\[0\]/);
    expectError(() => lstm.forward(x, { lengths: [10, 2.5, 2, 1] }), RangeError, /options\.lengths\[1\]/);
    expectError(() => lstm.forward(x, { lengths: [10, NaN, 2, 1] }), RangeError, /options\.lengths\[1\]/);
    expectError(() => lstm.forward(x, { lengths: ['10', 2, 2, 1] as never }), TypeError, /options\.lengths\[0\]/);
    expectError(() => lstm.forward(x, { lengths: 4 as never }), TypeError, /options\.lengths/);
  });

  it('unknown forward options and disposed tensors', () => {
    expectError(() => lstm.forward(x, { hx: Tensor.zeros([2, 4, 8]) } as never), TypeError, /options\.hx/);
    const gone = Tensor.zeros([10, 4, 32]);
    gone.dispose();
    expectError(() => lstm.forward(gone), TypeError, /input is a disposed Tensor/);
  });

  it('Linear and Embedding check their inputs', () => {
    const lin = new Linear({ inFeatures: 3, outFeatures: 2 });
    expectError(() => lin.forward(Tensor.zeros([4, 5])), RangeError, /input of shape \[\.\.\., 3\] but received \[4, 5\]/);
    expectError(() => new Linear({ inFeatures: 0, outFeatures: 2 }), RangeError, /options\.inFeatures/);
    expectError(() => new Embedding({ numEmbeddings: 5, embeddingDim: 2, paddingIdx: 5 }), RangeError, /options\.paddingIdx/);
    expectError(() => new Embedding({ numEmbeddings: 5, embeddingDim: 2 }).forward('abc' as never), TypeError, /indices/);
  });
});

describe('validation: Tensor', () => {
  it('creation rejects bad data, shapes and options', () => {
    expectError(() => Tensor.from('abc' as never), TypeError, /data/);
    expectError(() => Tensor.from([1, 2, 3], [2, 2]), RangeError, /4 elements for shape \[2, 2\] but received 3/);
    expectError(() => Tensor.from([[1, 2], [3]]), RangeError, /ragged/);
    expectError(() => Tensor.from([1, 'a'] as never), TypeError, /data\[1\]/);
    expectError(() => Tensor.zeros([2, -1]), RangeError, /shape\[1\]/);
    expectError(() => Tensor.zeros([2, 1.5]), RangeError, /shape\[1\]/);
    expectError(() => Tensor.zeros([2 ** 20, 2 ** 20]), RangeError, /too many elements/);
    expectError(() => Tensor.zeros(3 as never), TypeError, /shape/);
    expectError(() => Tensor.zeros([2], { device: 'tpu' as never }), TypeError, /options\.device/);
    expectError(() => Tensor.zeros([2], { device: 'cuda' }), TypeError, /cuda/);
    expectError(() => Tensor.zeros([2], { requiresGrad: 'yes' as never }), TypeError, /options\.requiresGrad/);
  });

  it('ops reject mismatched shapes, bad dims and non-tensors', () => {
    const a = Tensor.zeros([2, 3]);
    expectError(() => a.add(Tensor.zeros([4])), RangeError, /\[2, 3\] and \[4\] cannot be broadcast/);
    expectError(() => a.matmul(Tensor.zeros([2, 3])), RangeError, /matmul/);
    expectError(() => a.matmul([1, 2] as never), TypeError, /other to be a Tensor/);
    expectError(() => a.sum(2), RangeError, /dim/);
    expectError(() => a.select(0, 2), RangeError, /index/);
    expectError(() => a.slice(1, 2, 1), RangeError, /end/);
    expectError(() => a.transpose(0, 5), RangeError, /dim1/);
    expectError(() => Tensor.concat([a, Tensor.zeros([3, 3])], 1), RangeError, /tensors\[1\]/);
    expectError(() => Tensor.concat([] as never), TypeError, /tensors/);
    expectError(() => a.mul(NaN), RangeError, /other/);
    expectError(() => a.item(), RangeError, /one-element/);
  });

  it('backward rejects non-tensors, tensors without grad and mis-shaped grads', () => {
    expectError(() => backward([1] as never), TypeError, /tensors\[0\]/);
    expectError(() => backward([Tensor.zeros([1])]), TypeError, /does not require grad/);
    const y = Tensor.zeros([2], { requiresGrad: true }).mul(2);
    expectError(() => backward([y], [Tensor.zeros([3])]), RangeError, /grads\[0\] of shape \[2\]/);
    expectError(() => backward([y], ['x'] as never), TypeError, /grads\[0\]/);
    expectError(() => noGrad(5 as never), TypeError, /fn/);
  });
});
