/**
 * Async mode: native work queued in call order on a worker thread gives the same
 * numbers as sync mode, keeps the event loop free, and survives inputs losing their
 * JS references mid-flight.
 */
import { expect } from 'chai';
import { LSTM, Tensor, backends, backward, manualSeed, runAsync, setNumThreads } from '../lib/index';

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
    const lstm = new LSTM({ inputSize: 128, hiddenSize: 128 });
    const x = Tensor.randn([64, 32, 128]);
    // one step first: a process's first step also faults in the layer's memory and compiles the
    // JS on the path (30-40 ms of one stall under the sanitizers), which is not what is measured
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
    const started = performance.now();
    try {
      for (let i = 0; i < 3; ++i) await runAsync(() => trainStep(lstm, x));
    } finally {
      clearInterval(timer);
    }
    const elapsed = performance.now() - started;
    expect(elapsed).to.be.above(30); // the work is long enough for the timer to matter
    expect(ticks).to.be.above(2);
    expect(maxLate).to.be.below(50);
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
