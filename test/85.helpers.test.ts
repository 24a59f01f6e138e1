/**
 * Text and time-series helpers: tokenizers, sampling, CharLanguageModel and
 * TimeSeriesForecaster (vocabulary and scaling statistics saved with the model).
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CharLanguageModel, CharTokenizer, Tensor, TimeSeriesForecaster, WordTokenizer, makeWindows, noGrad, sampleLogits, seed } from '../lib/index';

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-helpers-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('tokenizers', () => {
  it('CharTokenizer round-trips, maps unseen characters to 0, and serializes', () => {
    const t = CharTokenizer.fromText('hello, world');
    expect(t.vocabSize).to.equal(10); // 9 distinct + the unknown id
    expect(t.decode(t.encode('hello'))).to.equal('hello');
    expect(Array.from(t.encode('hz'))[1]).to.equal(0);
    const again = new CharTokenizer(t.toJSON().chars);
    expect(Array.from(again.encode('world'))).to.deep.equal(Array.from(t.encode('world')));
  });

  it('WordTokenizer keeps whitespace and punctuation so decode(encode(text)) is the text', () => {
    const text = 'The cat sat.  The dog, too!\nThe end';
    const t = WordTokenizer.fromText(text);
    expect(t.decode(t.encode(text))).to.equal(text);
    const small = WordTokenizer.fromText(text, { maxVocab: 4 });
    expect(small.vocabSize).to.equal(4);
    expect(small.decode(small.encode('The zebra'))).to.equal('The <unk>');
  });

  it('sampleLogits: temperature 0 is the arg-max, top-k never leaves the k best', () => {
    expect(sampleLogits([0.1, 3, 0.2], 0)).to.equal(1);
    seed(1);
    for (let i = 0; i < 200; ++i) expect([2, 3]).to.include(sampleLogits([0, 0, 5, 4.5], 1.5, 2));
  });
});

describe('CharLanguageModel', function () {
  this.timeout(60_000);
  it('learns a repetitive text, generates from a prime, and saves its vocabulary with it', async () => {
    seed(2);
    const text = 'abcabcabd '.repeat(300);
    const lm = new CharLanguageModel(text, { hiddenSize: 24, numLayers: 1, embeddingDim: 8 });
    const before = lm.bitsPerChar(text.slice(0, 200));
    const epochs: number[] = [];
    await lm.train(text, { epochs: 3, batchSize: 8, bpttSteps: 20, lr: 0.02, onEpochEnd: ({ valBitsPerChar }) => { epochs.push(valBitsPerChar!); } });
    expect(epochs).to.have.length(3);
    const after = lm.bitsPerChar(text.slice(0, 200));
    expect(after).to.be.below(0.6 * before);
    expect(after).to.be.below(1.2); // the unigram entropy of this text is about 2.1 bits
    const sample = lm.generate({ prime: 'ab', length: 30, temperature: 0, seed: 1 });
    expect(sample.startsWith('ab')).to.equal(true);
    expect(sample).to.have.length(32);
    expect(sample).to.match(/^ab(c|d)/);
    const file = path.join(dir, 'char.safetensors');
    await lm.save(file);
    const again = await CharLanguageModel.load(file);
    expect(again.tokenizer.chars).to.deep.equal(lm.tokenizer.chars);
    expect(again.generate({ prime: 'ab', length: 30, temperature: 0 })).to.equal(sample);
    expect(again.history!.epochs).to.equal(3);
  });

  it('generate() at temperature 1 draws what a plain loop draws: forward() over all the text so far, a fresh array each step', () => {
    seed(3);
    const lm = new CharLanguageModel('the cat sat on the mat; '.repeat(20), { hiddenSize: 16, numLayers: 2, embeddingDim: 8 });
    const V = lm.tokenizer.vocabSize;
    for (const [temperature, topK] of [[1, undefined], [0.7, 3]] as const) {
      const fast = lm.generate({ prime: 'the ', length: 40, temperature, topK, seed: 5 });
      seed(5);
      const ids = Array.from(lm.tokenizer.encode('the '));
      for (let i = 0; i < 40; ++i) {
        const logits = noGrad(() => lm.model.forward(Tensor.from(Float32Array.from(ids), [ids.length, 1])).output.select(0, ids.length - 1).toArray());
        const candidates = Float32Array.from(logits.subarray(0, V));
        candidates[0] = -Infinity;
        ids.push(sampleLogits(candidates, temperature, topK));
      }
      expect(fast).to.equal(lm.tokenizer.decode(Int32Array.from(ids)));
    }
  });
});

describe('time series', function () {
  this.timeout(60_000);
  it('makeWindows: shapes, values relative to the last input step, several series', () => {
    const a = [1, 2, 3, 4, 5, 6];
    const b = [10, 20, 30, 40, 50, 60];
    const { inputs, targets, scale } = makeWindows([a, b], { lookback: 3, horizon: 2, targets: [1], scale: [1, 10] });
    expect(inputs.shape).to.deep.equal([2, 3, 2]);
    expect(targets.shape).to.deep.equal([2, 2]);
    expect(scale).to.deep.equal([1, 10]);
    expect(Array.from(inputs.toArray().slice(0, 6))).to.deep.equal([-2, -2, -1, -1, 0, 0]);
    expect(Array.from(targets.toArray())).to.deep.equal([1, 2, 1, 2]);
    expect(() => makeWindows([1, 2, 3], { lookback: 3, horizon: 1 })).to.throw(RangeError, /shorter than lookback \+ horizon/);
  });

  it('TimeSeriesForecaster forecasts a seasonal trend in original units and keeps its statistics in the file', async () => {
    const series = Array.from({ length: 400 }, (_, t) => 100 + 0.5 * t + 10 * Math.sin((2 * Math.PI * t) / 12));
    const train = series.slice(0, 376);
    const truth = series.slice(376);
    seed(3);
    const f = new TimeSeriesForecaster({ lookback: 24, horizon: 24, hiddenSize: 32 });
    await f.train(train, { epochs: 25, lr: 0.005, seed: 3 });
    const forecast = f.predict(train);
    expect(forecast).to.have.length(24);
    const rmse = Math.sqrt(forecast.reduce((s, v, i) => s + (v - truth[i]) ** 2, 0) / 24);
    const naive = truth.map((_, h) => series[376 - 12 * Math.ceil((h + 1) / 12) + h]);
    const naiveRmse = Math.sqrt(naive.reduce((s, v, i) => s + (v - truth[i]) ** 2, 0) / 24);
    expect(rmse).to.be.below(naiveRmse); // beats repeating last year under a trend
    const file = path.join(dir, 'forecaster.safetensors');
    await f.save(file);
    const again = await TimeSeriesForecaster.load(file);
    expect(again.config).to.deep.equal(f.config);
    expect(again.predict(train)).to.deep.equal(forecast);
  });
});
