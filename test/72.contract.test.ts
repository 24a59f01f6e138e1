/**
 * The training contract exactly as external checks drive it.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  Tensor, LSTM, Linear, Adam, SGD, mseLoss, crossEntropyLoss, clipGradNorm, fit, save, load, saveSafetensors, loadSafetensors, seed,
} from '../lib/index';

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
    expect(typeof fit).to.equal('function');
    expect(new SGD(params, { lr: 0.1 })).to.be.instanceOf(SGD);
    expect(crossEntropyLoss(Tensor.zeros([2, 3]), [0, 2]).item()).to.be.closeTo(Math.log(3), 1e-6);
  });
});
