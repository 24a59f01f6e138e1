/**
 * The training contract exactly as external checks drive it.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  Tensor, LSTM, Linear, Adam, SGD, SequenceModel, mseLoss, crossEntropyLoss, clipGradNorm, fit, save, load, saveSafetensors, loadSafetensors, seed,
  Seq2Seq,
} from '../lib/index';
import { expectClose } from './helpers';

describe('training contract', () => {
  it('runs the documented snippet: forward, loss, clip, step, save, load', async () => {
    seed(1);
    const T = 7, B = 5, H = 6;
    const x = Tensor.randn([T, B, 2]);
    const target = Tensor.randn([B, 1]);
    const lstm = new LSTM({ inputSize: 2, hiddenSize: H });
    const head = new Linear({ inFeatures: H, outFeatures: 1 });
    const params = [...lstm.parameters(), ...head.parameters()];
    const opt = new Adam(params, { lr: 1e-3 });
    const losses: number[] = [];
    for (let i = 0; i < 20; ++i) {
      const { h } = lstm.forward(x);
      const loss = mseLoss(head.forward(h.reshape([B, H])), target);
      expect(loss.size).to.equal(1);
      opt.zeroGrad(); loss.backward(); const norm = clipGradNorm(params, 1.0); opt.step();
      expect(norm).to.be.a('number').and.above(0);
      losses.push(loss.item());
    }
    expect(losses[19]).to.be.below(losses[0]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-contract-'));
    try {
      const file = path.join(dir, 'model.safetensors');
      await save(lstm, file);
      const again = await load(file);
      expect(again).to.be.instanceOf(LSTM);
      expect(Array.from((again as LSTM).forward(x).h.toArray())).to.deep.equal(Array.from(lstm.forward(x).h.toArray()));
      await saveSafetensors(path.join(dir, 't.safetensors'), { a: Tensor.from([1, 2]) });
      expect(Array.from((await loadSafetensors(path.join(dir, 't.safetensors'))).tensors.a.toArray())).to.deep.equal([1, 2]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(crossEntropyLoss(Tensor.zeros([2, 3]), [0, 2]).item()).to.be.closeTo(Math.log(3), 1e-6);
  });

  it('SGD steps by exactly -lr * grad, and fit trains a model from { inputs, targets }', async () => {
    seed(2);
    const linear = new Linear({ inFeatures: 3, outFeatures: 2 });
    const before = linear.parameters().map((p) => Array.from(p.toArray()));
    mseLoss(linear.forward(Tensor.randn([4, 3])), Tensor.randn([4, 2])).backward();
    const grads = linear.parameters().map((p) => Array.from(p.grad!.toArray()));
    new SGD(linear.parameters(), { lr: 0.1 }).step();
    linear.parameters().forEach((p, i) => {
      expectClose(p.toArray(), before[i].map((w, j) => w - 0.1 * grads[i][j]), `parameter ${i}`, { rtol: 1e-6, atol: 1e-7 });
    });

    // y = the mean of the first feature over time: fit must bring the loss well below its start
    seed(3);
    const inputs = Tensor.randn([64, 6, 2]);
    const x = inputs.toArray();
    const y = Float32Array.from({ length: 64 }, (_, n) => [0, 1, 2, 3, 4, 5].reduce((sum, t) => sum + x[(n * 6 + t) * 2], 0) / 6);
    const model = new SequenceModel({ cell: 'lstm', inputSize: 2, hiddenSize: 16, outputSize: 1, outputs: 'last' });
    const history = await fit(model, { inputs, targets: Tensor.from(y, [64, 1]) }, { epochs: 30, batchSize: 16, optimizer: new Adam(model.parameters(), { lr: 1e-2 }) });
    expect(history.steps).to.equal(30 * 4);
    expect(history.loss).to.have.length(30);
    expect(history.loss[29]).to.be.below(history.loss[0] / 4);
  });

  it('sequence to sequence: the Seq2Seq contract as the issue writes it (fit with validation and a signal, translate, attentionWeights, save and load)', async () => {
    seed(3);
    const sourceVocabSize = 6;
    const targetVocabSize = 5;
    const sources = Array.from({ length: 96 }, (_, i) => [i % 6, (i * 7) % 6, (i * 5) % 6].slice(0, 1 + (i % 3)));
    const targets = sources.map((s) => s.map((x) => x % 5).reverse());
    const model = new Seq2Seq({
      cell: 'lstm', sourceVocabSize, targetVocabSize, embeddingDim: 8, hiddenSize: 16, numLayers: 1, bidirectional: true, attention: 'bahdanau', dropout: 0,
    });
    const signal = new AbortController().signal;
    const history = await fit(model, { sources, targets }, { epochs: 2, batchSize: 16, signal, clipGradNorm: 1, validation: { sources: sources.slice(0, 16), targets: targets.slice(0, 16) } });
    expect(history.epochs).to.equal(2);
    expect(history.valLoss.length).to.equal(2);
    const out = model.translate(sources.slice(0, 4), { beamWidth: 5, maxLength: 50, lengthPenalty: 0 });
    expect(out.length).to.equal(4);
    for (const row of out) for (const id of row) expect(id).to.be.a('number').within(0, targetVocabSize - 1);
    const weights = model.attentionWeights(sources[2], targets[2]);
    expect(weights.length).to.equal(targets[2].length + 1);
    for (const row of weights) {
      expect(row.length).to.equal(sources[2].length);
      expectClose([row.reduce((a, b) => a + b, 0)], [1], 'attention row sum', { atol: 1e-5 });
    }
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'g2p-')), 'g2p.safetensors');
    await save(model, file);
    const again = await load(file) as Seq2Seq;
    expect(again.translate(sources.slice(0, 4), { beamWidth: 5, maxLength: 50, lengthPenalty: 0 })).to.deep.equal(out);
  });
});
