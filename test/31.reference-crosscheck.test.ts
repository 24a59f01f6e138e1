/**
 * The double reference against implementations that share no code with it:
 * TensorFlow.js layers (LSTM with sigmoid recurrent activation, SimpleRNN, and GRU in
 * the one case where its reset-before variant equals PyTorch's reset-after one), and a
 * plain JS transcription of PyTorch's documented equations with packed-sequence
 * semantics for bidirectional, ragged batches.
 */
import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';
import { native } from '../lib/core/native';
import { CELL_CODE, CellName, GATES, expectClose, randomArray, seededRandom } from './helpers';

type Weights = { wih: Float64Array; whh: Float64Array; bih: Float64Array; bhh: Float64Array };

function randomWeights(rand: () => number, cell: CellName, I: number, H: number): Weights {
  const gh = GATES[cell] * H;
  return {
    wih: randomArray(rand, gh * I, 0.7),
    whh: randomArray(rand, gh * H, 0.7),
    bih: randomArray(rand, gh, 0.3),
    bhh: randomArray(rand, gh, 0.3),
  };
}

/** Rows [from, from + count) of a (rows, cols) row-major matrix, transposed to (cols, count). */
function transposedRows(m: Float64Array, cols: number, from: number, count: number): number[][] {
  const out: number[][] = [];
  for (let c = 0; c < cols; ++c) {
    const row: number[] = [];
    for (let r = from; r < from + count; ++r) row.push(m[r * cols + c]);
    out.push(row);
  }
  return out;
}

/** Time-major [T, B, F] flat array to batch-major nested [B][T][F]. */
function toBatchMajor(x: Float64Array, T: number, B: number, F: number): number[][][] {
  return Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => Array.from(x.subarray((t * B + b) * F, (t * B + b + 1) * F))));
}

function fromBatchMajor(nested: number[][][], T: number, B: number, F: number): Float64Array {
  const out = new Float64Array(T * B * F);
  for (let b = 0; b < B; ++b) for (let t = 0; t < T; ++t) for (let f = 0; f < F; ++f) out[(t * B + b) * F + f] = nested[b][t][f];
  return out;
}

async function runTfjs(layer: tfl.layers.Layer, weights: tf.Tensor[], x: number[][][], initialState: tf.Tensor[]): Promise<tf.Tensor[]> {
  const input = tf.tensor3d(x);
  layer.apply(input, { initialState }); // builds the layer
  layer.setWeights(weights);
  return layer.apply(input, { initialState }) as tf.Tensor[];
}

describe('double reference against independent implementations', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  const T = 6, B = 3, I = 4;

  it('LSTM matches tfjs LSTM (PyTorch gate order, biases summed, sigmoid recurrent activation)', async () => {
    const H = 5;
    const rand = seededRandom(11);
    const w = randomWeights(rand, 'lstm', I, H);
    const x = randomArray(rand, T * B * I);
    const h0 = randomArray(rand, B * H, 0.5);
    const c0 = randomArray(rand, B * H, 0.5);
    const ref = native.referenceForward(CELL_CODE.lstm, T, B, I, H, 1, x, null, h0, c0, [w.wih, w.whh, w.bih, w.bhh]);

    const layer = tfl.layers.lstm({ units: H, returnSequences: true, returnState: true, kernelInitializer: 'zeros', recurrentInitializer: 'zeros', recurrentActivation: 'sigmoid' });
    const bias = Array.from(w.bih, (v, i) => v + w.bhh[i]);
    const [seq, h, c] = await runTfjs(layer, [tf.tensor2d(transposedRows(w.wih, I, 0, 4 * H)), tf.tensor2d(transposedRows(w.whh, H, 0, 4 * H)), tf.tensor1d(bias)],
      toBatchMajor(x, T, B, I), [tf.tensor2d(Array.from(h0), [B, H]), tf.tensor2d(Array.from(c0), [B, H])]);
    expectClose(fromBatchMajor(seq.arraySync() as number[][][], T, B, H), ref.y, 'y', { rtol: 1e-4, atol: 1e-6 });
    expectClose(h.dataSync(), ref.hN, 'hN', { rtol: 1e-4, atol: 1e-6 });
    expectClose(c.dataSync(), ref.cN!, 'cN', { rtol: 1e-4, atol: 1e-6 });
  });

  for (const activation of ['tanh', 'relu'] as const) {
    it(`RNN (${activation}) matches tfjs SimpleRNN`, async () => {
      const H = 6;
      const cell: CellName = activation === 'tanh' ? 'rnn_tanh' : 'rnn_relu';
      const rand = seededRandom(activation === 'tanh' ? 12 : 13);
      const w = randomWeights(rand, cell, I, H);
      const x = randomArray(rand, T * B * I);
      const h0 = randomArray(rand, B * H, 0.5);
      const ref = native.referenceForward(CELL_CODE[cell], T, B, I, H, 1, x, null, h0, null, [w.wih, w.whh, w.bih, w.bhh]);
      const layer = tfl.layers.simpleRNN({ units: H, activation, returnSequences: true, returnState: true, kernelInitializer: 'zeros', recurrentInitializer: 'zeros' });
      const bias = Array.from(w.bih, (v, i) => v + w.bhh[i]);
      const [seq, h] = await runTfjs(layer, [tf.tensor2d(transposedRows(w.wih, I, 0, H)), tf.tensor2d(transposedRows(w.whh, H, 0, H)), tf.tensor1d(bias)],
        toBatchMajor(x, T, B, I), [tf.tensor2d(Array.from(h0), [B, H])]);
      expectClose(fromBatchMajor(seq.arraySync() as number[][][], T, B, H), ref.y, 'y', { rtol: 1e-4, atol: 1e-6 });
      expectClose(h.dataSync(), ref.hN, 'hN', { rtol: 1e-4, atol: 1e-6 });
    });
  }

  it('GRU matches tfjs GRU where reset-before equals reset-after (H = 1, b_hn = 0; Keras gate order z, r, h)', async () => {
    const H = 1;
    const rand = seededRandom(14);
    const w = randomWeights(rand, 'gru', I, H);
    w.bhh[2] = 0; // Keras reset-before has no recurrent bias on the candidate
    const x = randomArray(rand, T * B * I);
    const h0 = randomArray(rand, B * H, 0.5);
    const ref = native.referenceForward(CELL_CODE.gru, T, B, I, H, 1, x, null, h0, null, [w.wih, w.whh, w.bih, w.bhh]);
    // PyTorch rows r, z, n -> Keras columns z, r, h
    const order = [1, 0, 2];
    const kernel = [0, 1, 2, 3].map((c) => order.map((g) => w.wih[g * I + c]));
    const recurrent = [order.map((g) => w.whh[g])];
    const bias = order.map((g) => w.bih[g] + (g < 2 ? w.bhh[g] : 0));
    const layer = tfl.layers.gru({ units: H, returnSequences: true, returnState: true, kernelInitializer: 'zeros', recurrentInitializer: 'zeros', recurrentActivation: 'sigmoid' });
    const [seq, h] = await runTfjs(layer, [tf.tensor2d(kernel), tf.tensor2d(recurrent), tf.tensor1d(bias)], toBatchMajor(x, T, B, I),
      [tf.tensor2d(Array.from(h0), [B, H])]);
    expectClose(fromBatchMajor(seq.arraySync() as number[][][], T, B, H), ref.y, 'y', { rtol: 1e-4, atol: 1e-6 });
    expectClose(h.dataSync(), ref.hN, 'hN', { rtol: 1e-4, atol: 1e-6 });
  });

  // PyTorch's equations, transcribed from its documentation, one row at a time.
  function equations(cell: CellName, T2: number, B2: number, I2: number, H: number, D: number, x: Float64Array, lengths: number[],
    h0: Float64Array, c0: Float64Array, ws: Weights[]): { y: Float64Array; hN: Float64Array; cN: Float64Array } {
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    const y = new Float64Array(T2 * B2 * D * H);
    const hN = new Float64Array(D * B2 * H);
    const cN = new Float64Array(D * B2 * H);
    const G = GATES[cell];
    const affine = (w: Float64Array, b: Float64Array, v: ArrayLike<number>, row: number, cols: number) => {
      let s = b[row];
      for (let k = 0; k < cols; ++k) s += w[row * cols + k] * v[k];
      return s;
    };
    for (let d = 0; d < D; ++d) {
      const w = ws[d];
      for (let b = 0; b < B2; ++b) {
        let h = Array.from(h0.subarray((d * B2 + b) * H, (d * B2 + b + 1) * H));
        let c = Array.from(c0.subarray((d * B2 + b) * H, (d * B2 + b + 1) * H));
        const order = [...Array(lengths[b]).keys()];
        if (d === 1) order.reverse();
        for (const t of order) {
          const xt = x.subarray((t * B2 + b) * I2, (t * B2 + b + 1) * I2);
          const gi = (g: number, j: number) => affine(w.wih, w.bih, xt, g * H + j, I2);
          const gh = (g: number, j: number) => affine(w.whh, w.bhh, h, g * H + j, H);
          const hNew = new Array<number>(H);
          const cNew = new Array<number>(H);
          for (let j = 0; j < H; ++j) {
            if (cell === 'lstm') {
              const i = sig(gi(0, j) + gh(0, j)), f = sig(gi(1, j) + gh(1, j));
              const g = Math.tanh(gi(2, j) + gh(2, j)), o = sig(gi(3, j) + gh(3, j));
              cNew[j] = f * c[j] + i * g;
              hNew[j] = o * Math.tanh(cNew[j]);
            } else if (cell === 'gru') {
              const r = sig(gi(0, j) + gh(0, j)), z = sig(gi(1, j) + gh(1, j));
              const n = Math.tanh(gi(2, j) + r * gh(2, j));
              hNew[j] = (1 - z) * n + z * h[j];
            } else {
              const a = gi(0, j) + gh(0, j);
              hNew[j] = cell === 'rnn_tanh' ? Math.tanh(a) : Math.max(0, a);
            }
          }
          expect(G).to.be.greaterThan(0);
          h = hNew;
          if (cell === 'lstm') c = cNew;
          for (let j = 0; j < H; ++j) y[((t * B2 + b) * D + d) * H + j] = h[j];
        }
        hN.set(h, (d * B2 + b) * H);
        cN.set(c, (d * B2 + b) * H);
      }
    }
    return { y, hN, cN };
  }

  for (const cell of ['rnn_tanh', 'rnn_relu', 'lstm', 'gru'] as CellName[]) {
    it(`${cell}: bidirectional, ragged lengths, matches PyTorch's equations written out in JS`, () => {
      const H = 4, D = 2;
      const lengths = [6, 2, 5];
      const rand = seededRandom(20 + CELL_CODE[cell]);
      const ws = [randomWeights(rand, cell, I, H), randomWeights(rand, cell, I, H)];
      const x = randomArray(rand, T * B * I);
      const h0 = randomArray(rand, D * B * H, 0.5);
      const c0 = randomArray(rand, D * B * H, 0.5);
      const ref = native.referenceForward(CELL_CODE[cell], T, B, I, H, D, x, Int32Array.from(lengths), h0, cell === 'lstm' ? c0 : null,
        ws.flatMap((w) => [w.wih, w.whh, w.bih, w.bhh]));
      const expected = equations(cell, T, B, I, H, D, x, lengths, h0, c0, ws);
      expectClose(ref.y, expected.y, 'y', { rtol: 1e-12, atol: 1e-12 });
      expectClose(ref.hN, expected.hN, 'hN', { rtol: 1e-12, atol: 1e-12 });
      if (cell === 'lstm') expectClose(ref.cN!, expected.cN, 'cN', { rtol: 1e-12, atol: 1e-12 });
    });
  }
});
