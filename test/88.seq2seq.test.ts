/**
 * Sequence to sequence: the attention modules against a double-precision reference (values, and
 * gradients against its finite differences) and against PyTorch; Seq2Seq's loss, gradients,
 * attention weights and greedy decoding against PyTorch's twin model (scripts/seq2seq_model.py);
 * the native searches against the teacher-forced graph (log-probabilities, beam of 1 = greedy, a
 * wide beam = exhaustive search); a task learned exactly; save and load; fit; bad input.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  Adam, BahdanauAttention, LuongAttention, Seq2Seq, SequenceModel, Tensor, attentionHeatmapSvg, crossEntropyLoss, ctcLoss, fit, load, noGrad, save, seed,
} from '../lib/index';
import { expectClose, seededRandom } from './helpers';

interface Param { shape: number[]; values: number[] }
interface AttentionCase {
  name: string; kind: 'bahdanau' | 'general' | 'dot'; B: number; Tq: number; S: number; querySize: number; keySize: number; valueSize: number;
  attentionSize: number | null; lengths: number[]; params: Record<string, Param>;
  query: number[]; keys: number[]; values: number[]; rc: number[]; rw: number[]; context: number[]; weights: number[];
  grads: Record<string, number[]>;
}
interface ModelCase {
  name: string; cell: 'lstm' | 'gru'; attention: 'bahdanau' | 'luong' | 'dot' | 'none'; numLayers: number; bidirectional: boolean; contextFeeding: boolean;
  sourceVocabSize: number; targetVocabSize: number; embeddingDim: number; hiddenSize: number; attentionSize: number;
  sources: number[][]; targets: number[][]; state: Record<string, Param>; loss: number; grads: Record<string, number[]>;
  weights: number[] | null; greedy: { tokens: number[]; logProb: number; ended: boolean }[];
}
const fixtures = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'seq2seq', 'cases.json'), 'utf8')) as
  { torch: string; attention: AttentionCase[]; models: ModelCase[] };

function moduleOf(c: { kind: AttentionCase['kind']; querySize: number; keySize: number; attentionSize: number | null }): BahdanauAttention | LuongAttention {
  return c.kind === 'bahdanau'
    ? new BahdanauAttention({ querySize: c.querySize, keySize: c.keySize, attentionSize: c.attentionSize ?? c.querySize })
    : new LuongAttention({ querySize: c.querySize, keySize: c.keySize, score: c.kind });
}

function loadParams(module: { loadStateDict(d: Record<string, Tensor>): void }, params: Record<string, Param>): void {
  module.loadStateDict(Object.fromEntries(Object.entries(params).map(([k, p]) => [k, Tensor.from(Float32Array.from(p.values), p.shape)])));
}

// ---- the double-precision reference ------------------------------------------------------------

interface RefInputs {
  kind: AttentionCase['kind']; B: number; Tq: number; S: number; Hq: number; Hk: number; Hv: number; A: number; lengths: number[];
  params: Record<string, Float64Array>; query: Float64Array; keys: Float64Array; values: Float64Array;
}

/** context [B, Tq, Hv] and weights [B, Tq, S] by plain loops in float64. */
function referenceAttention(r: RefInputs): { context: Float64Array; weights: Float64Array } {
  const { B, Tq, S, Hq, Hk, Hv, A } = r;
  const context = new Float64Array(B * Tq * Hv);
  const weights = new Float64Array(B * Tq * S);
  for (let b = 0; b < B; ++b) {
    for (let t = 0; t < Tq; ++t) {
      const q = r.query.subarray((b * Tq + t) * Hq, (b * Tq + t + 1) * Hq);
      const scores: number[] = [];
      for (let j = 0; j < r.lengths[b]; ++j) {
        const k = r.keys.subarray((b * S + j) * Hk, (b * S + j + 1) * Hk);
        let s = 0;
        if (r.kind === 'bahdanau') {
          const Wq = r.params['query.weight'];
          const bq = r.params['query.bias'];
          const Wk = r.params['key.weight'];
          const v = r.params['v.weight'];
          for (let a = 0; a < A; ++a) {
            let x = bq[a];
            for (let h = 0; h < Hq; ++h) x += Wq[a * Hq + h] * q[h];
            for (let h = 0; h < Hk; ++h) x += Wk[a * Hk + h] * k[h];
            s += v[a] * Math.tanh(x);
          }
        } else if (r.kind === 'general') {
          const W = r.params['key.weight']; // [Hq, Hk]
          for (let h = 0; h < Hq; ++h) {
            let x = 0;
            for (let m = 0; m < Hk; ++m) x += W[h * Hk + m] * k[m];
            s += q[h] * x;
          }
        } else {
          for (let h = 0; h < Hq; ++h) s += q[h] * k[h];
        }
        scores.push(s);
      }
      const top = Math.max(...scores);
      const e = scores.map((s) => Math.exp(s - top));
      const total = e.reduce((x, y) => x + y, 0);
      e.forEach((x, j) => {
        const w = x / total;
        weights[(b * Tq + t) * S + j] = w;
        for (let h = 0; h < Hv; ++h) context[(b * Tq + t) * Hv + h] += w * r.values[(b * S + j) * Hv + h];
      });
    }
  }
  return { context, weights };
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; ++i) s += a[i] * b[i];
  return s;
}

/** Central differences of sum(context * rc) + sum(weights * rw) with respect to `array`, in float64. */
function finiteDifferences(r: RefInputs, array: Float64Array, rc: Float64Array, rw: Float64Array): Float64Array {
  const grad = new Float64Array(array.length);
  const eps = 1e-6;
  for (let i = 0; i < array.length; ++i) {
    const keep = array[i];
    array[i] = keep + eps;
    const up = referenceAttention(r);
    array[i] = keep - eps;
    const down = referenceAttention(r);
    array[i] = keep;
    grad[i] = (dot(up.context, rc) + dot(up.weights, rw) - dot(down.context, rc) - dot(down.weights, rw)) / (2 * eps);
  }
  return grad;
}

describe('attention modules', () => {
  const configs: { name: string; kind: AttentionCase['kind']; B: number; Tq: number; S: number; Hq: number; Hk: number; Hv: number; A: number; lengths: number[] }[] = [
    { name: 'Bahdanau, ragged', kind: 'bahdanau', B: 3, Tq: 4, S: 5, Hq: 6, Hk: 7, Hv: 3, A: 5, lengths: [5, 1, 3] },
    { name: 'Bahdanau, odd sizes', kind: 'bahdanau', B: 2, Tq: 3, S: 7, Hq: 9, Hk: 11, Hv: 13, A: 17, lengths: [7, 4] },
    { name: 'Luong general, ragged', kind: 'general', B: 3, Tq: 2, S: 6, Hq: 5, Hk: 4, Hv: 3, A: 0, lengths: [2, 6, 4] },
    { name: 'Luong dot', kind: 'dot', B: 2, Tq: 3, S: 4, Hq: 6, Hk: 6, Hv: 2, A: 0, lengths: [4, 3] },
  ];
  for (const c of configs) {
    it(`${c.name}: values and every gradient against a float64 reference and its finite differences`, () => {
      const rand = seededRandom(c.B * 100 + c.S);
      const draw = (n: number, scale = 1) => Float64Array.from(Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale));
      const module = moduleOf({ kind: c.kind, querySize: c.Hq, keySize: c.Hk, attentionSize: c.A || null });
      const params: Record<string, Float64Array> = {};
      for (const [name, p] of module.namedParameters()) {
        params[name] = draw(p.size, 0.6);
        p.storage.write(Float32Array.from(params[name]), 0);
      }
      const ref: RefInputs = {
        kind: c.kind, B: c.B, Tq: c.Tq, S: c.S, Hq: c.Hq, Hk: c.Hk, Hv: c.Hv, A: c.A, lengths: c.lengths, params,
        query: draw(c.B * c.Tq * c.Hq), keys: draw(c.B * c.S * c.Hk), values: draw(c.B * c.S * c.Hv),
      };
      const rc = draw(c.B * c.Tq * c.Hv);
      const rw = draw(c.B * c.Tq * c.S);
      const query = Tensor.from(Float32Array.from(ref.query), [c.B, c.Tq, c.Hq], { requiresGrad: true });
      const keys = Tensor.from(Float32Array.from(ref.keys), [c.B, c.S, c.Hk], { requiresGrad: true });
      const values = Tensor.from(Float32Array.from(ref.values), [c.B, c.S, c.Hv], { requiresGrad: true });
      const { context, weights } = module.forward(query, keys, values, { lengths: c.lengths });
      const expected = referenceAttention(ref);
      expectClose(context.toArray(), expected.context, 'context', { rtol: 1e-4, atol: 1e-6 });
      expectClose(weights.toArray(), expected.weights, 'weights', { rtol: 1e-4, atol: 1e-6 });
      context.mul(Tensor.from(Float32Array.from(rc), context.shape)).sum().add(weights.mul(Tensor.from(Float32Array.from(rw), weights.shape)).sum()).backward();
      expectClose(query.grad!.toArray(), finiteDifferences(ref, ref.query, rc, rw), 'd query', { rtol: 1e-3, atol: 1e-5 });
      expectClose(keys.grad!.toArray(), finiteDifferences(ref, ref.keys, rc, rw), 'd keys', { rtol: 1e-3, atol: 1e-5 });
      expectClose(values.grad!.toArray(), finiteDifferences(ref, ref.values, rc, rw), 'd values', { rtol: 1e-3, atol: 1e-5 });
      for (const [name, p] of module.namedParameters()) {
        expectClose(p.grad!.toArray(), finiteDifferences(ref, params[name], rc, rw), `d ${name}`, { rtol: 1e-3, atol: 1e-5 });
      }
    });
  }

  for (const c of fixtures.attention) {
    it(`${c.name}: context, weights and gradients equal PyTorch ${fixtures.torch}'s`, () => {
      const module = moduleOf(c);
      loadParams(module, c.params);
      const query = Tensor.from(Float32Array.from(c.query), [c.B, c.Tq, c.querySize], { requiresGrad: true });
      const keys = Tensor.from(Float32Array.from(c.keys), [c.B, c.S, c.keySize], { requiresGrad: true });
      const values = Tensor.from(Float32Array.from(c.values), [c.B, c.S, c.valueSize], { requiresGrad: true });
      const { context, weights } = module.forward(query, keys, values, { lengths: c.lengths });
      expectClose(context.toArray(), c.context, 'context', { rtol: 1e-4, atol: 1e-6 });
      expectClose(weights.toArray(), c.weights, 'weights', { rtol: 1e-4, atol: 1e-6 });
      context.mul(Tensor.from(c.rc, context.shape)).sum().add(weights.mul(Tensor.from(c.rw, weights.shape)).sum()).backward();
      expectClose(query.grad!.toArray(), c.grads.query, 'd query', { rtol: 1e-3, atol: 1e-5 });
      expectClose(keys.grad!.toArray(), c.grads.keys, 'd keys', { rtol: 1e-3, atol: 1e-5 });
      expectClose(values.grad!.toArray(), c.grads.values, 'd values', { rtol: 1e-3, atol: 1e-5 });
      for (const [name, p] of module.namedParameters()) expectClose(p.grad!.toArray(), c.grads[name], `d ${name}`, { rtol: 1e-3, atol: 1e-5 });
    });
  }

  it('a [B, Hq] query gives [B, Hv] and [B, S]; a 0/1 mask equals the same lengths; masked weights are exactly 0', () => {
    seed(5);
    const attention = new BahdanauAttention({ querySize: 4, keySize: 3 });
    const q = Tensor.randn([2, 4]);
    const k = Tensor.randn([2, 5, 3]);
    const byLengths = attention.forward(q, k, null, { lengths: [2, 5] });
    expect(byLengths.context.shape).to.deep.equal([2, 3]);
    expect(byLengths.weights.shape).to.deep.equal([2, 5]);
    const mask = Tensor.from([1, 1, 0, 0, 0, 1, 1, 1, 1, 1], [2, 5]);
    const byMask = attention.forward(q, k, null, { mask });
    expect(Array.from(byMask.weights.toArray())).to.deep.equal(Array.from(byLengths.weights.toArray()));
    expect(Array.from(byLengths.weights.toArray().subarray(2, 5))).to.deep.equal([0, 0, 0]);
    const rows = byLengths.weights.sum(1).toArray();
    expectClose(rows, [1, 1], 'row sums', { atol: 1e-6 });
  });

  it('bad input: shapes, lengths and masks are named', () => {
    const attention = new LuongAttention({ querySize: 4, keySize: 3 });
    const k = Tensor.randn([2, 5, 3]);
    expect(() => attention.forward(Tensor.randn([2, 3]), k)).to.throw(RangeError, /query of shape \[2, Tq, 4\]/);
    expect(() => attention.forward(Tensor.randn([2, 4]), Tensor.randn([2, 5, 4]))).to.throw(RangeError, /keys of shape \[B, S, 3\]/);
    expect(() => attention.forward(Tensor.randn([2, 4]), k, Tensor.randn([2, 4, 3]))).to.throw(RangeError, /values of shape \[2, 5, Hv\]/);
    expect(() => attention.forward(Tensor.randn([2, 4]), k, null, { lengths: [6, 1] })).to.throw(RangeError, /options.lengths\[0\]/);
    expect(() => attention.forward(Tensor.randn([2, 4]), k, null, { lengths: [1] })).to.throw(RangeError, /one entry per batch row/);
    expect(() => attention.forward(Tensor.randn([2, 4]), k, null, { mask: Tensor.from([0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1], [2, 5]) })).to.throw(RangeError, /0 and 1/);
    expect(() => new LuongAttention({ querySize: 4, keySize: 3, score: 'dot' })).to.throw(RangeError, /'dot' needs keySize/);
    expect(() => new BahdanauAttention({ querySize: 4 } as never)).to.throw(TypeError, /options.keySize/);
  });
});

function modelOf(c: ModelCase): Seq2Seq {
  const model = new Seq2Seq({
    cell: c.cell, attention: c.attention, sourceVocabSize: c.sourceVocabSize, targetVocabSize: c.targetVocabSize, embeddingDim: c.embeddingDim,
    hiddenSize: c.hiddenSize, numLayers: c.numLayers, bidirectional: c.bidirectional, attentionSize: c.attentionSize, contextFeeding: c.contextFeeding,
  });
  loadParams(model, c.state);
  return model;
}

/** log p(target, then <end> if `ended`) under the teacher-forced graph. */
function sequenceLogProb(model: Seq2Seq, source: number[], target: number[], ended: boolean): number {
  return noGrad(() => {
    model.eval();
    const logits = model.forward([source], [target]).logits; // [1, n + 1, C]
    const C = logits.shape[2];
    const logp = logits.logSoftmax(-1).toArray();
    let total = 0;
    target.forEach((y, t) => (total += logp[t * C + y]));
    if (ended) total += logp[target.length * C + model.endToken];
    return total;
  });
}

describe('Seq2Seq', () => {
  for (const c of fixtures.models) {
    it(`${c.name}: loss, every gradient (PyTorch's names), attention weights and greedy decoding equal PyTorch ${fixtures.torch}'s`, () => {
      const model = modelOf(c);
      expect(model.namedParameters().map(([k]) => k).sort()).to.deep.equal(Object.keys(c.state).sort());
      model.eval();
      const loss = model.loss(c.sources, c.targets);
      expectClose([loss.item()], [c.loss], 'loss', { rtol: 1e-5, atol: 1e-6 });
      loss.backward();
      for (const [name, p] of model.namedParameters()) expectClose(p.grad!.toArray(), c.grads[name], `d ${name}`, { rtol: 2e-3, atol: 1e-5 });
      if (c.weights) {
        const weights = noGrad(() => model.forward(c.sources, c.targets).weights!);
        expectClose(weights.toArray(), c.weights, 'attention weights', { rtol: 1e-4, atol: 1e-6 });
        // attentionWeights(): the first pair's rows, without padding
        const S = Math.max(...c.sources.map((s) => s.length));
        const T = Math.max(...c.targets.map((t) => t.length)) + 1;
        const rows = model.attentionWeights(c.sources[0], c.targets[0]);
        expect(rows.length).to.equal(c.targets[0].length + 1);
        rows.forEach((row, t) => expectClose(row, c.weights!.slice(t * S, t * S + c.sources[0].length), `attentionWeights row ${t}`, { rtol: 1e-4, atol: 1e-6 }));
        expect(T).to.be.greaterThan(0);
      }
      const greedy = model.decode(c.sources, { greedy: true, maxLength: 12 });
      expect(greedy.tokens).to.deep.equal(c.greedy.map((g) => g.tokens));
      expect(greedy.ended).to.deep.equal(c.greedy.map((g) => g.ended));
      expectClose(greedy.logProbs, c.greedy.map((g) => g.logProb), 'greedy log-probabilities', { rtol: 1e-4, atol: 1e-5 });
      const beam1 = model.decode(c.sources, { beamWidth: 1, maxLength: 12 });
      expect(beam1).to.deep.equal(greedy);
    });
  }

  const kinds = [['lstm', 'bahdanau', false, 2], ['gru', 'luong', false, 2], ['lstm', 'dot', false, 2], ['gru', 'none', false, 2],
    ['lstm', 'bahdanau', true, 3], ['gru', 'luong', true, 2]] as const;
  for (const [cell, attention, contextFeeding, numLayers] of kinds) {
    const title = `${cell}, ${attention}${contextFeeding ? `, context feeding, ${numLayers} layers` : ''}`;
    it(`${title}: the native search's log-probabilities are the teacher-forced graph's; a beam of 1 is greedy; a wide beam is exhaustive search`, async () => {
      seed(17);
      const model = new Seq2Seq({ cell, attention, sourceVocabSize: 5, targetVocabSize: 2, embeddingDim: 6, hiddenSize: 8, numLayers, contextFeeding });
      // livelier weights than the default initialization: varied outputs, few near-ties
      for (const p of model.parameters()) p.storage.write(p.toArray().map((x) => x * 4), 0);
      const rand = seededRandom(3);
      const sources = Array.from({ length: 6 }, () => Array.from({ length: 1 + Math.floor(rand() * 5) }, () => Math.floor(rand() * 5)));
      const maxLength = 3;
      const greedy = model.decode(sources, { greedy: true, maxLength });
      greedy.tokens.forEach((tokens, i) => expectClose([greedy.logProbs[i]], [sequenceLogProb(model, sources[i], tokens, greedy.ended[i])], `greedy ${i}`, { rtol: 1e-5, atol: 1e-5 }));
      expect(model.decode(sources, { beamWidth: 1, maxLength })).to.deep.equal(greedy);
      // every hypothesis of at most maxLength tokens over the 2 target tokens
      const all: { tokens: number[]; ended: boolean }[] = [];
      const grow = (prefix: number[]) => {
        if (prefix.length === maxLength) {
          all.push({ tokens: prefix, ended: false });
          return;
        }
        all.push({ tokens: prefix, ended: true });
        for (const y of [0, 1]) grow([...prefix, y]);
      };
      grow([]);
      // sequenceLogProbs: every ended hypothesis (0-2 tokens: padded rows) of every source in one
      // call, as the teacher-forced graph scores each alone; the training mode is put back
      const pairs = sources.flatMap((source) => all.filter((h) => h.ended).map((h) => ({ source, target: h.tokens })));
      model.train();
      const scores = model.sequenceLogProbs(pairs.map((p) => p.source), pairs.map((p) => p.target));
      expect(model.training).to.equal(true);
      expectClose(scores, pairs.map((p) => sequenceLogProb(model, p.source, p.target, true)), 'sequenceLogProbs', { rtol: 1e-5, atol: 1e-5 });
      model.eval();
      for (const lengthPenalty of [0, 1]) {
        // every hypothesis of every source scored by the teacher-forced graph, best first
        const ranked = sources.map((source) => all.map((h) => {
          const logProb = sequenceLogProb(model, source, h.tokens, h.ended);
          const length = h.tokens.length + (h.ended ? 1 : 0);
          return { ...h, logProb, score: lengthPenalty === 0 ? logProb : logProb / ((5 + length) / 6) ** lengthPenalty };
        }).sort((a, b) => b.score - a.score));
        const beam = model.decode(sources, { beamWidth: 16, maxLength, lengthPenalty });
        ranked.forEach((scored, i) => {
          expect(scored[0].score - scored[1].score, 'the test needs a clear best hypothesis').to.be.greaterThan(1e-4);
          expect({ tokens: beam.tokens[i], ended: beam.ended[i] }, `source ${i}, lengthPenalty ${lengthPenalty}`).to.deep.equal({ tokens: scored[0].tokens, ended: scored[0].ended });
          expectClose([beam.logProbs[i]], [scored[0].logProb], `beam log-probability ${i}`, { rtol: 1e-5, atol: 1e-5 });
        });
        // nBest: the wide beam's n best are the exhaustive search's n best, in order, with their
        // log-probabilities and scores; the first is decode()'s
        const n = 4;
        const lists = model.nBest(sources, { beamWidth: 16, maxLength, lengthPenalty, n });
        ranked.forEach((scored, i) => {
          for (let k = 0; k < n; ++k) expect(scored[k].score - scored[k + 1].score, 'the test needs clear ranks').to.be.greaterThan(1e-4);
          expect(lists[i].map((h) => ({ tokens: h.tokens, ended: h.ended })), `n-best of source ${i}, lengthPenalty ${lengthPenalty}`)
            .to.deep.equal(scored.slice(0, n).map((h) => ({ tokens: h.tokens, ended: h.ended })));
          expectClose(lists[i].map((h) => h.logProb), scored.slice(0, n).map((h) => h.logProb), `n-best log-probabilities ${i}`, { rtol: 1e-5, atol: 1e-5 });
          expectClose(lists[i].map((h) => h.score), scored.slice(0, n).map((h) => h.score), `n-best scores ${i}`, { rtol: 1e-5, atol: 1e-5 });
        });
        expect(lists.map(([best]) => best.tokens)).to.deep.equal(beam.tokens);
      }
      if (contextFeeding) {
        // save and load keep the option and its weights (decoder_upper.*)
        const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'seq2seq-')), 'fed.safetensors');
        await save(model, file);
        const again = await load(file) as Seq2Seq;
        expect(again.options.contextFeeding).to.equal(true);
        expect(again.namedParameters().map(([k]) => k)).to.include('decoder_upper.weight_ih_l0');
        expect(again.decode(sources, { beamWidth: 4, maxLength })).to.deep.equal(model.decode(sources, { beamWidth: 4, maxLength }));
      }
    });
  }

  it('an ensemble (options.ensemble) searches the mean of the models\' probabilities: its greedy and wide-beam results are the exhaustive search\'s', () => {
    seed(23);
    // two models of different shapes over the same vocabularies
    const first = new Seq2Seq({ cell: 'lstm', attention: 'bahdanau', sourceVocabSize: 5, targetVocabSize: 2, embeddingDim: 6, hiddenSize: 8, numLayers: 2, contextFeeding: true });
    const second = new Seq2Seq({ cell: 'gru', attention: 'luong', sourceVocabSize: 5, targetVocabSize: 2, embeddingDim: 4, hiddenSize: 6 });
    for (const p of [...first.parameters(), ...second.parameters()]) p.storage.write(p.toArray().map((x) => x * 4), 0);
    const rand = seededRandom(5);
    const sources = Array.from({ length: 5 }, () => Array.from({ length: 1 + Math.floor(rand() * 5) }, () => Math.floor(rand() * 5)));
    const maxLength = 3;
    // the log of the mean probability of y after `prefix`, by the teacher-forced graphs
    const stepLogProb = (source: number[], prefix: number[], y: number) => {
      const mean = [first, second].reduce((sum, model) => sum + noGrad(() => {
        model.eval();
        const logits = model.forward([source], [prefix]).logits; // [1, n + 1, C]
        const C = logits.shape[2];
        return Math.exp(logits.logSoftmax(-1).toArray()[prefix.length * C + y]);
      }), 0) / 2;
      return Math.log(mean);
    };
    const score = (source: number[], tokens: number[], ended: boolean) =>
      tokens.reduce((sum, y, t) => sum + stepLogProb(source, tokens.slice(0, t), y), 0) + (ended ? stepLogProb(source, tokens, first.endToken) : 0);
    // greedy: the likeliest mean at every step
    const greedy = first.decode(sources, { greedy: true, maxLength, ensemble: [second] });
    sources.forEach((source, i) => {
      const tokens: number[] = [];
      let ended = false;
      while (!ended && tokens.length < maxLength) {
        const probs = [0, 1, first.endToken].map((y) => stepLogProb(source, tokens, y));
        const best = probs.indexOf(Math.max(...probs));
        if (best === 2) ended = true;
        else tokens.push(best);
      }
      expect({ tokens: greedy.tokens[i], ended: greedy.ended[i] }, `greedy ${i}`).to.deep.equal({ tokens, ended });
      expectClose([greedy.logProbs[i]], [score(source, tokens, ended)], `greedy log-probability ${i}`, { rtol: 1e-5, atol: 1e-5 });
    });
    // a beam of 16 is exhaustive at 3 tokens over 2: the best of every hypothesis by the mean
    const all: { tokens: number[]; ended: boolean }[] = [];
    const grow = (prefix: number[]) => {
      all.push({ tokens: prefix, ended: prefix.length < maxLength });
      if (prefix.length < maxLength) for (const y of [0, 1]) grow([...prefix, y]);
    };
    grow([]);
    const beam = first.decode(sources, { beamWidth: 16, maxLength, ensemble: [second] });
    sources.forEach((source, i) => {
      const scored = all.map((h) => ({ ...h, logProb: score(source, h.tokens, h.ended) })).sort((a, b) => b.logProb - a.logProb);
      expect(scored[0].logProb - scored[1].logProb, 'the test needs a clear best hypothesis').to.be.greaterThan(1e-4);
      expect({ tokens: beam.tokens[i], ended: beam.ended[i] }, `beam ${i}`).to.deep.equal({ tokens: scored[0].tokens, ended: scored[0].ended });
      expectClose([beam.logProbs[i]], [scored[0].logProb], `beam log-probability ${i}`, { rtol: 1e-5, atol: 1e-5 });
    });
    // the ensemble differs from either model alone here, and a model with itself is the model
    expect(beam.tokens).to.not.deep.equal(first.decode(sources, { beamWidth: 16, maxLength }).tokens);
    const twice = first.decode(sources, { beamWidth: 4, maxLength, ensemble: [first] });
    const alone = first.decode(sources, { beamWidth: 4, maxLength });
    expect(twice.tokens).to.deep.equal(alone.tokens);
    expectClose(twice.logProbs, alone.logProbs, 'a model with itself', { rtol: 1e-6, atol: 1e-6 });
    expect(first.decode(sources, { beamWidth: 4, maxLength, ensemble: [] })).to.deep.equal(alone);
    // nBest searches the ensemble too: its first is decode()'s
    const lists = first.nBest(sources, { beamWidth: 16, maxLength, ensemble: [second], n: 3 });
    expect(lists.map(([best]) => best.tokens)).to.deep.equal(beam.tokens);
    sources.forEach((source, i) => {
      expect(lists[i]).to.have.length(3);
      expectClose(lists[i].map((h) => h.logProb), lists[i].map((h) => score(source, h.tokens, h.ended)), `ensemble n-best ${i}`, { rtol: 1e-5, atol: 1e-5 });
    });
    // the models are put back in the mode they were in
    second.train();
    first.translate(sources, { ensemble: [second] });
    expect(second.training).to.equal(true);
    // bad input is named
    expect(() => first.translate(sources, { ensemble: second as never })).to.throw(TypeError, /options.ensemble to be an array/);
    expect(() => first.translate(sources, { ensemble: [{}] as never })).to.throw(TypeError, /options.ensemble\[0\] to be a Seq2Seq/);
    const other = new Seq2Seq({ sourceVocabSize: 5, targetVocabSize: 3, hiddenSize: 4, embeddingDim: 2 });
    expect(() => first.translate(sources, { ensemble: [other] })).to.throw(RangeError, /options.ensemble\[0\] has vocabularies of 5 source and 3 target tokens; this model has 5 and 2/);
  });

  it('learns to reverse sequences exactly (fit on { sources, targets }, with validation), and translates the same after save and load', async function () {
    this.timeout(Math.max(this.timeout(), 120_000)); // more where the runner allows more (emulation, sanitizers)
    seed(1);
    const rand = seededRandom(11);
    const rows = (n: number) => Array.from({ length: n }, () => Array.from({ length: 2 + Math.floor(rand() * 5) }, () => Math.floor(rand() * 8)));
    const sources = rows(3000);
    const test = rows(200);
    const reversed = (s: number[]) => [...s].reverse();
    const model = new Seq2Seq({ sourceVocabSize: 8, targetVocabSize: 8, embeddingDim: 16, hiddenSize: 64 });
    const stop = new AbortController();
    let accuracy = 0;
    const history = await fit(model, { sources, targets: sources.map(reversed) }, {
      epochs: 15, batchSize: 32, optimizer: new Adam(model.parameters(), { lr: 3e-3 }), clipGradNorm: 1, seed: 2, signal: stop.signal,
      validationData: { sources: test, targets: test.map(reversed) },
      onEpochEnd: () => {
        const out = model.translate(test);
        accuracy = out.filter((o, i) => JSON.stringify(o) === JSON.stringify(reversed(test[i]))).length / test.length;
        if (accuracy === 1) stop.abort();
      },
    });
    expect(accuracy, `greedy accuracy after ${history.epochs} epochs (loss ${history.loss.join(', ')})`).to.equal(1);
    expect(history.valLoss.length).to.equal(history.epochs);
    expect(history.valLoss[history.valLoss.length - 1]).to.be.lessThan(0.05);
    expect(model.translate(test, { beamWidth: 5 })).to.deep.equal(test.map(reversed));
    // save and load: the same weights, the same translations and attention
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'seq2seq-')), 'reverse.safetensors');
    await save(model, file);
    const again = await load(file) as Seq2Seq;
    expect(again).to.be.instanceOf(Seq2Seq);
    expect(again.config()).to.deep.equal(model.config());
    expect(again.translate(test, { beamWidth: 3 })).to.deep.equal(model.translate(test, { beamWidth: 3 }));
    expect(again.attentionWeights(test[0], reversed(test[0]))).to.deep.equal(model.attentionWeights(test[0], reversed(test[0])));
    // the attention of a reversal looks at the mirrored position
    const weights = model.attentionWeights([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]);
    expect(weights.length).to.equal(7);
    weights.slice(0, 6).forEach((row, t) => expect(row.indexOf(Math.max(...row)), `row ${t}: ${row.map((w) => w.toFixed(2))}`).to.equal(5 - t));
    const svg = attentionHeatmapSvg(weights, ['6', '5', '4', '3', '2', '1', '</s>'], ['1', '2', '3', '4', '5', '6'], { title: 'reverse' });
    expect(svg.match(/<rect /g)!.length).to.equal(1 + 7 * 6);
  });

  it('teacher forcing below 1 (parallel scheduled sampling) trains, and a seed repeats it exactly', async () => {
    const run = async () => {
      seed(4);
      const rand = seededRandom(5);
      const sources = Array.from({ length: 256 }, () => Array.from({ length: 2 + Math.floor(rand() * 4) }, () => Math.floor(rand() * 6)));
      const model = new Seq2Seq({ sourceVocabSize: 6, targetVocabSize: 6, embeddingDim: 8, hiddenSize: 16, teacherForcing: 0.5, dropout: 0.1, attention: 'luong' });
      const history = await fit(model, { sources, targets: sources.map((s) => [...s].reverse()) }, { epochs: 4, batchSize: 16, seed: 9 });
      return history.loss;
    };
    const first = await run();
    expect(first[first.length - 1]).to.be.lessThan(first[0]);
    expect(await run()).to.deep.equal(first);
  });

  it('labelSmoothing smooths the training loss only: the teacher-forced logits under crossEntropyLoss({ labelSmoothing }); eval mode is plain', async () => {
    seed(6);
    const model = new Seq2Seq({ sourceVocabSize: 5, targetVocabSize: 4, embeddingDim: 6, hiddenSize: 8, labelSmoothing: 0.2 });
    const sources = [[1, 2, 3], [4, 0]];
    const targets = [[3, 1], [2, 0, 1]];
    const { logits, targets: classes } = model.forward(sources, targets);
    const smoothed = crossEntropyLoss(logits, classes, { ignoreIndex: -100, labelSmoothing: 0.2 }).item();
    const plain = crossEntropyLoss(logits, classes, { ignoreIndex: -100 }).item();
    expect(Math.abs(smoothed - plain)).to.be.greaterThan(1e-3);
    expect(model.loss(sources, targets).item()).to.be.closeTo(smoothed, 1e-6);
    model.eval();
    expect(model.loss(sources, targets).item()).to.be.closeTo(plain, 1e-6);
    model.train();
    const file = path.join(os.tmpdir(), `recurrent-seq2seq-ls-${process.pid}.safetensors`);
    await save(model, file);
    const again = (await load(file)) as Seq2Seq;
    fs.unlinkSync(file);
    expect(again.options.labelSmoothing).to.equal(0.2);
    expect(again.loss(sources, targets).item()).to.be.closeTo(smoothed, 1e-6);
    expect(() => new Seq2Seq({ sourceVocabSize: 4, targetVocabSize: 3, labelSmoothing: 1 })).to.throw(RangeError, /options.labelSmoothing/);
    expect(() => new Seq2Seq({ sourceVocabSize: 4, targetVocabSize: 3, labelSmoothing: 'a' as never })).to.throw(TypeError, /options.labelSmoothing/);
  });

  it('ctcWeight: (1 - w) x the cross entropy + w x ctcLoss on ctc_head(encoder outputs), two frames a position, blank last; its gradient by finite differences; save and load keep it', async () => {
    seed(7);
    const V = 4;
    const C = V + 1;
    const model = new Seq2Seq({ sourceVocabSize: 5, targetVocabSize: V, embeddingDim: 6, hiddenSize: 8, ctcWeight: 0.3 });
    expect(model.ctcHead!.weight.shape).to.deep.equal([2 * C, 8]);
    expect(new Seq2Seq({ sourceVocabSize: 5, targetVocabSize: V }).ctcHead).to.equal(null);
    // the third pair: 3 labels on 2 frames, which CTC cannot align (it adds no loss)
    const sources = [[1, 2, 3], [4, 0], [2]];
    const targets = [[3, 1], [2, 0, 1, 3], [1, 2, 3]];
    const S = 3;
    const B = 3;
    const expected = () => noGrad(() => {
      const { logits, targets: classes } = model.forward(sources, targets);
      const ce = crossEntropyLoss(logits, classes, { ignoreIndex: -100 }).item();
      // the encoder's outputs by the public modules, then the frames laid out by hand: frame 2j + f
      // of row b is ctc_head's outputs f C .. (f + 1) C at position j
      const ids = Array.from({ length: S * B }, (_, i) => sources[i % B][Math.floor(i / B)] ?? 0);
      const x = model.sourceEmbedding.forward(ids).reshape([S, B, 6]);
      const head = model.ctcHead!.forward(model.encoder.forward(x, { lengths: sources.map((s) => s.length) }).output).toArray();
      const frames = new Float32Array(2 * S * B * C);
      for (let j = 0; j < S; ++j) for (let b = 0; b < B; ++b) for (let f = 0; f < 2; ++f) for (let k = 0; k < C; ++k) {
        frames[((2 * j + f) * B + b) * C + k] = head[(j * B + b) * 2 * C + f * C + k];
      }
      const ctc = ctcLoss(Tensor.from(frames, [2 * S, B, C]).logSoftmax(), targets, sources.map((s) => 2 * s.length), targets.map((t) => t.length),
        { blank: V, zeroInfinity: true }).item();
      expect(ctc).to.be.greaterThan(0);
      return 0.7 * ce + 0.3 * ctc;
    });
    const loss = () => model.loss(sources, targets).item();
    expect(loss()).to.be.closeTo(expected(), 1e-5);
    model.eval();
    expect(loss(), 'eval mode: the same (no dropout, no label smoothing here)').to.be.closeTo(expected(), 1e-5);
    model.train();
    // the CTC term's gradient: ctc_head's weights are read by nothing else
    model.zeroGrad();
    model.loss(sources, targets).backward();
    const w = model.ctcHead!.weight;
    const grad = w.grad!.toArray();
    const values = w.toArray();
    for (const i of [0, 7, 3 * 8 + 2, 9 * 8 + 5]) {
      const at = (delta: number) => {
        const moved = values.slice();
        moved[i] += delta;
        w.storage.write(moved, 0);
        return loss();
      };
      const numeric = (at(1e-2) - at(-1e-2)) / 2e-2;
      w.storage.write(values, 0);
      expect(grad[i], `d loss / d ctc_head.weight[${i}]`).to.be.closeTo(numeric, 2e-3 + 2e-2 * Math.abs(numeric));
      expect(Math.abs(grad[i])).to.be.greaterThan(1e-5);
    }
    const file = path.join(os.tmpdir(), `recurrent-seq2seq-ctc-${process.pid}.safetensors`);
    await save(model, file);
    const again = (await load(file)) as Seq2Seq;
    fs.unlinkSync(file);
    expect(again.options.ctcWeight).to.equal(0.3);
    expect(again.loss(sources, targets).item()).to.be.closeTo(loss(), 1e-6);
    expect(again.translate(sources, { beamWidth: 2 })).to.deep.equal(model.translate(sources, { beamWidth: 2 }));
    expect(() => new Seq2Seq({ sourceVocabSize: 4, targetVocabSize: 3, ctcWeight: 1 })).to.throw(RangeError, /options.ctcWeight/);
    expect(() => new Seq2Seq({ sourceVocabSize: 4, targetVocabSize: 3, ctcWeight: 'a' as never })).to.throw(TypeError, /options.ctcWeight/);
  });

  it('nBest at real sizes: distinct hypotheses, best first, each scored as sequenceLogProbs scores it; the first is decode()\'s, n or not, with or without a length penalty', () => {
    seed(29);
    const model = new Seq2Seq({ cell: 'lstm', attention: 'bahdanau', sourceVocabSize: 7, targetVocabSize: 6, embeddingDim: 6, hiddenSize: 8, numLayers: 2 });
    for (const p of model.parameters()) p.storage.write(p.toArray().map((x) => x * 3), 0);
    const rand = seededRandom(11);
    const sources = Array.from({ length: 40 }, () => Array.from({ length: 2 + Math.floor(rand() * 6) }, () => Math.floor(rand() * 7)));
    for (const [beamWidth, n, lengthPenalty] of [[1, 1, 0], [3, 1, 0], [3, 3, 0], [5, 5, 0], [5, 2, 0.6], [8, 8, 1]]) {
      const label = `beamWidth ${beamWidth}, n ${n}, lengthPenalty ${lengthPenalty}`;
      const lists = model.nBest(sources, { beamWidth, n, lengthPenalty, maxLength: 12 });
      const best = model.decode(sources, { beamWidth, lengthPenalty, maxLength: 12 });
      expect(lists.map(([h]) => h.tokens), label).to.deep.equal(best.tokens);
      expect(lists.map(([h]) => h.logProb), label).to.deep.equal(best.logProbs);
      const ended = lists.flat().filter((h) => h.ended);
      expectClose(ended.map((h) => h.logProb), model.sequenceLogProbs(lists.flatMap((list, i) => list.filter((h) => h.ended).map(() => sources[i])),
        ended.map((h) => h.tokens)), label, { rtol: 1e-4, atol: 1e-4 });
      let full = 0;
      for (const list of lists) {
        expect(list.length, label).to.be.within(1, n);
        if (list.length === n) full += 1;
        expect(new Set(list.map((h) => `${h.tokens}|${h.ended}`)).size, `${label}: distinct`).to.equal(list.length);
        for (let k = 1; k < list.length; ++k) expect(list[k].score, `${label}: best first`).to.be.at.most(list[k - 1].score);
        for (const h of list) {
          const length = h.tokens.length + (h.ended ? 1 : 0);
          expectClose([h.score], [lengthPenalty === 0 ? h.logProb : h.logProb / ((5 + length) / 6) ** lengthPenalty], `${label}: score`, { rtol: 1e-12, atol: 1e-12 });
        }
      }
      // the search goes on until n have ended: nearly every source gets its n
      expect(full, label).to.be.at.least(sources.length - 2);
    }
    expect(model.nBest(sources, { greedy: true }).map(([h]) => h.tokens)).to.deep.equal(model.translate(sources, { greedy: true }));
    expect(model.nBest(sources, { beamWidth: 4 })[0]).to.have.length(4);
  });

  it('bad input is named: ids, empty sources, options, a model fit() cannot train on pairs', async () => {
    const model = new Seq2Seq({ sourceVocabSize: 4, targetVocabSize: 3, hiddenSize: 8, embeddingDim: 4 });
    expect(() => model.translate([[1, 4]])).to.throw(RangeError, /sources\[0\]\[1\] is .*4.*, not a source id in \[0, 3\]/);
    expect(() => model.translate([[]])).to.throw(RangeError, /sources\[0\] is empty/);
    expect(() => model.translate([[1]], { beamWidth: 0 })).to.throw(RangeError, /options.beamWidth/);
    expect(() => model.translate([[1]], { beam: 3 } as never)).to.throw(/beam/);
    expect(() => model.translate('abc' as never)).to.throw(TypeError, /sources/);
    expect(() => model.loss([[1]], [[3]])).to.throw(RangeError, /targets\[0\]\[0\] is .*3.*, not a target id in \[0, 2\]/);
    expect(() => model.loss([[1], [2]], [[1]])).to.throw(RangeError, /one target per source \(2\)/);
    expect(() => model.attentionWeights([1], 'x' as never)).to.throw(TypeError, /target/);
    // sequenceLogProbs: pairs counted, and an id named by its index in the whole list (past the
    // first chunk of 512)
    const many = Array.from({ length: 600 }, () => [1, 2]);
    expect(() => model.sequenceLogProbs([[1]], [[1], [2]])).to.throw(RangeError, /one target per source \(1\) but received 2/);
    expect(() => model.sequenceLogProbs(many, many.map((t, i) => (i === 550 ? [1, 3] : t)))).to.throw(RangeError, /targets\[550\]\[1\] is number 3, not a target id/);
    expect(() => model.sequenceLogProbs(many.map((t, i) => (i === 520 ? [] : t)), many)).to.throw(RangeError, /sources\[520\] is empty/);
    expect(model.sequenceLogProbs(many, many.map(() => [0]))).to.have.length(600);
    expect(() => new Seq2Seq({ sourceVocabSize: 4, targetVocabSize: 3, hiddenSize: 7 })).to.throw(RangeError, /must be even/);
    expect(() => new Seq2Seq({ sourceVocabSize: 4, targetVocabSize: 3, attention: 'cosine' as never })).to.throw(RangeError, /options.attention/);
    expect(() => new Seq2Seq({ sourceVocabSize: 4, targetVocabSize: 3, teacherForcing: 2 })).to.throw(RangeError, /teacherForcing/);
    expect(() => new Seq2Seq({ sourceVocabSize: 4, targetVocabSize: 3, contextFeeding: true })).to.throw(RangeError, /contextFeeding .*numLayers >= 2/);
    expect(() => new Seq2Seq({ sourceVocabSize: 4, targetVocabSize: 3, numLayers: 2, attention: 'none', contextFeeding: true })).to.throw(RangeError, /an attention/);
    expect(() => new Seq2Seq({ sourceVocabSize: 4, targetVocabSize: 3, contextFeeding: 1 as never })).to.throw(TypeError, /options.contextFeeding/);
    expect(() => new Seq2Seq({ sourceVocabSize: 4, targetVocabSize: 3, attention: 'none', hiddenSize: 8 }).attentionWeights([1], [1])).to.throw(TypeError, /no attention/);
    expect(model.translate([])).to.deep.equal([]);
    expect(model.translate([[1, 2]], { maxLength: 0 })).to.deep.equal([[]]);
    // nBest: n in [1, beamWidth] (1 for greedy), and only nBest takes it
    expect(() => model.nBest([[1]], { beamWidth: 3, n: 4 })).to.throw(RangeError, /options.n/);
    expect(() => model.nBest([[1]], { beamWidth: 3, n: 0 })).to.throw(RangeError, /options.n/);
    expect(() => model.nBest([[1]], { greedy: true, n: 2 })).to.throw(RangeError, /options.n/);
    expect(() => model.decode([[1]], { beamWidth: 3, n: 2 } as never)).to.throw(/options.*n/);
    expect(model.nBest([])).to.deep.equal([]);
    expect(model.nBest([[1, 2]], { beamWidth: 3, maxLength: 0 })).to.deep.equal([[{ tokens: [], logProb: 0, score: 0, ended: false }]]);
    await expectRejects(fit(model, { sources: [[1]], targets: [[1], [2]] }), RangeError, /one target per source/);
    await expectRejects(fit(model, { sources: [[1, -1]], targets: [[1]] }), RangeError, /data.sources\[0\]\[1\]/);
    const other = new SequenceModel({ vocabSize: 4, hiddenSize: 4, outputSize: 3 });
    await expectRejects(fit(other, { sources: [[1]], targets: [[1]] }), TypeError, /trains a sequence-to-sequence model/);
  });
});

async function expectRejects(promise: Promise<unknown>, type: new (...args: never[]) => Error, pattern: RegExp): Promise<void> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(type);
    expect((error as Error).message).to.match(pattern);
    return;
  }
  expect.fail(`expected a ${type.name} matching ${pattern}`);
}
