/**
 * The CPU test cases on 'cuda': every op, loss, optimizer and recurrent layer runs on both
 * devices from the same inputs and the results are compared (the CPU kernels are checked
 * against the double reference elsewhere). Where no GPU is usable the whole file is
 * pending, with the reason, never passed.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  Adam, AdamW, Device, GRU, LSTM, Linear, RNN, RMSprop, SGD, SequenceModel, Tensor, clipGradNorm,
  clipGradValue, crossEntropyLoss, dropout, embedding, emptyCache, fit, huberLoss, linear, load, manualSeed,
  memoryStats, mseLoss, runAsync, save, scope, setFloat32MatmulPrecision, synchronize,
} from '../lib/index';
import { expectClose, pendingWithoutCuda, randomArray, seededRandom } from './helpers';

const devices: Device[] = ['cpu', 'cuda'];

function data(seed: number, n: number, scale = 1): Float32Array {
  return Float32Array.from(randomArray(seededRandom(seed), n, scale));
}

/** Runs `fn` on each device and compares every array it returns (cuda against cpu). */
function sameOnBoth(what: string, fn: (device: Device) => Float32Array[], tol = { rtol: 1e-4, atol: 1e-5 }): void {
  const [cpu, gpu] = devices.map((device) => fn(device));
  expect(gpu.length).to.equal(cpu.length);
  cpu.forEach((expected, i) => expectClose(gpu[i], expected, `${what} [${i}]`, tol));
}

describe('CUDA: the CPU test cases on the GPU, compared', function () {
  this.timeout(300_000);
  before(function () {
    pendingWithoutCuda(this, 'CUDA comparisons');
  });

  it('creation, copies both ways, zero-fill and the random fills (same numbers as the CPU for a seed)', () => {
    const values = data(1, 1000);
    const t = Tensor.from(values, [10, 100], { device: 'cuda' });
    expect(t.device).to.equal('cuda');
    expect(Array.from(t.toArray())).to.deep.equal(Array.from(values));
    const back = t.to('cpu');
    expect(back.device).to.equal('cpu');
    expect(Array.from(back.toArray())).to.deep.equal(Array.from(values));
    expect(t.to('cuda')).to.equal(t);
    expect(Array.from(Tensor.zeros([777], { device: 'cuda' }).toArray()).every((v) => v === 0)).to.equal(true);
    expect(Array.from(Tensor.full([5], 2.5, { device: 'cuda' }).toArray())).to.deep.equal([2.5, 2.5, 2.5, 2.5, 2.5]);
    expect(Tensor.scalar(3, { device: 'cuda' }).item()).to.equal(3);
    sameOnBoth('rand/randn', (device) => {
      manualSeed(7);
      return [Tensor.rand([4099], { device }).toArray(), Tensor.randn([4099], { device, mean: 1, std: 2 }).toArray()];
    }, { rtol: 1e-6, atol: 1e-6 });
    // reused device memory is zeroed again for zeros()
    for (let i = 0; i < 3; ++i) {
      const junk = Tensor.full([4096], 9, { device: 'cuda' });
      junk.dispose();
      expect(Tensor.zeros([4096], { device: 'cuda' }).toArray().every((v) => v === 0)).to.equal(true);
    }
  });

  it('elementwise ops, broadcasting, reductions, shape ops and their gradients', () => {
    sameOnBoth('elementwise', (device) => {
      const a = Tensor.from(data(2, 24), [2, 3, 4], { device, requiresGrad: true });
      const b = Tensor.from(data(3, 4, 0.5), [4], { device, requiresGrad: true });
      const c = Tensor.from(data(4, 6).map((v) => v + 2), [2, 3, 1], { device, requiresGrad: true });
      const pos = a.abs().add(0.5);
      const y = a.tanh().add(b.sigmoid()).mul(a.relu().sub(b)).div(c)
        .add(pos.log().mul(pos.sqrt())).add(a.mul(0.3).exp().neg())
        .add(a.softmax(-1).mul(2)).add(a.logSoftmax(1).mul(0.1))
        .add(a.permute([2, 0, 1]).transpose(0, 2).permute([1, 0, 2]).mul(0.5))
        .add(Tensor.concat([a.slice(2, 0, 2), a.slice(2, 2)], 2).mul(0.25))
        .add(a.select(0, 1).expand([2, 3, 4]).mul(0.1));
      const loss = y.sum(1).square().mean().add(y.sum([0, 2], true).sum());
      loss.backward();
      return [y.toArray(), loss.toArray(), a.grad!.toArray(), b.grad!.toArray(), c.grad!.toArray()];
    });
  });

  it('sums over long axes (block reductions) and matmul in every form, with gradients', () => {
    sameOnBoth('reductions', (device) => {
      const x = Tensor.from(data(5, 300 * 257), [300, 257], { device });
      return [x.sum().toArray(), x.sum(0).toArray(), x.sum(1).toArray(), x.mean([0, 1]).toArray()];
    }, { rtol: 1e-4, atol: 1e-3 });
    sameOnBoth('matmul', (device) => {
      const a = Tensor.from(data(6, 70 * 33), [70, 33], { device, requiresGrad: true });
      const b = Tensor.from(data(7, 33 * 65), [33, 65], { device, requiresGrad: true });
      const p = Tensor.from(data(8, 3 * 5 * 7), [3, 5, 7], { device, requiresGrad: true });
      const q = Tensor.from(data(9, 3 * 7 * 2), [3, 7, 2], { device, requiresGrad: true });
      const y = a.matmul(b);
      const z = p.matmul(q);
      y.square().sum().add(z.square().sum()).backward();
      return [y.toArray(), z.toArray(), a.grad!.toArray(), b.grad!.toArray(), p.grad!.toArray(), q.grad!.toArray()];
    });
  });

  it('step(): a layer and a SequenceModel step by step (on the GPU through forward at T = 1), state carried in place', () => {
    sameOnBoth('step', (device) => {
      manualSeed(21);
      const model = new SequenceModel({ cell: 'lstm', vocabSize: 12, embeddingDim: 6, hiddenSize: 10, numLayers: 2, outputSize: 12, batchFirst: true });
      model.to(device);
      const lm = model.initialState(2);
      const logits = [model.step([3, 7], lm), model.step([1, 11], lm)].map((t) => t.toArray());
      const gru = new GRU({ inputSize: 4, hiddenSize: 5, batchFirst: true }).to(device);
      const state = gru.initialState(3);
      const y = gru.step(Tensor.from(data(22, 12), [3, 4], { device }), state);
      return [...logits, lm.h.toArray(), lm.c!.toArray(), y.toArray(), state.h.toArray()];
    });
  });

  it('linear, dropout (the same mask for a seed), embedding with repeated ids, and the losses', () => {
    sameOnBoth('layers and losses', (device) => {
      manualSeed(11);
      const x = Tensor.from(data(10, 6 * 5), [6, 5], { device, requiresGrad: true });
      const w = Tensor.from(data(11, 7 * 5), [7, 5], { device, requiresGrad: true });
      const bias = Tensor.from(data(12, 7), [7], { device, requiresGrad: true });
      const table = Tensor.from(data(13, 9 * 7), [9, 7], { device, requiresGrad: true });
      const ids = [1, 4, 4, 0, 8, 1];
      const logits = dropout(linear(x, w, bias), 0.3).add(embedding(ids, table, 0));
      const ce = crossEntropyLoss(logits, [3, -100, 6, 0, 2, 2]);
      const ceNone = crossEntropyLoss(logits, [3, 1, 6, 0, 2, 2], { reduction: 'none' });
      const target = Tensor.from(data(14, 42), [6, 7], { device });
      const total = ce.add(ceNone.sum().mul(0.1)).add(mseLoss(logits, target)).add(huberLoss(logits, target, { delta: 0.5 }));
      total.backward();
      return [logits.toArray(), ce.toArray(), ceNone.toArray(), total.toArray(), x.grad!.toArray(), w.grad!.toArray(),
        bias.grad!.toArray(), table.grad!.toArray()];
    });
    // a large vocabulary: the block-per-row softmax and cross-entropy
    sameOnBoth('wide cross-entropy', (device) => {
      const logits = Tensor.from(data(15, 8 * 5000, 4), [8, 5000], { device, requiresGrad: true });
      const loss = crossEntropyLoss(logits, [0, 4999, 17, 2500, 3, 3, 1000, 42]);
      const smoothed = crossEntropyLoss(logits, [0, 4999, -100, 2500, 3, 3, 1000, 42], { labelSmoothing: 0.1 });
      loss.add(smoothed).backward();
      return [loss.toArray(), smoothed.toArray(), logits.grad!.toArray(), logits.softmax().toArray()];
    });
  });

  for (const [name, make] of [
    ['LSTM', (o: object) => new LSTM({ inputSize: 5, hiddenSize: 37, ...o })],
    ['GRU', (o: object) => new GRU({ inputSize: 5, hiddenSize: 37, ...o })],
    ['RNN tanh', (o: object) => new RNN({ inputSize: 5, hiddenSize: 37, ...o })],
    ['RNN relu', (o: object) => new RNN({ inputSize: 5, hiddenSize: 37, nonlinearity: 'relu', ...o })],
  ] as const) {
    it(`${name}: 2 layers, bidirectional, ragged lengths, given state: outputs and every gradient`, () => {
      const T = 9, B = 4;
      sameOnBoth(name, (device) => {
        manualSeed(21);
        const rnn = make({ numLayers: 2, bidirectional: true }).to(device);
        const x = Tensor.from(data(22, T * B * 5), [T, B, 5], { device, requiresGrad: true });
        const h0 = Tensor.from(data(23, 4 * B * 37, 0.5), [4, B, 37], { device, requiresGrad: true });
        const isLstm = rnn instanceof LSTM;
        const c0 = isLstm ? Tensor.from(data(24, 4 * B * 37, 0.5), [4, B, 37], { device, requiresGrad: true }) : null;
        const lengths = [9, 3, 7, 1];
        const out = isLstm
          ? (rnn as LSTM).forward(x, { h0, c0, lengths })
          : (rnn as GRU).forward(x, { h0, lengths });
        const c = (out as { c?: Tensor | null }).c ?? null;
        out.output.square().sum().add(out.h.sum()).add(c ? c.mul(0.5).sum() : Tensor.scalar(0, { device })).backward();
        return [out.output.toArray(), out.h.toArray(), ...(c ? [c.toArray()] : []), x.grad!.toArray(), h0.grad!.toArray(),
          ...(c0 ? [c0.grad!.toArray()] : []), ...rnn.parameters().map((p) => p.grad!.toArray())];
      }, { rtol: 1e-3, atol: 2e-5 });
    });
  }

  it('optimizers (SGD with momentum and Nesterov, Adam, AdamW, RMSprop centered) and clipping, step for step', () => {
    const configs: [string, (p: Tensor[]) => SGD | Adam | RMSprop][] = [
      ['sgd', (p) => new SGD(p, { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01 })],
      ['adam', (p) => new Adam(p, { lr: 0.01, weightDecay: 0.01 })],
      ['adamw', (p) => new AdamW(p, { lr: 0.01 })],
      ['rmsprop', (p) => new RMSprop(p, { lr: 0.01, centered: true, momentum: 0.5, weightDecay: 0.01 })],
    ];
    for (const [name, make] of configs) {
      sameOnBoth(name, (device) => {
        manualSeed(31);
        const model = new Linear({ inFeatures: 6, outFeatures: 3 }).to(device);
        const optimizer = make(model.parameters());
        const x = Tensor.from(data(32, 8 * 6), [8, 6], { device });
        const norms: number[] = [];
        for (let step = 0; step < 5; ++step) {
          optimizer.zeroGrad();
          model.forward(x).square().sum().backward();
          norms.push(clipGradNorm(model.parameters(), 0.5));
          clipGradValue(model.parameters(), 0.2);
          optimizer.step();
        }
        return [Float32Array.from(norms), ...model.parameters().map((p) => p.toArray())];
      }, { rtol: 1e-4, atol: 1e-6 });
    }
  });

  it("module.to('cuda') moves parameters in place; save and load work from the GPU; mixing devices is a clear error", async () => {
    manualSeed(41);
    const lstm = new LSTM({ inputSize: 3, hiddenSize: 8 });
    const params = lstm.parameters();
    const before = params.map((p) => p.toArray());
    const optimizer = new Adam(lstm.parameters(), { lr: 0.01 });
    expect(lstm.to('cuda')).to.equal(lstm);
    expect(lstm.device).to.equal('cuda');
    lstm.parameters().forEach((p, i) => {
      expect(p).to.equal(params[i]);
      expect(p.device).to.equal('cuda');
      expect(Array.from(p.toArray())).to.deep.equal(Array.from(before[i]));
    });
    const x = Tensor.from(data(42, 5 * 2 * 3), [5, 2, 3]);
    expect(() => lstm.forward(x)).to.throw(/is on 'cpu' but input|input is on 'cpu'/).with.property('code', 'ERR_DEVICE_MISMATCH');
    expect(() => x.add(Tensor.ones([3], { device: 'cuda' }))).to.throw(TypeError).with.property('code', 'ERR_DEVICE_MISMATCH');
    lstm.forward(x.to('cuda')).output.sum().backward();
    optimizer.step();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-cuda-'));
    const file = path.join(dir, 'lstm.safetensors');
    await save(lstm, file);
    const loaded = (await load(file)) as LSTM;
    expect(loaded.device).to.equal('cpu');
    loaded.parameters().forEach((p, i) => expect(Array.from(p.toArray())).to.deep.equal(Array.from(lstm.parameters()[i].toArray())));
    lstm.to('cpu');
    expect(lstm.parameters().every((p) => p.device === 'cpu')).to.equal(true);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('fit trains the same on both devices (a token model with dropout, and a continuous-input GRU)', async () => {
    const text = 'the quick brown fox jumps over the lazy dog. '.repeat(12);
    const ids = Float32Array.from(text, (ch) => ch.charCodeAt(0) % 32);
    const histories = [];
    for (const device of devices) {
      manualSeed(51);
      const model = new SequenceModel({ vocabSize: 32, embeddingDim: 16, hiddenSize: 32, numLayers: 2, dropout: 0.2, outputSize: 32 }).to(device);
      const stream = Tensor.from(ids.subarray(0, -1));
      const targets = Tensor.from(ids.subarray(1));
      histories.push(await fit(model, { stream, targets }, { epochs: 2, batchSize: 4, bpttSteps: 16, loss: 'crossEntropy', seed: 5, clipGradNorm: 1 }));
      expect(model.device).to.equal(device);
    }
    expectClose(histories[1].batchLoss, histories[0].batchLoss, 'token model batch losses', { rtol: 1e-3, atol: 1e-4 });
    expect(histories[1].loss[1]).to.be.below(histories[1].loss[0]);
    const seqs = [];
    for (const device of devices) {
      manualSeed(52);
      const model = new SequenceModel({ cell: 'gru', inputSize: 2, hiddenSize: 16, outputSize: 1, outputs: 'last' }).to(device);
      const inputs = Tensor.from(data(53, 32 * 10 * 2), [32, 10, 2]);
      const targets = Tensor.from(data(54, 32), [32, 1]);
      seqs.push(await fit(model, { inputs, targets }, { epochs: 3, batchSize: 8, loss: 'mse', seed: 6 }));
    }
    expectClose(seqs[1].batchLoss, seqs[0].batchLoss, 'GRU regression batch losses', { rtol: 1e-3, atol: 1e-5 });
  });

  it("setFloat32MatmulPrecision('high'): large products go through the TF32 tensor cores (close to FP32, not equal)", () => {
    manualSeed(71);
    const a = Tensor.randn([2048, 512], { device: 'cuda' });
    const b = Tensor.randn([512, 1536], { device: 'cuda' });
    const fp32 = a.matmul(b).toArray();
    setFloat32MatmulPrecision('high');
    let tf32: Float32Array;
    try {
      tf32 = a.matmul(b).toArray();
    } finally {
      setFloat32MatmulPrecision('highest');
    }
    const maxDiff = expectClose(tf32, fp32, 'TF32 against FP32', { rtol: 2e-2, atol: 0.2 });
    expect(maxDiff).to.be.above(1e-3); // really rounded to TF32
    expect(Array.from(a.matmul(b).toArray().subarray(0, 64))).to.deep.equal(Array.from(fp32.subarray(0, 64))); // back to FP32
  });

  it('scope frees device memory; memoryStats reports the GPU; emptyCache returns it; async steps synchronize', async () => {
    const x = Tensor.from(data(61, 256 * 256), [256, 256], { device: 'cuda' });
    const start = memoryStats().cuda!.allocatedBytes;
    for (let i = 0; i < 20; ++i) scope(() => x.matmul(x).relu().sum().item());
    expect(memoryStats().cuda!.allocatedBytes).to.equal(start);
    expect(memoryStats().cuda!.cachedBytes).to.be.above(0);
    const released = emptyCache();
    expect(released).to.be.above(0);
    expect(memoryStats().cuda!.cachedBytes).to.equal(0);
    const y = await runAsync(() => x.matmul(x).sum());
    await synchronize();
    const cpu = x.to('cpu');
    expectClose(y.toArray(), cpu.matmul(cpu).sum().toArray(), 'async matmul sum', { rtol: 1e-4, atol: 1e-2 });
  });
});
