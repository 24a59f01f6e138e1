/**
 * Seq2Seq: an encoder-decoder with attention (Bahdanau et al., 2015; Luong et al., 2015) that maps
 * one token sequence to another of a different length (translation, transliteration,
 * grapheme-to-phoneme, normalization).
 *
 *   encoder   embedding -> LSTM or GRU over the source (bidirectional: hiddenSize / 2 per
 *             direction, as OpenNMT's brnn), one native call over the packed batch
 *   bridge    the decoder starts from the encoder's final state (both directions side by side)
 *   decoder   embedding -> LSTM or GRU over <start> y_1 .. y_n, one native call (teacher forcing)
 *   attention scores of each decoder state h_t against the encoder outputs v_j (bahdanau:
 *             w . tanh(W_q h_t + W_k v_j), luong: h_t . W_a v_j, dot: h_t . v_j), softmax over the
 *             source's positions, context c_t = sum_j a_tj v_j
 *   output    ~h_t = tanh(W_c [c_t; h_t] + b_c), logits = W_o ~h_t + b_o over the target
 *             vocabulary and <end>; attention 'none': logits = W_o h_t + b_o
 *
 * This is Luong's global attention placed after the recurrent layer, without input feeding, so
 * that training runs every target position at once: the recurrent parts are one native call
 * each, the attention a few batched products. contextFeeding instead attends from the first
 * decoder layer and feeds [c_t; h_t] to the layers above (GNMT), still in parallel over t.
 * Decoding (translate) runs the whole greedy or beam search in one native call (cpp/seq2seq.cc),
 * each step one fused pass (cell, attention, output layer) over every live hypothesis of every
 * source.
 *
 * Tokens: the caller's ids are 0..V-1 on both sides. The model adds its own: <start> is row
 * targetVocabSize of the decoder's embedding, <end> is class targetVocabSize of its output.
 */
import { noGrad } from '../core/autograd';
import { scope } from '../core/memory';
import { describe, expectBoolean, expectInteger, expectNumber, expectOptions, expectKnownKeys, rangeError, typeError } from '../core/errors';
import { CellKind, native } from '../core/native';
import { random } from '../core/random';
import { Tensor } from '../core/tensor';
import { BahdanauAttention, LuongAttention, attentionMask } from './attention';
import { dropout, embedding } from './functional';
import { Embedding, Linear } from './layers';
import { ctcLoss } from './ctc';
import { crossEntropyLoss } from './losses';
import { Module } from './module';
import { GRU, LSTM } from './recurrent';

export type AttentionType = 'bahdanau' | 'luong' | 'dot' | 'none';

export interface Seq2SeqOptions {
  /** 'lstm' (default) or 'gru', for the encoder and the decoder. */
  cell?: 'lstm' | 'gru';
  /** Source ids are 0..sourceVocabSize-1. */
  sourceVocabSize: number;
  /** Target ids are 0..targetVocabSize-1. */
  targetVocabSize: number;
  /** Width of both embeddings. Default 64. */
  embeddingDim?: number;
  /** The decoder's state width (and the encoder's output width). Default 256. */
  hiddenSize?: number;
  /** Recurrent layers of the encoder and of the decoder. Default 1. */
  numLayers?: number;
  /** A bidirectional encoder (hiddenSize / 2 per direction). Default true. */
  bidirectional?: boolean;
  /** Default 'bahdanau'. */
  attention?: AttentionType;
  /** Hidden width of Bahdanau's score. Default hiddenSize. */
  attentionSize?: number;
  /** Dropout on the embeddings, between recurrent layers and before the output layer. Default 0. */
  dropout?: number;
  /**
   * Share of decoder inputs that are the reference's previous token in training (default 1,
   * teacher forcing). Below 1, each input is, with probability 1 - teacherForcing, the model's own
   * prediction of that token instead: parallel scheduled sampling (Duckworth et al., 2019), where
   * the predictions come from a first teacher-forced pass without gradients.
   */
  teacherForcing?: number;
  /**
   * Attention between the decoder's layers, as in GNMT (Wu et al., 2016): the first decoder layer's
   * state queries the attention, and its context c_t is an input of the layers above ([c_t; h_t]
   * into the second). The upper layers' state then carries what was attended so far, as input
   * feeding does, while training still runs every target position at once. Needs numLayers >= 2
   * and an attention. Default false: attention after the last layer.
   */
  contextFeeding?: boolean;
  /**
   * Label smoothing of the training loss (PyTorch's label_smoothing): each target token is
   * learned as (1 - s) onehot + s / V over the V output classes, which keeps the model from
   * growing overconfident. Only in training mode; loss() in eval mode (validation) is the plain
   * cross entropy. Default 0.
   */
  labelSmoothing?: number;
  /**
   * Joint CTC and attention training (Kim, Hori and Watanabe, 2017): the loss is (1 - w) x the
   * decoder's cross entropy + w x a CTC loss of the target given the encoder's outputs, through a
   * linear layer (`ctc_head`) that gives each source position two frames of target classes and a
   * blank (so a target may be up to twice as long as its source; a pair CTC cannot align adds no
   * loss). The CTC term asks the encoder to hold the target's tokens in source order, the
   * multi-task recipe of attention models for speech; on grapheme-to-phoneme it cost accuracy
   * (README). Training only: decoding uses the decoder alone. Default 0 (no CTC layer).
   */
  ctcWeight?: number;
}

export interface TranslateOptions {
  /** Hypotheses kept per source. Default 1. */
  beamWidth?: number;
  /** Output tokens at most. Default: twice the longest source, plus 10. */
  maxLength?: number;
  /** alpha of GNMT's length penalty ((5 + length) / 6)^alpha dividing a hypothesis' log-probability; 0 (default): none. */
  lengthPenalty?: number;
  /** Greedy search (the likeliest token at each step) instead of a beam. Default false. */
  greedy?: boolean;
  /**
   * More models decoded with this one, as an ensemble: at every step the search scores the mean
   * of all the models' probabilities (as fairseq's ensembles do). They must have this model's
   * source and target vocabulary sizes and be on the CPU; their sizes, cells and attention may
   * differ. Default: none.
   */
  ensemble?: readonly Seq2Seq[];
}

export interface NBestOptions extends TranslateOptions {
  /** Hypotheses returned per source, at most beamWidth. Default beamWidth. */
  n?: number;
}

/** One hypothesis of a search. */
export interface Hypothesis {
  /** Its tokens (without <end>). */
  tokens: number[];
  /** Its log-probability: sum over its tokens (and <end> when it ended). */
  logProb: number;
  /** What the search ranked it by: logProb, divided by GNMT's length penalty when there is one. */
  score: number;
  /** Whether it ended on <end> (else it was cut at maxLength). */
  ended: boolean;
}

export interface Translation {
  /** The best hypothesis of every source (without <end>). */
  tokens: number[][];
  /** Its log-probability: sum over its tokens (and <end> when it ended). */
  logProbs: number[];
  /** Whether it ended on <end> (else it was cut at maxLength). */
  ended: boolean[];
}

const ATTENTION_KINDS: Record<AttentionType, number> = { none: 0, dot: 1, luong: 2, bahdanau: 3 };
/** The class the loss skips (padding). */
const IGNORE = -100;
/** Sources per native decoding call (memory stays bounded for any number of sources). */
const DECODE_CHUNK = 512;
/** CTC frames per source position of the ctcWeight loss. */
const CTC_FRAMES = 2;

type Settled = Required<Seq2SeqOptions>;

interface Batch {
  /** [S * B] source ids, time-major */
  source: Int32Array;
  lengths: number[];
  S: number;
  B: number;
}

export class Seq2Seq extends Module {
  readonly options: Settled;
  readonly sourceEmbedding: Embedding;
  readonly encoder: LSTM | GRU;
  readonly targetEmbedding: Embedding;
  readonly decoder: LSTM | GRU;
  /** With contextFeeding: the decoder's layers 2..L, which read [context; state of layer 1]. */
  readonly upperDecoder: LSTM | GRU | null;
  readonly attention: BahdanauAttention | LuongAttention | null;
  readonly combine: Linear | null;
  readonly output: Linear;
  /** With ctcWeight > 0: encoder output -> two CTC frames of targetVocabSize + 1 classes (the last the blank). */
  readonly ctcHead: Linear | null;

  constructor(options: Seq2SeqOptions) {
    super();
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['cell', 'sourceVocabSize', 'targetVocabSize', 'embeddingDim', 'hiddenSize', 'numLayers', 'bidirectional', 'attention',
      'attentionSize', 'dropout', 'teacherForcing', 'contextFeeding', 'labelSmoothing', 'ctcWeight'], 'options');
    const cell = opts.cell ?? 'lstm';
    if (cell !== 'lstm' && cell !== 'gru') throw rangeError(`Expected options.cell to be 'lstm' or 'gru' but received ${describe(cell)}`);
    const attention = (opts.attention ?? 'bahdanau') as AttentionType;
    if (!(attention in ATTENTION_KINDS)) throw rangeError(`Expected options.attention to be 'bahdanau', 'luong', 'dot' or 'none' but received ${describe(attention)}`);
    const hiddenSize = opts.hiddenSize === undefined ? 256 : expectInteger(opts.hiddenSize, 'options.hiddenSize', 1);
    const bidirectional = opts.bidirectional === undefined ? true : expectBoolean(opts.bidirectional, 'options.bidirectional');
    if (bidirectional && hiddenSize % 2 !== 0) {
      throw rangeError(`Seq2Seq: a bidirectional encoder splits options.hiddenSize between its two directions, so it must be even (received ${hiddenSize})`);
    }
    const teacherForcing = opts.teacherForcing === undefined ? 1 : expectNumber(opts.teacherForcing, 'options.teacherForcing');
    if (!(teacherForcing >= 0 && teacherForcing <= 1)) throw rangeError(`Expected options.teacherForcing to be in [0, 1] but received ${teacherForcing}`);
    const dropoutP = opts.dropout === undefined ? 0 : expectNumber(opts.dropout, 'options.dropout');
    if (!(dropoutP >= 0 && dropoutP < 1)) throw rangeError(`Expected options.dropout to be in [0, 1) but received ${dropoutP}`);
    const contextFeeding = opts.contextFeeding === undefined ? false : expectBoolean(opts.contextFeeding, 'options.contextFeeding');
    const labelSmoothing = opts.labelSmoothing === undefined ? 0 : expectNumber(opts.labelSmoothing, 'options.labelSmoothing');
    if (!(labelSmoothing >= 0 && labelSmoothing < 1)) throw rangeError(`Expected options.labelSmoothing to be in [0, 1) but received ${labelSmoothing}`);
    const ctcWeight = opts.ctcWeight === undefined ? 0 : expectNumber(opts.ctcWeight, 'options.ctcWeight');
    if (!(ctcWeight >= 0 && ctcWeight < 1)) throw rangeError(`Expected options.ctcWeight to be in [0, 1) but received ${ctcWeight}`);
    this.options = {
      cell, attention, hiddenSize, bidirectional, teacherForcing, dropout: dropoutP, contextFeeding, labelSmoothing, ctcWeight,
      sourceVocabSize: expectInteger(opts.sourceVocabSize, 'options.sourceVocabSize', 1),
      targetVocabSize: expectInteger(opts.targetVocabSize, 'options.targetVocabSize', 1),
      embeddingDim: opts.embeddingDim === undefined ? 64 : expectInteger(opts.embeddingDim, 'options.embeddingDim', 1),
      numLayers: opts.numLayers === undefined ? 1 : expectInteger(opts.numLayers, 'options.numLayers', 1),
      attentionSize: opts.attentionSize === undefined ? hiddenSize : expectInteger(opts.attentionSize, 'options.attentionSize', 1),
    };
    const o = this.options;
    if (contextFeeding && (o.numLayers < 2 || attention === 'none')) {
      throw rangeError(`Seq2Seq: options.contextFeeding feeds the attention of the first decoder layer to the layers above, so it needs numLayers >= 2 and an attention (received numLayers ${o.numLayers}, attention '${attention}')`);
    }
    const Cell = cell === 'lstm' ? LSTM : GRU;
    this.sourceEmbedding = this.registerModule('source_embedding', new Embedding({ numEmbeddings: o.sourceVocabSize, embeddingDim: o.embeddingDim }));
    this.encoder = this.registerModule('encoder', new Cell({
      inputSize: o.embeddingDim, hiddenSize: bidirectional ? hiddenSize / 2 : hiddenSize, numLayers: o.numLayers, bidirectional, dropout: dropoutP,
    }));
    // row targetVocabSize: <start>
    this.targetEmbedding = this.registerModule('target_embedding', new Embedding({ numEmbeddings: o.targetVocabSize + 1, embeddingDim: o.embeddingDim }));
    this.decoder = this.registerModule('decoder', new Cell({ inputSize: o.embeddingDim, hiddenSize, numLayers: contextFeeding ? 1 : o.numLayers, dropout: dropoutP }));
    this.upperDecoder = !contextFeeding ? null : this.registerModule('decoder_upper', new Cell({
      inputSize: 2 * hiddenSize, hiddenSize, numLayers: o.numLayers - 1, dropout: dropoutP,
    }));
    this.attention = attention === 'none' ? null : this.registerModule('attention', attention === 'bahdanau'
      ? new BahdanauAttention({ querySize: hiddenSize, keySize: hiddenSize, attentionSize: o.attentionSize })
      : new LuongAttention({ querySize: hiddenSize, keySize: hiddenSize, score: attention === 'dot' ? 'dot' : 'general' }));
    this.combine = attention === 'none' ? null : this.registerModule('combine', new Linear({ inFeatures: 2 * hiddenSize, outFeatures: hiddenSize }));
    // class targetVocabSize: <end>
    this.output = this.registerModule('output', new Linear({ inFeatures: hiddenSize, outFeatures: o.targetVocabSize + 1 }));
    this.ctcHead = ctcWeight === 0 ? null : this.registerModule('ctc_head', new Linear({ inFeatures: hiddenSize, outFeatures: CTC_FRAMES * (o.targetVocabSize + 1) }));
  }

  override config(): Record<string, unknown> {
    return { ...this.options };
  }

  /** The id of <start> (a row of the decoder's embedding) and of <end> (a class of its output). */
  get startToken(): number {
    return this.options.targetVocabSize;
  }

  get endToken(): number {
    return this.options.targetVocabSize;
  }

  /**
   * The teacher-forced pass over source and target pairs: logits [B, n + 1, targetVocabSize + 1]
   * for the target tokens and <end> (rows padded to the longest target), and the attention
   * weights [B, n + 1, S] (null with attention 'none'). Differentiable.
   */
  forward(sources: readonly (readonly number[])[], targets: readonly (readonly number[])[]): { logits: Tensor; weights: Tensor | null; targets: Int32Array } {
    const name = 'Seq2Seq#forward()';
    const batch = this.sourceBatch(name, sources);
    const { inputs, outputs, T } = this.targetBatch(name, targets, batch.B);
    return { ...this.teacherForced(batch, inputs, T), targets: outputs };
  }

  /**
   * The training loss: cross entropy of every target token and <end>, averaged over them (padding
   * excluded), label-smoothed in training mode (options.labelSmoothing). With options.ctcWeight w,
   * (1 - w) x that + w x the CTC loss of the targets on the encoder's outputs (in any mode; see
   * ctcLoss() for its mean). What fit() minimizes for a Seq2Seq on { sources, targets }.
   */
  loss(sources: readonly (readonly number[])[], targets: readonly (readonly number[])[]): Tensor {
    const name = 'Seq2Seq#loss()';
    const batch = this.sourceBatch(name, sources);
    let { inputs, outputs, T } = this.targetBatch(name, targets, batch.B);
    if (this.training && this.options.teacherForcing < 1) inputs = this.scheduledInputs(batch, inputs, outputs, T);
    const { logits, values } = this.teacherForced(batch, inputs, T);
    const loss = crossEntropyLoss(logits, outputs, { ignoreIndex: IGNORE, labelSmoothing: this.training ? this.options.labelSmoothing : 0 });
    if (!this.ctcHead) return loss;
    const w = this.options.ctcWeight;
    return loss.mul(1 - w).add(this.ctcLoss(batch, values, targets).mul(w));
  }

  /**
   * log p(target, then <end> | source) of every pair under the model in evaluation mode (teacher
   * forced, no gradient): what decode() reports for an ended hypothesis, for any target. For
   * reranking candidates (from another model, another direction, a lexicon) or a confidence.
   */
  sequenceLogProbs(sources: readonly (readonly number[])[], targets: readonly (readonly number[])[]): number[] {
    const name = 'Seq2Seq#sequenceLogProbs()';
    // every pair checked first, so that an error names its index in the whole list
    this.targetBatch(name, targets, this.sourceBatch(name, sources).B);
    // chunks of pairs of like lengths (sources, then targets), so that little of a chunk is padding
    const order = [...sources.keys()].sort((a, b) => sources[a].length - sources[b].length || targets[a].length - targets[b].length || a - b);
    const result: number[] = new Array<number>(sources.length);
    this.inference(() => {
      for (let first = 0; first < order.length; first += DECODE_CHUNK) {
        const rows = order.slice(first, first + DECODE_CHUNK);
        const batch = this.sourceBatch(name, rows.map((i) => sources[i]));
        const { inputs, outputs, T } = this.targetBatch(name, rows.map((i) => targets[i]), batch.B);
        const losses = scope(() => {
          const { logits } = this.teacherForced(batch, inputs, T);
          return crossEntropyLoss(logits, outputs, { ignoreIndex: IGNORE, reduction: 'none' }).toArray();
        });
        // rows b * T + k: the tokens of pair b and its <end>, then padding (ignored: a loss of 0)
        rows.forEach((i, b) => {
          let total = 0;
          for (let k = 0; k < T; ++k) total -= losses[b * T + k];
          result[i] = total;
        });
      }
    });
    return result;
  }

  /** The output tokens of every source: a beam search (or greedy search), in native code. */
  translate(sources: readonly (readonly number[])[], options: TranslateOptions = {}): number[][] {
    return this.decode(sources, options).tokens;
  }

  /** translate() with each result's log-probability and whether it ended on <end>. */
  decode(sources: readonly (readonly number[])[], options: TranslateOptions = {}): Translation {
    const result: Translation = { tokens: [], logProbs: [], ended: [] };
    for (const [best] of this.search('Seq2Seq#translate()', sources, options, false)) {
      result.tokens.push(best.tokens);
      result.logProbs.push(best.logProb);
      result.ended.push(best.ended);
    }
    return result;
  }

  /**
   * The `n` best hypotheses of every source from a beam search (options.n, default beamWidth; at
   * most beamWidth), best first by their score: candidates to rerank with other models (a model
   * of the other direction, trained on reversed targets, through sequenceLogProbs(); a language
   * model; a lexicon). The search goes on until n ended hypotheses beat every live one (or
   * beamWidth have ended), so a source gets fewer only where the search found fewer (a tiny
   * vocabulary, a short maxLength: hypotheses cut there count, with ended false). The first is
   * what decode() gives.
   * Greedy search gives one a source.
   */
  nBest(sources: readonly (readonly number[])[], options: NBestOptions = {}): Hypothesis[][] {
    return this.search('Seq2Seq#nBest()', sources, options, true);
  }

  /** decode() and nBest(): options checked, then the native search, chunk by chunk. */
  private search(name: string, sources: readonly (readonly number[])[], options: NBestOptions, withN: boolean): Hypothesis[][] {
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['beamWidth', 'maxLength', 'lengthPenalty', 'greedy', 'ensemble', ...(withN ? ['n'] : [])], 'options');
    const beamWidth = opts.beamWidth === undefined ? 1 : expectInteger(opts.beamWidth, 'options.beamWidth', 1, 4096);
    const greedy = opts.greedy === undefined ? false : expectBoolean(opts.greedy, 'options.greedy');
    const n = !withN ? 1 : opts.n === undefined ? (greedy ? 1 : beamWidth) : expectInteger(opts.n, 'options.n', 1, greedy ? 1 : beamWidth);
    const lengthPenalty = opts.lengthPenalty === undefined ? 0 : expectNumber(opts.lengthPenalty, 'options.lengthPenalty');
    if (lengthPenalty < 0) throw rangeError(`Expected options.lengthPenalty to be at least 0 but received ${lengthPenalty}`);
    const batch = this.sourceBatch(name, sources);
    const maxLength = opts.maxLength === undefined ? 2 * batch.S + 10 : expectInteger(opts.maxLength, 'options.maxLength', 0, 1 << 20);
    const device = this.output.weight.device;
    if (device !== 'cpu') throw typeError(`${name}: decoding runs on the CPU; move the model with model.to('cpu') first`, 'ERR_INVALID_ARG_VALUE');
    const others = opts.ensemble === undefined ? [] : this.ensembleOf(opts.ensemble);
    const result: Hypothesis[][] = [];
    // every model of the search in inference mode while it runs
    const models = [this, ...others];
    const wasTraining = models.map((model) => model.training);
    for (const model of models) model.eval();
    try {
      noGrad(() => {
        for (let first = 0; first < sources.length; first += DECODE_CHUNK) {
          const chunk = sources.slice(first, first + DECODE_CHUNK);
          // scope(): each chunk's tensors go back to the allocator as it ends, not at a collection
          const part = scope(() => {
            const batch = this.sourceBatch(name, chunk);
            return native.seq2seqDecode(models.map((model) => model.decoderSpec(batch)),
              [greedy ? 0 : beamWidth, maxLength, lengthPenalty, this.startToken, this.endToken, n]);
          });
          let i = 0;
          for (const count of part.counts) {
            const list: Hypothesis[] = [];
            for (let k = 0; k < count; ++k, ++i) {
              // the score the native search ranked by (cpp/seq2seq.h's length_normalized)
              list.push({ tokens: Array.from(part.tokens[i]), logProb: part.logProbs[i], score: part.scores[i], ended: part.ended[i] === 1 });
            }
            result.push(list);
          }
        }
      });
    } finally {
      models.forEach((model, i) => model.train(wasTraining[i]));
    }
    return result;
  }

  /** options.ensemble checked: Seq2Seq models with this one's vocabularies, on the CPU. */
  private ensembleOf(ensemble: unknown): Seq2Seq[] {
    if (!Array.isArray(ensemble)) throw typeError(`Expected options.ensemble to be an array of Seq2Seq models but received ${describe(ensemble)}`);
    return ensemble.map((model, i) => {
      if (!(model instanceof Seq2Seq)) throw typeError(`Expected options.ensemble[${i}] to be a Seq2Seq model but received ${describe(model)}`);
      const o = model.options;
      if (o.sourceVocabSize !== this.options.sourceVocabSize || o.targetVocabSize !== this.options.targetVocabSize) {
        throw rangeError(`options.ensemble[${i}] has vocabularies of ${o.sourceVocabSize} source and ${o.targetVocabSize} target tokens; ` +
          `this model has ${this.options.sourceVocabSize} and ${this.options.targetVocabSize}`);
      }
      if (model.output.weight.device !== 'cpu') {
        throw typeError(`options.ensemble[${i}] is on ${model.output.weight.device}: decoding runs on the CPU; move it with model.to('cpu') first`, 'ERR_INVALID_ARG_VALUE');
      }
      return model;
    });
  }

  /**
   * Where the model looks: the attention weights [target length + 1][source length] of `target`
   * (teacher-forced, in evaluation mode), a row per target token and one for <end>.
   */
  attentionWeights(source: readonly number[], target: readonly number[]): number[][] {
    const name = 'Seq2Seq#attentionWeights()';
    if (!this.attention) throw typeError(`${name}: this model has no attention (options.attention is 'none')`, 'ERR_INVALID_ARG_VALUE');
    if (!Array.isArray(source)) throw typeError(`${name}: expected source to be an array of token ids but received ${describe(source)}`);
    if (!Array.isArray(target)) throw typeError(`${name}: expected target to be an array of token ids but received ${describe(target)}`);
    const values = this.inference(() => scope(() => this.forward([source], [target]).weights!.toArray()));
    const S = source.length;
    return Array.from({ length: target.length + 1 }, (_, t) => Array.from(values.subarray(t * S, (t + 1) * S)));
  }

  // ---- internals ------------------------------------------------------------------------------

  private sourceBatch(name: string, sources: unknown): Batch {
    if (!Array.isArray(sources)) throw typeError(`${name}: expected sources to be an array of token id arrays but received ${describe(sources)}`);
    const V = this.options.sourceVocabSize;
    const B = sources.length;
    const lengths = sources.map((row, b) => {
      if (!Array.isArray(row) && !(row instanceof Int32Array)) throw typeError(`${name}: expected sources[${b}] to be an array of token ids but received ${describe(row)}`);
      if (row.length === 0) throw rangeError(`${name}: sources[${b}] is empty; every source needs at least one token`);
      return row.length;
    });
    const S = B === 0 ? 1 : Math.max(...lengths);
    const source = new Int32Array(S * B);
    (sources as ArrayLike<number>[]).forEach((row, b) => {
      for (let t = 0; t < row.length; ++t) {
        const id = row[t];
        if (!Number.isInteger(id) || id < 0 || id >= V) throw rangeError(`${name}: sources[${b}][${t}] is ${describe(id)}, not a source id in [0, ${V - 1}]`);
        source[t * B + b] = id;
      }
    });
    return { source, lengths, S, B };
  }

  /** Decoder inputs <start> y_1 .. y_n and outputs y_1 .. y_n <end>, [B, T] batch-first, T = longest n + 1. */
  private targetBatch(name: string, targets: unknown, B: number): { inputs: Int32Array; outputs: Int32Array; T: number } {
    if (!Array.isArray(targets)) throw typeError(`${name}: expected targets to be an array of token id arrays but received ${describe(targets)}`);
    if (targets.length !== B) throw rangeError(`${name}: expected one target per source (${B}) but received ${targets.length}`, 'ERR_SHAPE_MISMATCH');
    const V = this.options.targetVocabSize;
    targets.forEach((row, b) => {
      if (!Array.isArray(row) && !(row instanceof Int32Array)) throw typeError(`${name}: expected targets[${b}] to be an array of token ids but received ${describe(row)}`);
    });
    const rows = targets as ArrayLike<number>[];
    const T = Math.max(0, ...rows.map((row) => row.length)) + 1;
    const inputs = new Int32Array(B * T).fill(this.startToken);
    const outputs = new Int32Array(B * T).fill(IGNORE);
    rows.forEach((row, b) => {
      for (let t = 0; t < row.length; ++t) {
        const id = row[t];
        if (!Number.isInteger(id) || id < 0 || id >= V) throw rangeError(`${name}: targets[${b}][${t}] is ${describe(id)}, not a target id in [0, ${V - 1}]`);
        inputs[b * T + t + 1] = id;
        outputs[b * T + t] = id;
      }
      outputs[b * T + row.length] = this.endToken;
    });
    return { inputs, outputs, T };
  }

  private get cellKind(): CellKind {
    return this.options.cell === 'lstm' ? CellKind.Lstm : CellKind.Gru;
  }

  /** The encoder over a batch: outputs [S, B, H] time-major, and the decoder's initial state [L, B, H]. */
  private encode(batch: Batch): { values: Tensor; h: Tensor; c: Tensor | null } {
    const { S, B } = batch;
    const p = this.options.dropout;
    const x = dropout(embedding(batch.source, this.sourceEmbedding.weight).reshape([S, B, this.options.embeddingDim]), p, this.training);
    const r = this.encoder.forward(x, { lengths: batch.lengths });
    const bridge = (state: Tensor) => {
      if (!this.options.bidirectional) return state;
      // [L * 2, B, H / 2] -> [L, B, H]: each layer's forward and backward final states side by side
      const L = this.options.numLayers;
      const half = this.options.hiddenSize / 2;
      return state.reshape([L, 2, B, half]).permute([0, 2, 1, 3]).reshape([L, B, 2 * half]);
    };
    return { values: r.output, h: bridge(r.h), c: 'c' in r ? bridge((r as { c: Tensor }).c) : null };
  }

  /**
   * CTC of the targets on the encoder's outputs values [S, B, H]: ctc_head gives each position
   * CTC_FRAMES frames (time-major: position j's frames are frames CTC_FRAMES j ..), blank last.
   */
  private ctcLoss(batch: Batch, values: Tensor, targets: readonly (readonly number[])[]): Tensor {
    const { S, B } = batch;
    const C = this.options.targetVocabSize + 1;
    const frames = this.ctcHead!.forward(values).reshape([S, B, CTC_FRAMES, C]).permute([0, 2, 1, 3]).reshape([CTC_FRAMES * S, B, C]);
    return ctcLoss(frames.logSoftmax(), targets.map((row) => Array.from(row)), batch.lengths.map((n) => CTC_FRAMES * n), targets.map((row) => row.length),
      { blank: C - 1, zeroInfinity: true });
  }

  private teacherForced(batch: Batch, inputs: Int32Array, T: number): { logits: Tensor; weights: Tensor | null; values: Tensor } {
    const { B } = batch;
    const o = this.options;
    const { values, h, c } = this.encode(batch);
    // decoder inputs time-major [T, B]
    const timeMajor = new Int32Array(T * B);
    for (let b = 0; b < B; ++b) for (let t = 0; t < T; ++t) timeMajor[t * B + b] = inputs[b * T + t];
    const x = dropout(embedding(timeMajor, this.targetEmbedding.weight).reshape([T, B, o.embeddingDim]), o.dropout, this.training);
    // with context feeding, the encoder's state for layer 1 starts the decoder, the rest its upper layers
    const lower = (state: Tensor) => (this.upperDecoder ? state.slice(0, 0, 1) : state);
    const r = this.decoder.forward(x, { h0: lower(h), ...(c ? { c0: lower(c) } : {}) });
    let states = r.output.transpose(0, 1); // [B, T, H]
    let features = states;
    let weights: Tensor | null = null;
    if (this.attention) {
      const memory = values.transpose(0, 1); // [B, S, H]
      const mask = attentionMask('Seq2Seq', { lengths: batch.lengths }, B, batch.S, memory.device);
      const attended = this.attention.attend(states, this.attention.projectKeys(memory), memory, mask);
      weights = attended.weights;
      if (this.upperDecoder) {
        // layers 2..L over [c_t; h_t of layer 1], time-major
        const fed = Tensor.concat([attended.context.transpose(0, 1), dropout(r.output, o.dropout, this.training)], 2);
        const upper = this.upperDecoder.forward(fed, { h0: h.slice(0, 1), ...(c ? { c0: c.slice(0, 1) } : {}) });
        states = upper.output.transpose(0, 1);
      }
      features = this.combine!.forward(Tensor.concat([attended.context, states], 2)).tanh();
    }
    return { logits: this.output.forward(dropout(features, o.dropout, this.training)), weights, values };
  }

  /** Parallel scheduled sampling: each decoder input after <start> replaced, with probability 1 - teacherForcing, by the model's prediction. */
  private scheduledInputs(batch: Batch, inputs: Int32Array, outputs: Int32Array, T: number): Int32Array {
    const predicted = noGrad(() => this.teacherForced(batch, inputs, T).logits.argmax(-1).toArray());
    const mixed = inputs.slice();
    const keep = this.options.teacherForcing;
    for (let b = 0; b < batch.B; ++b) {
      for (let t = 1; t < T; ++t) {
        // position t reads the token predicted at t - 1 (unless that is <end>, which is no input)
        if (outputs[b * T + t - 1] === IGNORE || outputs[b * T + t - 1] === this.endToken) break;
        const guess = predicted[b * T + t - 1];
        if (random() >= keep && guess !== this.endToken) mixed[b * T + t] = guess;
      }
    }
    return mixed;
  }

  /** This model's part of a native search over `batch`: its weights and its encoder's memory of the sources. */
  private decoderSpec(batch: Batch): Parameters<typeof native.seq2seqDecode>[0][number] {
    const o = this.options;
    const { values, h, c } = this.encode(batch);
    const keys = !this.attention ? values : this.attention.projectKeys(values); // [S, B, K]
    const bahdanau = this.attention instanceof BahdanauAttention ? this.attention : null;
    const storageOf = (t: Tensor | null | undefined) => (t ? t.storage : null);
    const layers = [...Array(o.numLayers).keys()].map((l) =>
      (this.upperDecoder && l > 0 ? this.upperDecoder.layerWeights(l - 1, false) : this.decoder.layerWeights(l, false)).map(storageOf));
    return [
      [this.cellKind, o.numLayers, o.embeddingDim, o.hiddenSize, o.targetVocabSize + 1, ATTENTION_KINDS[o.attention], keys.shape[2], o.hiddenSize,
        o.contextFeeding ? 1 : 0],
      this.targetEmbedding.weight.storage,
      layers,
      [storageOf(bahdanau?.query.weight), storageOf(bahdanau?.query.bias), storageOf(bahdanau?.v.weight), storageOf(this.combine?.weight),
        storageOf(this.combine?.bias), this.output.weight.storage, storageOf(this.output.bias)],
      [batch.S, batch.B, values.storage, keys.storage, Int32Array.from(batch.lengths), h.storage, storageOf(c)],
    ];
  }
}
