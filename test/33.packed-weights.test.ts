/**
 * Packed weights kept between calls (cpp/pack_cache.h): a recurrent layer packs w_ih and w_hh
 * once per version of their storage. A cache that served stale panels would be a silent wrong
 * answer, so every public way of writing a weight is followed here by a forward that must equal
 * the double reference on the weights as they are now, in sync and async mode, for weights
 * shared between modules and for modules disposed while their packed copies are in use.
 */
import { expect } from 'chai';
import {
  Adam, AdamW, GRU, LSTM, RMSprop, RNN, SGD, Sequential, SequenceModel, Tensor, backward, emptyCache, fit, memoryStats, noGrad,
  runAsync, seed, synchronize,
} from '../lib/index';
import { normal_, uniform_ } from '../lib/nn/init';
import { CellName, StackConfig, expectClose, referenceStack } from './helpers';

type Layer = LSTM | GRU | RNN;

function cellOf(layer: Layer): CellName {
  return layer instanceof LSTM ? 'lstm' : layer instanceof GRU ? 'gru' : layer.nonlinearity === 'relu' ? 'rnn_relu' : 'rnn_tanh';
}

/** A fixed initial state for `layer` at batch B (not zeros: at T = 1, w_hh acts only on h0). */
function initialState(layer: Layer, B: number): { h0: Tensor; c0?: Tensor } {
  const shape = [layer.numLayers * layer.directions, B, layer.hiddenSize];
  const values = (phase: number) => Float32Array.from({ length: shape[0] * B * layer.hiddenSize }, (_, i) => 0.5 * Math.sin(i * 0.7 + phase));
  return { h0: Tensor.from(values(0), shape), ...(layer instanceof LSTM ? { c0: Tensor.from(values(1), shape) } : {}) };
}

/** The layer's output on x (from initialState) against the double reference on its weights as they are now. */
function expectCurrentWeights(layer: Layer, x: Tensor, what: string, output?: Float32Array, zeroState = false): void {
  const [T, B, I] = x.shape;
  const cfg: StackConfig = { cell: cellOf(layer), T, B, I, H: layer.hiddenSize, L: layer.numLayers, D: layer.directions, bias: layer.bias };
  const params = new Map(layer.namedParameters().map(([name, t]) => [name, Float64Array.from(t.toArray())] as [string, Float64Array]));
  const state = zeroState ? { h0: undefined, c0: undefined } : initialState(layer, B);
  const f64 = (t: Tensor | undefined) => (t ? Float64Array.from(t.toArray()) : null);
  const expected = referenceStack(cfg, params, Float64Array.from(x.toArray()), f64(state.h0), f64(state.c0), null).y;
  const actual = output ?? noGrad(() => layer.forward(x, state).output.toArray());
  expectClose(actual, expected, what, { rtol: 1e-4, atol: 1e-5 });
}

function lossStep(layer: Layer, x: Tensor): void {
  const { output } = layer.forward(x);
  backward([output], [Tensor.ones(output.shape)]);
}

describe('packed weights kept between calls', () => {
  const x1 = Tensor.randn([1, 2, 5]); // one step: the path generation and streaming take
  const x3 = Tensor.randn([3, 5, 5]);

  it('every public write path bumps the version, and the next forward uses the new weights', () => {
    const lstm = new LSTM({ inputSize: 5, hiddenSize: 20, numLayers: 2 });
    const weight = lstm.namedParameters().find(([name]) => name === 'weight_hh_l1')![1];
    const writes: [string, () => void][] = [
      ['SGD step', () => { lossStep(lstm, x3); new SGD(lstm.parameters(), { lr: 0.1, momentum: 0.9 }).step(); }],
      ['Adam step', () => { lossStep(lstm, x3); new Adam(lstm.parameters(), { lr: 0.05 }).step(); }],
      ['AdamW step', () => { lossStep(lstm, x3); new AdamW(lstm.parameters(), { lr: 0.05 }).step(); }],
      ['RMSprop step', () => { lossStep(lstm, x3); new RMSprop(lstm.parameters(), { lr: 0.01 }).step(); }],
      ['loadStateDict', () => {
        const other = new LSTM({ inputSize: 5, hiddenSize: 20, numLayers: 2 });
        lstm.loadStateDict(other.stateDict());
      }],
      ['storage.write', () => weight.storage.write(Float32Array.from({ length: 20 * 20 }, (_, i) => Math.sin(i)), 80 * 20 - 400)],
      ['uniform_', () => { uniform_(weight, -0.5, 0.5); }],
      ['normal_', () => { normal_(weight, 0, 0.2); }],
      ['a write through a stateDict() view', () => { uniform_(lstm.stateDict().weight_ih_l0, -0.4, 0.4); }],
      ['to() the same device (no write: the packed copies stay right)', () => { lstm.to('cpu'); }],
    ];
    for (const [name, write] of writes) {
      expectCurrentWeights(lstm, x1, `${name}: before`); // packs at the current versions
      expectCurrentWeights(lstm, x3, `${name}: before, T = 3`);
      const versions = lstm.parameters().map((p) => p.version);
      write();
      if (!name.startsWith('to()')) {
        expect(lstm.parameters().some((p, i) => p.version > versions[i]), `${name} bumps a version`).to.equal(true);
      }
      expectCurrentWeights(lstm, x1, `${name}: after`);
      expectCurrentWeights(lstm, x3, `${name}: after, T = 3`);
    }
  });

  it('backward uses the weights forward saw, and the step after uses the new ones (every cell)', () => {
    for (const layer of [new LSTM({ inputSize: 5, hiddenSize: 9 }), new GRU({ inputSize: 5, hiddenSize: 9, bidirectional: true }),
      new RNN({ inputSize: 5, hiddenSize: 9, nonlinearity: 'relu' })]) {
      const opt = new SGD(layer.parameters(), { lr: 0.02 });
      const losses: number[] = [];
      const fresh: number[] = [];
      for (let step = 0; step < 4; ++step) {
        // the same step once more with nothing kept: packed from scratch it must give the same loss
        const loss = (): Tensor => layer.forward(x3).output.square().sum();
        emptyCache();
        fresh.push(noGrad(() => loss().item()));
        opt.zeroGrad();
        const l = loss();
        losses.push(l.item());
        l.backward();
        opt.step();
      }
      expect(losses, `${cellOf(layer)}: losses with kept packs equal those packed from scratch`).to.deep.equal(fresh);
      expect(losses[3]).to.be.lessThan(losses[0]);
      expectCurrentWeights(layer, x3, `${cellOf(layer)} after training`);
    }
  });

  it('weights shared between two modules: a write through one is seen by the other', () => {
    const lstm = new LSTM({ inputSize: 5, hiddenSize: 12 });
    const a = new Sequential(lstm);
    const b = new Sequential(lstm);
    const viaA = (): Float32Array => noGrad(() => (a.forward(x3) as unknown as Tensor).toArray());
    const first = viaA();
    expectCurrentWeights(lstm, x3, 'before', first, true);
    lossStep(lstm, x3);
    new SGD(b.parameters(), { lr: 1 }).step();
    const second = viaA();
    expect(Array.from(second)).to.not.deep.equal(Array.from(first));
    expectCurrentWeights(lstm, x3, 'after a step through the other module', second, true);
  });

  it('a module disposed while its packed weights are in use: the queued forward finishes right, the copies are freed', async () => {
    emptyCache();
    const base = memoryStats().packedWeightBytes;
    const lstm = new LSTM({ inputSize: 5, hiddenSize: 64, numLayers: 2 });
    const weightBytes = lstm.numParameters() * 4;
    noGrad(() => lstm.forward(x1));
    const held = memoryStats().packedWeightBytes - base;
    // inference keeps w_ih and w_hh once each (plus padding to whole panels)
    expect(held).to.be.at.least(0.9 * weightBytes).and.at.most(1.5 * weightBytes);
    const expected = noGrad(() => lstm.forward(x3).output.toArray());
    const output = await runAsync(() => {
      const y = noGrad(() => lstm.forward(x3).output);
      for (const p of lstm.parameters()) p.dispose(); // while the forward is queued
      return y;
    });
    await synchronize();
    expect(Array.from(output.toArray())).to.deep.equal(Array.from(expected));
    expect(memoryStats().packedWeightBytes).to.equal(base);
  });

  it('a collected module frees its packed weights; emptyCache() drops them all', () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    emptyCache();
    expect(memoryStats().packedWeightBytes).to.equal(0);
    (() => {
      const gru = new GRU({ inputSize: 5, hiddenSize: 48 });
      noGrad(() => gru.forward(x1));
      lossStep(gru, x3); // training adds the backward layouts
      expect(memoryStats().packedWeightBytes).to.be.at.least(1.8 * gru.numParameters() * 4);
    })();
    if (gc) {
      gc();
      gc();
      expect(memoryStats().packedWeightBytes).to.equal(0);
    }
    const lstm = new LSTM({ inputSize: 5, hiddenSize: 16 });
    noGrad(() => lstm.forward(x1));
    expect(memoryStats().packedWeightBytes).to.be.greaterThan(0);
    expect(emptyCache()).to.be.greaterThan(0);
    expect(memoryStats().packedWeightBytes).to.equal(0);
    expectCurrentWeights(lstm, x1, 'after emptyCache()');
  });

  it('async mode: a write queued behind a forward is not seen by it, and is seen by the next one', async () => {
    const lstm = new LSTM({ inputSize: 5, hiddenSize: 16 });
    const weight = lstm.parameters()[1]; // weight_hh_l0
    const state = initialState(lstm, 2);
    const forward = (layer: LSTM) => noGrad(() => layer.forward(x1, state).output);
    const before = forward(lstm).toArray();
    const values = Float32Array.from({ length: weight.size }, (_, i) => Math.cos(i) * 0.3);
    // what the second forward must give: the weights with the written values, computed apart
    const written = new LSTM({ inputSize: 5, hiddenSize: 16 });
    written.loadStateDict(lstm.stateDict());
    written.parameters()[1].storage.write(values, 0);
    const expectedSecond = forward(written).toArray();
    const opt = new Adam(lstm.parameters(), { lr: 0.1 });
    const [y1, y2, y3] = await runAsync(() => {
      const first = forward(lstm);
      weight.storage.write(values, 0); // queued behind the forward
      const second = forward(lstm);
      lossStep(lstm, x3);
      opt.step(); // queued: the next forward must see it
      const third = forward(lstm);
      return [first, second, third];
    });
    await synchronize();
    expect(Array.from(y1.toArray())).to.deep.equal(Array.from(before));
    const afterStep = forward(lstm).toArray();
    expect(Array.from(y3.toArray())).to.deep.equal(Array.from(afterStep));
    expectCurrentWeights(lstm, x1, 'after the queued step', y3.toArray());
    expect(Array.from(y2.toArray())).to.deep.equal(Array.from(expectedSecond));
    expect(Array.from(y2.toArray())).to.not.deep.equal(Array.from(y1.toArray()));
    expect(Array.from(y3.toArray())).to.not.deep.equal(Array.from(y2.toArray()));
  });

  it('fit (async, a step per batch) trains exactly as with the packs dropped before every batch', async () => {
    seed(3); // the data and the template's weights, whatever ran before in this process
    // a learnable target (the mean of each sequence's inputs), so that the loss falls on any draw
    const inputs = Tensor.randn([24, 6, 3]);
    const values = inputs.toArray();
    const means = Array.from({ length: 24 }, (_, n) => values.slice(n * 18, (n + 1) * 18).reduce((a, b) => a + b, 0) / 18);
    const data = { inputs, targets: Tensor.from(means, [24, 1]) };
    const run = async (dropPacks: boolean): Promise<number[]> => {
      const model = new SequenceModel({ cell: 'lstm', inputSize: 3, hiddenSize: 10, outputSize: 1, outputs: 'last' });
      model.loadStateDict(template.stateDict());
      const history = await fit(model, data, {
        epochs: 4, batchSize: 4, loss: 'mse', optimizer: new Adam(model.parameters(), { lr: 0.01 }), shuffle: false, seed: 1,
        ...(dropPacks ? { onBatchEnd: () => { emptyCache(); } } : {}),
      });
      return [...history.batchLoss, ...history.loss];
    };
    const template = new SequenceModel({ cell: 'lstm', inputSize: 3, hiddenSize: 10, outputSize: 1, outputs: 'last' });
    const kept = await run(false);
    const dropped = await run(true);
    expect(kept).to.deep.equal(dropped);
    const epochs = kept.slice(-4); // the epochs' mean losses
    expect(epochs[3]).to.be.lessThan(0.5 * epochs[0]);
  });
});
