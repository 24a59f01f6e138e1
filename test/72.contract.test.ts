/**
 * The training contract exactly as external checks drive it.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  Tensor, LSTM, Linear, Adam, SGD, SequenceModel, mseLoss, crossEntropyLoss, clipGradNorm, fit, save, load, saveSafetensors, loadSafetensors, seed,
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
});
