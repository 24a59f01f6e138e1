/**
 * What a newcomer hit (issue 26), each case one that trained or ran without a word before:
 * one-hot targets read as class ids, a mistyped path trained on as text, generate() returning
 * fewer characters than asked, fit's layout against forward's, and predict()'s types.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Adam, CharLanguageModel, LSTM, SequenceModel, Tensor, TimeSeriesForecaster, fit, noGrad, seed } from '../lib/index';
import { expectClose } from './helpers';

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-newcomer-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Three classes told apart by the sign pattern of the first step's two features. */
function classes(n: number): { inputs: Tensor; ids: Float32Array; oneHot: Float32Array } {
  const x = new Float32Array(n * 4 * 2);
  const ids = new Float32Array(n);
  const oneHot = new Float32Array(n * 3);
  for (let i = 0; i < n; ++i) {
    const c = i % 3;
    ids[i] = c;
    oneHot[i * 3 + c] = 1;
    for (let t = 0; t < 4; ++t) {
      x[(i * 4 + t) * 2] = c === 0 ? 1 : -1;
      x[(i * 4 + t) * 2 + 1] = c === 2 ? 1 : -1;
    }
  }
  return { inputs: Tensor.from(x, [n, 4, 2]), ids, oneHot };
}

describe('fit() with crossEntropy', () => {
  it('refuses one-hot targets with a message that says what to pass, and learns from their argmax', async () => {
    const data = classes(48);
    const oneHot = Tensor.from(data.oneHot, [48, 3]);
    // seeded before the model is made: its initial weights must not depend on the tests run before it
    seed(4);
    const model = new SequenceModel({ cell: 'gru', inputSize: 2, hiddenSize: 8, outputSize: 3, outputs: 'last' });
    let error: (Error & { code?: string }) | null = null;
    await fit(model, { inputs: data.inputs, targets: oneHot }, { loss: 'crossEntropy', epochs: 1 }).catch((e) => { error = e; });
    expect(error).to.be.instanceOf(RangeError);
    expect(error!.code).to.equal('ERR_SHAPE_MISMATCH');
    expect(error!.message).to.contain('[48, 3]').and.contain('argmax(-1)');
    // the same data as class ids, through the suggested argmax
    const ids = oneHot.argmax(-1);
    expect(Array.from(ids.toArray())).to.deep.equal(Array.from(data.ids));
    const history = await fit(model, { inputs: data.inputs, targets: ids }, { loss: 'crossEntropy', epochs: 40, batchSize: 16, optimizer: new Adam(model.parameters(), { lr: 0.01 }), validationData: { inputs: data.inputs, targets: ids } });
    expect(history.valAccuracy.at(-1)).to.equal(1);
    // per-sequence models given [N, T, C] one-hot per step are refused too
    const perStep = new SequenceModel({ cell: 'gru', inputSize: 2, hiddenSize: 8, outputSize: 3 });
    const stepOneHot = Tensor.zeros([48, 4, 3]);
    await fit(perStep, { inputs: data.inputs, targets: stepOneHot }, { loss: 'crossEntropy' }).then(
      () => expect.fail('trained on one-hot per-step targets'),
      (e: Error & { code?: string }) => expect(e.code).to.equal('ERR_SHAPE_MISMATCH'),
    );
  });
});

describe('Tensor#argmax()', () => {
  it('along any dimension, keepDim, the first index on ties, and bad dimensions named', () => {
    const t = Tensor.from([[1, 5, 5], [7, 0, -1]]);
    expect(Array.from(t.argmax().toArray())).to.deep.equal([1, 0]);
    expect(Array.from(t.argmax(0).toArray())).to.deep.equal([1, 0, 0]);
    expect(t.argmax(1, true).shape).to.deep.equal([2, 1]);
    expect(t.argmax(0).requiresGrad).to.equal(false);
    expect(() => t.argmax(2)).to.throw(RangeError, /dim/);
    expect(() => Tensor.from([3]).reshape([]).argmax()).to.throw(RangeError, /scalar/);
  });
});

describe('SequenceModel: batchFirst and predict()', () => {
  it('batchFirst takes and returns fit\'s layout, with the same numbers as the time-major model', () => {
    seed(6);
    const timeMajor = new SequenceModel({ cell: 'lstm', inputSize: 3, hiddenSize: 5, outputSize: 2, numLayers: 2 });
    const batchFirst = new SequenceModel({ cell: 'lstm', inputSize: 3, hiddenSize: 5, outputSize: 2, numLayers: 2, batchFirst: true });
    batchFirst.loadStateDict(timeMajor.stateDict());
    const x = Tensor.randn([4, 7, 3]); // [B, T, F]
    const a = noGrad(() => timeMajor.forward(x.transpose(0, 1)).output.transpose(0, 1));
    const b = noGrad(() => batchFirst.forward(x).output);
    expect(b.shape).to.deep.equal([4, 7, 2]);
    expectClose(b.toArray(), a.toArray(), 'batch-first output', { rtol: 0, atol: 0 });
    expect(batchFirst.config()).to.include({ batchFirst: true });
    // a [B, T] tensor given to a continuous model is refused with the layout it expects
    expect(() => batchFirst.forward(Tensor.zeros([4, 7]))).to.throw(RangeError, /\[B, T, 3\]/);
    expect(() => timeMajor.forward(Tensor.zeros([7, 4, 2]))).to.throw(RangeError, /\[T, B, 3\] but received \[7, 4, 2\]/);
  });

  it('fit trains a batch-first model (a raw batch-first LSTM too) the same as a time-major one', async () => {
    const data = classes(32);
    const run = async (batchFirst: boolean) => {
      seed(7);
      const model = new SequenceModel({ cell: 'gru', inputSize: 2, hiddenSize: 6, outputSize: 3, batchFirst });
      const perStep = Tensor.from(Float32Array.from({ length: 32 * 4 }, (_, k) => data.ids[Math.floor(k / 4)]), [32, 4]);
      const history = await fit(model, { inputs: data.inputs, targets: perStep }, { loss: 'crossEntropy', epochs: 2, batchSize: 8, seed: 1 });
      return history.batchLoss;
    };
    expect(await run(true)).to.deep.equal(await run(false));
    seed(8);
    const lstm = new LSTM({ inputSize: 2, hiddenSize: 3, batchFirst: true });
    const history = await fit(lstm, { inputs: data.inputs, targets: Tensor.zeros([32, 4, 3]) }, { epochs: 1, batchSize: 8 });
    expect(history.steps).to.equal(4);
  });

  it('predict() takes fit\'s [N, T, F] in batches, in eval mode, without a graph', () => {
    seed(9);
    const model = new SequenceModel({ cell: 'gru', inputSize: 2, hiddenSize: 4, outputSize: 3, outputs: 'last', dropout: 0.5, numLayers: 2 });
    const x = Tensor.randn([10, 5, 2]);
    const whole = model.predict(x);
    expect(whole.shape).to.deep.equal([10, 3]);
    expect(whole.requiresGrad).to.equal(false);
    expect(model.training).to.equal(true); // restored
    const inThrees = model.predict(x, { batchSize: 3 });
    expectClose(inThrees.toArray(), whole.toArray(), 'batched predict', { rtol: 0, atol: 1e-6 });
    model.eval();
    const direct = noGrad(() => model.forward(x.transpose(0, 1)).output);
    expectClose(whole.toArray(), direct.toArray(), 'predict against forward in eval mode', { rtol: 0, atol: 1e-6 });
    expect(model.predict(x).argmax(-1).shape).to.deep.equal([10]);
    const sequence = new SequenceModel({ cell: 'lstm', vocabSize: 6, hiddenSize: 4, outputSize: 6 });
    expect(sequence.predict(Tensor.from([[1, 2, 3], [4, 5, 0]])).shape).to.deep.equal([2, 3, 6]);
    expect(() => model.predict(Tensor.zeros([10, 5]))).to.throw(RangeError, /\[N, T, 2\]/);
    expect(() => model.predict(x, { batchSize: 0 })).to.throw(RangeError, /batchSize/);
  });
});

describe('CharLanguageModel: where the text comes from, and generate()', function () {
  this.timeout(60_000);

  it('a string is the text; { file } reads a file, a missing one is ENOENT; a path-like string is refused', async () => {
    const file = path.join(dir, 'corpus.txt');
    fs.writeFileSync(file, 'the cat sat on the mat. '.repeat(20));
    const fromFile = CharLanguageModel.fromFile(file, { hiddenSize: 8, numLayers: 1 });
    expect(fromFile.tokenizer.chars.slice(1).join('')).to.equal(' .acehmnost');
    expect(new CharLanguageModel({ file }, { hiddenSize: 8 }).tokenizer.vocabSize).to.equal(fromFile.tokenizer.vocabSize);
    expect(() => new CharLanguageModel({ file: `${file}t` })).to.throw(/Cannot read the text file .*corpus\.txtt.*no such file/).with.property('code', 'ENOENT');
    // the mistyped path as a plain string: refused, never a vocabulary of "corpus.txtt"
    expect(() => new CharLanguageModel(`${file}t`)).to.throw(RangeError, /looks like a file path: pass \{ file:/).with.property('code', 'ERR_AMBIGUOUS_TEXT');
    expect(() => new CharLanguageModel('corpus.txtt')).to.throw(RangeError).with.property('code', 'ERR_AMBIGUOUS_TEXT');
    expect(new CharLanguageModel({ text: "corpus.txtt" }).tokenizer.vocabSize).to.equal(10); // 9 characters and the unknown id
    let error: (Error & { code?: string }) | null = null;
    await fromFile.train({ file: path.join(dir, 'missing.txt') }, { epochs: 1 }).catch((e) => { error = e; });
    expect(error!.code).to.equal('ENOENT');
    const history = await fromFile.train({ file }, { epochs: 1, batchSize: 4, bpttSteps: 8 });
    expect(history.steps).to.be.above(1);
  });

  it('generate() returns exactly `length` characters, all from the vocabulary, and never samples the unknown id', () => {
    seed(10);
    const lm = new CharLanguageModel('ab'.repeat(50), { hiddenSize: 8, numLayers: 1 }); // untrained: id 0 is a third of the mass
    const text = lm.generate({ prime: 'a', length: 2000, temperature: 1, seed: 1 });
    expect(Array.from(text)).to.have.length(2001);
    expect(text).to.match(/^[ab]+$/);
    // even where id 0 is the likeliest by far
    const head = lm.model.head.bias!;
    const bias = head.toArray();
    bias[0] = 100;
    head.storage.write(bias, 0);
    expect(lm.generate({ prime: 'b', length: 40, temperature: 0 })).to.have.length(41).and.match(/^[ab]+$/);
    expect(lm.generate({ length: 40, topK: 1 })).to.have.length(40).and.match(/^[ab]+$/);
  });
});

describe('TimeSeriesForecaster#predict() types', function () {
  this.timeout(60_000);
  it('one target gives number[], { perTarget: true } gives number[][], several targets need it', async () => {
    const a = Array.from({ length: 80 }, (_, t) => Math.sin(t / 3));
    const b = Array.from({ length: 80 }, (_, t) => Math.cos(t / 3));
    seed(11);
    const one = new TimeSeriesForecaster({ lookback: 8, horizon: 3, hiddenSize: 8 });
    await one.train([a, b], { epochs: 1 });
    const flat: number[] = one.predict([a, b]); // no cast
    expect(flat).to.have.length(3);
    const nested: number[][] = one.predict([a, b], { perTarget: true });
    expect(nested).to.deep.equal([flat]);
    const two = new TimeSeriesForecaster({ lookback: 8, horizon: 3, hiddenSize: 8, targets: [0, 1] });
    await two.train([a, b], { epochs: 1 });
    expect(two.predict([a, b], { perTarget: true }).map((r) => r.length)).to.deep.equal([3, 3]);
    expect(() => two.predict([a, b])).to.throw(RangeError, /2 target series; call predict\(recent, \{ perTarget: true \}\)/);
  });
});

describe('npm in the repository', function () {
  this.timeout(60_000);
  it('prints no warning about the project\'s config, and onnxruntime-node\'s download stays off (allowScripts)', async () => {
    const { spawnSync } = await import('node:child_process');
    const root = path.join(__dirname, '..');
    const r = spawnSync('npm', ['pkg', 'get', 'name'], { cwd: root, encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout.trim()).to.equal('"recurrent"');
    expect(r.stderr).to.not.match(/Unknown project config/); // what .npmrc's onnxruntime-node-install=skip printed on every command
    expect(fs.existsSync(path.join(root, '.npmrc'))).to.equal(false);
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> };
    expect(pkg.allowScripts?.['onnxruntime-node']).to.equal(false);
    // and its CPU runtime, shipped in the package, is there without the postinstall
    const ort = await import('onnxruntime-node');
    expect(ort.InferenceSession).to.be.a('function');
  });
});
