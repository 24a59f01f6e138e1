/**
 * Async mode: native work queued in call order on a worker thread gives the same
 * numbers as sync mode, keeps the event loop free, and survives inputs losing their
 * JS references mid-flight.
 */
import { expect } from 'chai';
import { LSTM, Tensor, backends, backward, manualSeed, runAsync, setNumThreads } from '../lib/index';
import { sizeByTime } from './timing';

function trainStep(lstm: LSTM, x: Tensor): { loss: Tensor } {
  const lengths = Array.from({ length: x.shape[1] }, (_, b) => x.shape[0] - (b % 3));
  const { output, h, c } = lstm.forward(x, { lengths });
  const loss = output.tanh().mean().add(h.square().sum()).add(c.mean());
  backward([loss]);
  return { loss };
}

describe('runAsync()', () => {
  it('gives bit-identical results to sync mode', async () => {
    manualSeed(3);
    const a = new LSTM({ inputSize: 4, hiddenSize: 16, numLayers: 2, bidirectional: true });
    const b = new LSTM({ inputSize: 4, hiddenSize: 16, numLayers: 2, bidirectional: true });
    b.loadStateDict(a.stateDict());
    const x = Tensor.randn([12, 2, 4]);
    const sync = trainStep(a, x).loss.item();
    const { loss } = await runAsync(() => trainStep(b, x));
    expect(loss.item()).to.equal(sync);
    const ga = a.parameters().map((p) => Array.from(p.grad!.toArray()));
    const gb = b.parameters().map((p) => Array.from(p.grad!.toArray()));
    expect(gb).to.deep.equal(ga);
  });

  it('gives bit-identical results with one thread and with several', () => {
    const run = (threads: number) => {
      setNumThreads(threads);
      manualSeed(4);
      const lstm = new LSTM({ inputSize: 256, hiddenSize: 256 });
      const x = Tensor.randn([8, 32, 256]);
      const { loss } = trainStep(lstm, x);
      return [loss.item(), ...lstm.parameters().map((p) => Array.from(p.grad!.toArray().slice(0, 64)))];
    };
    const before = backends().cpu.threads;
    const serial = run(1);
    const parallel = run(2);
    setNumThreads(before);
    expect(parallel).to.deep.equal(serial);
  });

  it('keeps the event loop free while a large layer computes', async () => {
    // what it protects against: async mode running a layer's forward or backward on the main
    // thread, which would hold a timer back for a whole step. The layer is sized so that one
    // step takes 100+ ms here (synchronously, as loaded as the machine is now), and the timer
    // may be late by at most half of that: a blocked loop would be late by a whole step.
    manualSeed(6);
    const lstm = new LSTM({ inputSize: 128, hiddenSize: 128 });
    const sized = sizeByTime((scale) => Tensor.randn([32 * scale, 32, 128]), (x) => { trainStep(lstm, x); }, 100, 32);
    const x = sized.work;
    const bound = Math.max(25, sized.ms / 2);
    // one async step first: its first run on a worker thread faults in that thread's memory
    await runAsync(() => trainStep(lstm, x));
    let ticks = 0;
    let maxLate = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxLate = Math.max(maxLate, now - last - 5);
      last = now;
      ticks += 1;
    }, 5);
    try {
      for (let i = 0; i < 3; ++i) await runAsync(() => trainStep(lstm, x));
    } finally {
      clearInterval(timer);
    }
    console.log(`      step ${sized.ms.toFixed(0)} ms synchronously (T = ${x.shape[0]}); worst timer delay ${maxLate.toFixed(1)} ms over ${ticks} ticks`);
    expect(ticks, 'the timer ran during the steps, not only between them').to.be.above(6);
    expect(maxLate, `a step takes ${sized.ms.toFixed(0)} ms synchronously`).to.be.below(bound);
  });

  it('the addon loads and trains in worker_threads, alongside the main thread', async () => {
    const { Worker } = await import('node:worker_threads');
    const path = await import('node:path');
    const code = `
      const { parentPort } = require('node:worker_threads');
      const { LSTM, Tensor, manualSeed, runAsync } = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'index.js'))});
      manualSeed(9);
      const lstm = new LSTM({ inputSize: 4, hiddenSize: 8 });
      const x = Tensor.randn([5, 3, 4]);
      runAsync(() => { const y = lstm.forward(x).output.sum(); y.backward(); return y; })
        .then((y) => parentPort.postMessage({ loss: y.item(), grad: Array.from(lstm.parameters()[0].grad.toArray().slice(0, 4)) }));
    `;
    const fromWorker = (): Promise<{ loss: number; grad: number[] }> => new Promise((resolve, reject) => {
      const worker = new Worker(code, { eval: true });
      worker.once('message', (m) => { void worker.terminate(); resolve(m); });
      worker.once('error', reject);
    });
    const [a, b] = await Promise.all([fromWorker(), fromWorker()]);
    manualSeed(9);
    const lstm = new LSTM({ inputSize: 4, hiddenSize: 8 });
    const x = Tensor.randn([5, 3, 4]);
    const y = lstm.forward(x).output.sum();
    y.backward();
    expect(a).to.deep.equal(b);
    expect(a.loss).to.equal(y.item());
    expect(a.grad).to.deep.equal(Array.from(lstm.parameters()[0].grad!.toArray().slice(0, 4)));
  });

  it('finishes queued work whose tensors lost every JS reference', async () => {
    const lstm = new LSTM({ inputSize: 8, hiddenSize: 8 });
    const pending = runAsync(() => {
      lstm.forward(Tensor.randn([50, 4, 8])).output.sum().backward();
    });
    expect(global.gc, "mocha runs node with --expose-gc").to.be.a("function");
    global.gc!();
    await pending;
    expect(lstm.parameters().every((p) => p.grad !== null && Number.isFinite(p.grad.toArray()[0]))).to.equal(true);
  });
});
