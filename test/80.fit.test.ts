/**
 * fit(): liveness of the event loop, cancellation, exact resume from a checkpoint,
 * variable-length batching, truncated BPTT state carrying, validation and callbacks.
 */
import { spawnSync } from 'node:child_process';
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Adam, GRU, History, Module, SequenceModel, Tensor, fit, seed } from '../lib/index';

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-fit-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function regressionData(n: number, T: number, F: number, seedValue: number): { inputs: Tensor; targets: Tensor } {
  seed(seedValue);
  const inputs = Tensor.randn([n, T, F]);
  const x = inputs.toArray();
  const y = new Float32Array(n);
  for (let i = 0; i < n; ++i) for (let t = 0; t < T; ++t) y[i] += x[(i * T + t) * F] / T;
  return { inputs, targets: Tensor.from(y, [n, 1]) };
}

describe('fit()', () => {
  it('keeps the event loop responsive: a timer is never held back by a training step', () => {
    // what it protects against: fit running a step's native work on the main thread, which
    // holds every timer back by a whole step. In a child process with a fresh heap; the fixture
    // sizes its batches so that one synchronous step takes 100+ ms on this machine as it is
    // loaded now, and the timer may be late by at most half of that.
    // Up to 3 runs, the first within the bound passes: on a shared 2-vCPU machine the main
    // thread is sometimes off its core for tens of milliseconds (a CI run saw 59.6 ms against
    // a bound of 56 once, where runs here see 10-30 ms), while a fit that blocks holds every
    // timer back by a whole step in every run.
    const script = path.join(__dirname, 'fixtures', 'fit-liveness.ts');
    const runs: string[] = [];
    for (let attempt = 0; attempt < 3; ++attempt) {
      const result = spawnSync(process.execPath, ['--require', 'tsx/cjs', script], { encoding: 'utf8', timeout: 120_000 });
      expect(result.status, result.stderr).to.equal(0);
      const { worst, ticks, steps, stepMs, timeSteps } = JSON.parse(result.stdout.trim().split('\n').pop()!) as Record<string, number>;
      console.log(`      step ${stepMs.toFixed(0)} ms synchronously (T = ${timeSteps}); worst timer delay ${worst.toFixed(1)} ms over ${ticks} ticks`);
      expect(steps).to.equal(6);
      expect(ticks, 'the timer ran during the steps, not only between them').to.be.above(2 * steps);
      const bound = Math.max(25, stepMs / 2);
      runs.push(`${worst.toFixed(1)} ms (bound ${bound.toFixed(1)}, a step ${stepMs.toFixed(0)} ms synchronously)`);
      if (worst < bound) return;
    }
    expect.fail(`the timer was held back in every run: ${runs.join('; ')}`);
  });

  it('stops cleanly on an AbortSignal and leaves a usable model', async () => {
    seed(2);
    const model = new SequenceModel({ cell: 'gru', inputSize: 3, hiddenSize: 8, outputSize: 1, outputs: 'last' });
    const controller = new AbortController();
    const history = await fit(model, regressionData(64, 5, 3, 3), {
      epochs: 5, batchSize: 8, signal: controller.signal,
      onBatchEnd: ({ step }) => { if (step === 3) controller.abort(); },
    });
    expect(history.stopReason).to.equal('aborted');
    expect(history.steps).to.equal(3);
    expect(history.batchLoss).to.have.length(3);
    expect(model.training).to.equal(true);
    expect(model.forward(Tensor.randn([5, 2, 3])).output.shape).to.deep.equal([2, 1]);
  });

  it('resumes from a mid-run checkpoint with bit-identical losses (shuffling and dropout included)', async () => {
    const data = regressionData(96, 6, 4, 4);
    const make = () => {
      seed(11);
      const model = new SequenceModel({ cell: 'lstm', inputSize: 4, hiddenSize: 12, numLayers: 2, dropout: 0.3, outputSize: 1, outputs: 'last' });
      return { model, optimizer: new Adam(model.parameters(), { lr: 0.01 }) };
    };
    const options = { epochs: 3, batchSize: 16, seed: 5, clipGradNorm: 1 };

    const full = make();
    const unbroken = await fit(full.model, data, { ...options, optimizer: full.optimizer });
    expect(unbroken.steps).to.equal(18);

    const file = path.join(dir, 'run.ckpt.safetensors');
    const first = make();
    const controller = new AbortController();
    const stopped = await fit(first.model, data, {
      ...options, optimizer: first.optimizer, checkpoint: { path: file, everySteps: 4 }, signal: controller.signal,
      onBatchEnd: ({ step }) => { if (step === 10) controller.abort(); }, // the last checkpoint is at step 8, mid epoch 1
    });
    expect(stopped.stopReason).to.equal('aborted');

    const second = make(); // fresh weights: the checkpoint must restore everything
    const resumed = await fit(second.model, data, { ...options, optimizer: second.optimizer, resumeFrom: file });
    expect(resumed.steps).to.equal(18);
    expect(resumed.batchLoss).to.deep.equal(unbroken.batchLoss);
    expect(resumed.loss).to.deep.equal(unbroken.loss);
    const a = full.model.parameters().map((p) => Array.from(p.toArray()));
    const b = second.model.parameters().map((p) => Array.from(p.toArray()));
    expect(b).to.deep.equal(a);
  });

  it('groups variable-length sequences by length and masks padded steps', async () => {
    seed(3);
    const lengths = [2, 9, 4, 7, 3, 8, 5, 6, 9, 1, 4, 6];
    const sequences = lengths.map((T) => Tensor.randn([T, 2]));
    const stepTargets = lengths.map((T) => Tensor.randn([T, 1]));
    const seen: number[][] = [];
    const model = new SequenceModel({ cell: 'gru', inputSize: 2, hiddenSize: 5, outputSize: 1 });
    const history = await fit(model, { sequences, targets: stepTargets }, {
      epochs: 2, batchSize: 4,
      loss: (output, target, { lengths: l }) => {
        seen.push(l!);
        return output.sub(target).square().mean();
      },
    });
    expect(history.steps).to.equal(6);
    for (const l of seen) expect([...l].sort((a, b) => b - a)).to.deep.equal(l); // each batch sorted, longest first
    const perBatch = seen.slice(0, 3).map((l) => [...l].sort((a, b) => a - b).join(','));
    expect(perBatch.sort()).to.deep.equal(['1,2,3,4', '4,5,6,6', '7,8,9,9']);
    // built-in MSE with padding: finite and decreasing over a few epochs
    const masked = await fit(model, { sequences, targets: stepTargets }, { epochs: 4, batchSize: 4, optimizer: new Adam(model.parameters(), { lr: 0.02 }) });
    expect(masked.loss.every(Number.isFinite)).to.equal(true);
    expect(masked.loss[3]).to.be.below(masked.loss[0]);
    // one target per sequence
    const perSequence = await fit(new SequenceModel({ cell: 'lstm', inputSize: 2, hiddenSize: 5, outputSize: 3, outputs: 'last' }),
      { sequences, targets: Tensor.randn([12, 3]) }, { epochs: 1, batchSize: 5 });
    expect(perSequence.steps).to.equal(3);
  });

  it('truncated BPTT over a stream carries the detached state across windows and resets it each epoch', async () => {
    seed(4);
    const inner = new GRU({ inputSize: 1, hiddenSize: 3 });
    const received: (Tensor | null)[] = [];
    const returned: Tensor[] = [];
    class Spy extends Module {
      readonly gru = this.registerModule('gru', inner);
      forward(x: Tensor, options: { state?: { h: Tensor } | null }): { output: Tensor; state: { h: Tensor } } {
        received.push(options.state?.h ?? null);
        const { output, h } = this.gru.forward(x, { h0: options.state?.h ?? null });
        returned.push(h);
        return { output: output.sum(2, true), state: { h } };
      }
    }
    const stream = Tensor.randn([40, 1]);
    const history = await fit(new Spy(), { stream, targets: Tensor.randn([40, 1]) }, { epochs: 2, batchSize: 4, bpttSteps: 3 });
    expect(history.steps).to.equal(8); // 40 / 4 = 10 steps per stream, windows of 3 -> 4 per epoch
    expect(received[0]).to.equal(null);
    expect(received[4]).to.equal(null);
    for (const k of [1, 2, 3, 5, 6, 7]) {
      expect(received[k]!.requiresGrad).to.equal(false);
      expect(received[k]!.storage).to.equal(returned[k - 1].storage); // the previous window's final state, detached
    }
  });

  it('validates, reports progress, calls back every epoch and stops early', async () => {
    seed(5);
    const model = new SequenceModel({ cell: 'rnn', inputSize: 3, hiddenSize: 6, outputSize: 1, outputs: 'last' });
    const progress: { loss: number; timestepSamplesPerSecond: number; etaSeconds: number; batch: number; batches: number }[] = [];
    const epochs: number[] = [];
    const history: History = await fit(model, regressionData(64, 4, 3, 6), {
      epochs: 50, batchSize: 16, validationData: regressionData(32, 4, 3, 7),
      optimizer: new Adam(model.parameters(), { lr: 0.5 }), // too high: validation stalls, early stopping kicks in
      earlyStopping: { patience: 2 },
      onProgress: (p) => progress.push(p),
      onEpochEnd: ({ epoch, valLoss }) => {
        expect(valLoss).to.be.a('number');
        epochs.push(epoch);
      },
    });
    expect(history.stopReason).to.equal('earlyStopping');
    expect(history.epochs).to.be.below(50);
    expect(history.valLoss).to.have.length(history.epochs);
    expect(epochs).to.deep.equal([...Array(history.epochs).keys()]);
    expect(progress).to.have.length(history.steps);
    expect(progress[0].batches).to.equal(4);
    expect(progress[0].timestepSamplesPerSecond).to.be.above(0);
    expect(progress[progress.length - 1].etaSeconds).to.be.at.least(0);
  });

  it('learns next-token prediction on a token stream with crossEntropy, reporting validation accuracy', async () => {
    seed(6);
    const pattern = [0, 1, 2, 3, 2, 1];
    const tokens = Array.from({ length: 601 }, (_, i) => pattern[i % pattern.length]);
    const stream = Tensor.from(tokens.slice(0, -1));
    const targets = Tensor.from(tokens.slice(1));
    const model = new SequenceModel({ cell: 'gru', vocabSize: 4, hiddenSize: 16, outputSize: 4 });
    const accuracies: number[] = [];
    const history = await fit(model, { stream, targets }, {
      epochs: 8, batchSize: 4, bpttSteps: 25, loss: 'crossEntropy', optimizer: new Adam(model.parameters(), { lr: 0.03 }),
      validationData: { stream, targets }, onEpochEnd: ({ valAccuracy }) => { accuracies.push(valAccuracy!); },
    });
    expect(history.valAccuracy).to.deep.equal(accuracies);
    // after a 2 the next token is 3 or 1 depending on direction: memory of one step back is needed
    expect(history.valAccuracy[history.valAccuracy.length - 1]).to.be.above(0.95);
    expect(history.valLoss[history.valLoss.length - 1]).to.be.below(history.valLoss[0]);
  });

  it('stops on a non-finite loss before it reaches the weights, or skips such steps on request', async () => {
    seed(7);
    const data = regressionData(32, 4, 3, 9);
    const x = data.inputs.toArray();
    x[5 * 12] = NaN; // one poisoned sample
    const poisoned = { inputs: Tensor.from(x, data.inputs.shape), targets: data.targets };
    const model = new SequenceModel({ cell: 'gru', inputSize: 3, hiddenSize: 6, outputSize: 1, outputs: 'last' });
    let error: unknown;
    await fit(model, poisoned, { epochs: 1, batchSize: 8, shuffle: false }).catch((e) => (error = e));
    expect(error).to.be.instanceOf(RangeError);
    expect((error as { code: string }).code).to.equal('ERR_NON_FINITE');
    expect((error as Error).message).to.match(/step 1 \(epoch 1, batch 1\) produced a non-finite loss/);
    expect(model.parameters().every((p) => p.toArray().every(Number.isFinite))).to.equal(true);
    const history = await fit(model, poisoned, { epochs: 2, batchSize: 8, shuffle: false, nonFinite: 'skip' });
    expect(history.skippedSteps).to.equal(2);
    expect(history.steps).to.equal(8);
    expect(history.batchLoss).to.have.length(6);
    expect(model.parameters().every((p) => p.toArray().every(Number.isFinite))).to.equal(true);
  });

  it('rejects bad data and options with errors naming them', async () => {
    const model = new SequenceModel({ cell: 'gru', inputSize: 3, hiddenSize: 4, outputSize: 1, outputs: 'last' });
    const data = regressionData(8, 4, 3, 8);
    const fails = async (p: Promise<unknown>, kind: typeof TypeError, pattern: RegExp) => {
      let error: unknown;
      await p.catch((e) => (error = e));
      expect(error).to.be.instanceOf(kind);
      expect((error as Error).message).to.match(pattern);
    };
    await fails(fit(model, data, { epochs: 0 }), RangeError, /options\.epochs/);
    await fails(fit(model, data, { batchSize: 2.5 }), RangeError, /options\.batchSize/);
    await fails(fit(model, data, { loss: 'l1' as never }), RangeError, /options\.loss/);
    await fails(fit(model, data, { bpttSteps: 2 }), RangeError, /per-step targets/);
    await fails(fit(model, { inputs: data.inputs, targets: Tensor.zeros([7, 1]) }), RangeError, /one entry per sample/);
    await fails(fit(model, { stuff: 1 } as never), TypeError, /inputs, sequences or stream/);
    await fails(fit({} as never, data), TypeError, /model to be a Module/);
    await fails(fit(model, data, { epochz: 1 } as never), TypeError, /options\.epochz/);
  });
  it('trains two models concurrently with the same results as one after the other', async () => {
    // dropout and shuffling draw random numbers: each fit draws them from its own generator
    const setup = (): { a: SequenceModel; b: SequenceModel } => {
      seed(21);
      return {
        a: new SequenceModel({ cell: 'lstm', inputSize: 4, hiddenSize: 16, numLayers: 2, dropout: 0.3, outputSize: 1, outputs: 'last' }),
        b: new SequenceModel({ cell: 'gru', inputSize: 4, hiddenSize: 12, numLayers: 2, dropout: 0.2, bidirectional: true, outputSize: 1, outputs: 'last' }),
      };
    };
    const dataA = regressionData(64, 12, 4, 5);
    const dataB = regressionData(48, 9, 4, 6);
    const options = (m: Module, s: number) => ({ epochs: 3, batchSize: 8, seed: s, optimizer: new Adam(m.parameters(), { lr: 1e-2 }) });
    const flat = (m: Module): number[] => m.parameters().flatMap((p) => Array.from(p.toArray()));

    const one = setup();
    const hA1 = await fit(one.a, dataA, options(one.a, 1));
    const hB1 = await fit(one.b, dataB, options(one.b, 2));
    const two = setup();
    let interleaved = 0;
    let last = '';
    const note = (who: string) => () => {
      if (last !== who) interleaved += 1;
      last = who;
    };
    const [hA2, hB2] = await Promise.all([
      fit(two.a, dataA, { ...options(two.a, 1), onBatchEnd: note('a') }),
      fit(two.b, dataB, { ...options(two.b, 2), onBatchEnd: note('b') }),
    ]);
    expect(interleaved).to.be.greaterThan(4); // the two really ran at the same time
    expect(hA2.batchLoss).to.deep.equal(hA1.batchLoss);
    expect(hB2.batchLoss).to.deep.equal(hB1.batchLoss);
    expect(flat(two.a)).to.deep.equal(flat(one.a));
    expect(flat(two.b)).to.deep.equal(flat(one.b));
    expect(hA1.batchLoss[hA1.batchLoss.length - 1]).to.be.lessThan(hA1.batchLoss[0]);
  });
});
