/**
 * Text: tokenizers whose vocabulary is saved with the model, and CharLanguageModel,
 * the whole job of "train on this text and generate more of it" in a few lines.
 *
 * @example
 * const lm = new CharLanguageModel(text, { hiddenSize: 256, numLayers: 2 });
 * await lm.train(text, { epochs: 3 });
 * console.log(lm.generate({ prime: 'The ', length: 300, temperature: 0.8 }));
 * await lm.save('model.safetensors');
 */
import * as fs from 'node:fs';
import { describe, expectInteger, expectNumber, expectOptions, expectKnownKeys, rangeError, typeError } from '../core/errors';
import { fit, FitOptions, History, Progress, EpochInfo } from '../train/fit';
import { Adam } from '../optim/optimizers';
import { manualSeed } from '../core/random';
import { importOnnxFile } from '../io/onnx/import';
import { CHECKPOINT_KEY, loadModel, parseJson, save } from '../io/serialize';
import { SequenceModel, CellType } from '../nn/sequence-model';
import { Tensor } from '../core/tensor';

/** Maps characters to ids and back. Id 0 stands for characters not seen when it was built. */
export class CharTokenizer {
  readonly chars: readonly string[];
  private readonly index: Map<string, number>;

  constructor(chars: readonly string[]) {
    if (!Array.isArray(chars) || chars.some((c) => typeof c !== 'string')) throw typeError(`Expected chars to be an array of strings but received ${describe(chars)}`);
    this.chars = Object.freeze(['\u0000', ...chars.filter((c) => c !== '\u0000')]);
    this.index = new Map(this.chars.map((c, i) => [c, i]));
  }

  /** A tokenizer over every distinct character (code point) of `text`. */
  static fromText(text: string): CharTokenizer {
    if (typeof text !== 'string') throw typeError(`Expected text to be a string but received ${describe(text)}`);
    return new CharTokenizer([...new Set(Array.from(text))].sort());
  }

  get vocabSize(): number {
    return this.chars.length;
  }

  encode(text: string): Int32Array {
    if (typeof text !== 'string') throw typeError(`Expected text to be a string but received ${describe(text)}`);
    return Int32Array.from(Array.from(text), (c) => this.index.get(c) ?? 0);
  }

  decode(ids: ArrayLike<number>): string {
    let out = '';
    for (let i = 0; i < ids.length; ++i) out += ids[i] > 0 && ids[i] < this.chars.length ? this.chars[ids[i]] : '';
    return out;
  }

  toJSON(): { type: 'char'; chars: string[] } {
    return { type: 'char', chars: this.chars.slice(1) };
  }
}

/**
 * Words, punctuation and whitespace runs as tokens, so decode(encode(text)) gives the
 * text back (up to words outside the vocabulary, which become <unk>).
 */
export class WordTokenizer {
  readonly tokens: readonly string[];
  readonly lowercase: boolean;
  private readonly index: Map<string, number>;
  static readonly pattern = /[\p{L}\p{N}'’]+|\s+|[^\p{L}\p{N}\s]/gu;

  constructor(tokens: readonly string[], options: { lowercase?: boolean } = {}) {
    if (!Array.isArray(tokens) || tokens.some((c) => typeof c !== 'string')) throw typeError(`Expected tokens to be an array of strings but received ${describe(tokens)}`);
    this.tokens = Object.freeze(['<unk>', ...tokens.filter((t) => t !== '<unk>')]);
    this.lowercase = options.lowercase ?? false;
    this.index = new Map(this.tokens.map((t, i) => [t, i]));
  }

  /** The `maxVocab` most frequent tokens of `text` (ties broken alphabetically). */
  static fromText(text: string, options: { maxVocab?: number; lowercase?: boolean } = {}): WordTokenizer {
    if (typeof text !== 'string') throw typeError(`Expected text to be a string but received ${describe(text)}`);
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['maxVocab', 'lowercase'], 'options');
    const maxVocab = opts.maxVocab === undefined ? 10000 : expectInteger(opts.maxVocab, 'options.maxVocab', 2);
    const lowercase = (opts.lowercase as boolean | undefined) ?? false;
    const counts = new Map<string, number>();
    for (const token of WordTokenizer.split(text, lowercase)) counts.set(token, (counts.get(token) ?? 0) + 1);
    const sorted = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, maxVocab - 1).map(([t]) => t);
    return new WordTokenizer(sorted, { lowercase });
  }

  static split(text: string, lowercase = false): string[] {
    return (lowercase ? text.toLowerCase() : text).match(WordTokenizer.pattern) ?? [];
  }

  get vocabSize(): number {
    return this.tokens.length;
  }

  encode(text: string): Int32Array {
    if (typeof text !== 'string') throw typeError(`Expected text to be a string but received ${describe(text)}`);
    return Int32Array.from(WordTokenizer.split(text, this.lowercase), (t) => this.index.get(t) ?? 0);
  }

  decode(ids: ArrayLike<number>): string {
    let out = '';
    for (let i = 0; i < ids.length; ++i) out += this.tokens[ids[i]] ?? '<unk>';
    return out;
  }

  toJSON(): { type: 'word'; tokens: string[]; lowercase: boolean } {
    return { type: 'word', tokens: this.tokens.slice(1), lowercase: this.lowercase };
  }
}

export type Tokenizer = CharTokenizer | WordTokenizer;

export function tokenizerFromJSON(json: unknown): Tokenizer {
  const value = json as { type?: string; chars?: string[]; tokens?: string[]; lowercase?: boolean };
  if (value?.type === 'char') return new CharTokenizer(value.chars ?? []);
  if (value?.type === 'word') return new WordTokenizer(value.tokens ?? [], { lowercase: value.lowercase });
  throw rangeError(`Unknown tokenizer description ${describe(json)}`);
}

export { sampleLogits } from '../nn/sampling';

export interface CharModelOptions {
  cell?: CellType;
  hiddenSize?: number;
  numLayers?: number;
  embeddingDim?: number;
  dropout?: number;
}

export interface CharTrainOptions {
  epochs?: number;
  batchSize?: number;
  bpttSteps?: number;
  lr?: number;
  /** Share of the text (its end) held out for validation. Default 0.1. */
  validationSplit?: number;
  clipGradNorm?: number;
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** Called after each epoch with the validation bits per character. */
  onEpochEnd?: (info: EpochInfo & { valBitsPerChar?: number }) => void | Promise<void>;
  checkpoint?: FitOptions['checkpoint'];
  resumeFrom?: string;
  seed?: number;
  /** A live dashboard while training (see FitOptions.dashboard). */
  dashboard?: FitOptions['dashboard'];
}

/**
 * Where text comes from: a string is the text itself; `{ file }` names a UTF-8 file to read
 * (a missing one is an ENOENT error); `{ text }` says the same as a plain string.
 */
export type TextSource = string | { text: string } | { file: string };

/** A character-level language model: a tokenizer, an embedding, stacked recurrent layers and a softmax head. */
export class CharLanguageModel {
  readonly tokenizer: CharTokenizer;
  readonly model: SequenceModel;
  history: History | null = null;

  /**
   * Builds the vocabulary from `text` (the text itself, `{ file: path }`, or a tokenizer) and a
   * fresh model. See also CharLanguageModel.fromFile.
   */
  constructor(text: TextSource | CharTokenizer, options: CharModelOptions = {}, model?: SequenceModel) {
    this.tokenizer = text instanceof CharTokenizer ? text : CharTokenizer.fromText(readText(text));
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['cell', 'hiddenSize', 'numLayers', 'embeddingDim', 'dropout'], 'options');
    this.model = model ?? new SequenceModel({
      cell: (opts.cell as CellType | undefined) ?? 'lstm',
      vocabSize: this.tokenizer.vocabSize,
      embeddingDim: (opts.embeddingDim as number | undefined) ?? 64,
      hiddenSize: (opts.hiddenSize as number | undefined) ?? 256,
      numLayers: (opts.numLayers as number | undefined) ?? 2,
      dropout: (opts.dropout as number | undefined) ?? 0,
      outputSize: this.tokenizer.vocabSize,
    });
  }

  /** A model whose vocabulary is that of the UTF-8 file at `path` (train it with `{ file: path }`). */
  static fromFile(path: string, options: CharModelOptions = {}): CharLanguageModel {
    return new CharLanguageModel({ file: path }, options);
  }

  /** Trains on `text` (the text itself, or `{ file: path }`) with truncated BPTT. */
  async train(text: TextSource, options: CharTrainOptions = {}): Promise<History> {
    const corpus = readText(text);
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['epochs', 'batchSize', 'bpttSteps', 'lr', 'validationSplit', 'clipGradNorm', 'signal', 'onProgress', 'onEpochEnd', 'checkpoint', 'resumeFrom', 'seed', 'dashboard'], 'options');
    const split = opts.validationSplit === undefined ? 0.1 : expectNumber(opts.validationSplit, 'options.validationSplit');
    if (split < 0 || split >= 0.5) throw rangeError(`Expected options.validationSplit to be in [0, 0.5) but received ${split}`);
    const ids = this.tokenizer.encode(corpus);
    const cut = Math.floor(ids.length * (1 - split));
    if (cut < 2) throw rangeError(`The text is too short to train on (${ids.length} characters)`);
    const streamOf = (from: number, to: number) => ({
      stream: Tensor.from(Float32Array.from(ids.subarray(from, to - 1)), [to - 1 - from]),
      targets: Tensor.from(Float32Array.from(ids.subarray(from + 1, to)), [to - 1 - from]),
    });
    const batchSize = (opts.batchSize as number | undefined) ?? 32;
    const validation = split > 0 && ids.length - cut > 2 ? streamOf(cut, ids.length) : undefined;
    const userEpochEnd = opts.onEpochEnd as CharTrainOptions['onEpochEnd'];
    this.history = await fit(this.model, streamOf(0, cut), {
      epochs: opts.epochs as number | undefined,
      batchSize,
      bpttSteps: (opts.bpttSteps as number | undefined) ?? 64,
      loss: 'crossEntropy',
      optimizer: new Adam(this.model.parameters(), { lr: (opts.lr as number | undefined) ?? 4e-3 }),
      clipGradNorm: (opts.clipGradNorm as number | undefined) ?? 1,
      shuffle: false,
      validationData: validation,
      signal: opts.signal as AbortSignal | undefined,
      onProgress: opts.onProgress as FitOptions['onProgress'],
      onEpochEnd: userEpochEnd ? (info) => userEpochEnd({ ...info, ...(info.valLoss !== undefined ? { valBitsPerChar: info.valLoss / Math.LN2 } : {}) }) : undefined,
      // the vocabulary goes into the checkpoint too: it samples, and a resume can check it
      checkpoint: opts.checkpoint ? { ...(opts.checkpoint as NonNullable<FitOptions['checkpoint']>), metadata: { ...(opts.checkpoint as NonNullable<FitOptions['checkpoint']>).metadata, ...this.onnxMetadata() } } : undefined,
      resumeFrom: opts.resumeFrom as string | undefined,
      seed: opts.seed as number | undefined,
      ...(opts.dashboard !== undefined ? { dashboard: opts.dashboard as FitOptions['dashboard'] } : {}),
    });
    return this.history;
  }

  /** Average bits per character the model needs to encode `text` (or `{ file }`; lower is better). */
  bitsPerChar(text: TextSource): number {
    const ids = this.tokenizer.encode(readText(text));
    if (ids.length < 2) throw rangeError('bitsPerChar needs at least two characters');
    return this.model.inference(() => {
      const input = Tensor.from(Float32Array.from(ids.subarray(0, -1)), [ids.length - 1, 1], { device: this.model.device });
      const { output } = this.model.forward(input);
      const logProbs = output.logSoftmax().toArray();
      const V = this.tokenizer.vocabSize;
      let nats = 0;
      for (let t = 0; t < ids.length - 1; ++t) nats -= logProbs[t * V + ids[t + 1]];
      return nats / (ids.length - 1) / Math.LN2;
    });
  }

  /**
   * Generates exactly `length` characters after `prime` (returned with the prime in front).
   * temperature < 1 sharpens the distribution (0: always the most likely character), topK keeps
   * the k likeliest. Only characters of the vocabulary are sampled.
   */
  generate(options: { prime?: string; length?: number; temperature?: number; topK?: number; seed?: number } = {}): string {
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['prime', 'length', 'temperature', 'topK', 'seed'], 'options');
    const prime = (opts.prime as string | undefined) ?? '';
    if (typeof prime !== 'string') throw typeError(`Expected options.prime to be a string but received ${describe(prime)}`);
    const length = opts.length === undefined ? 200 : expectInteger(opts.length, 'options.length', 0, 1_000_000);
    const temperature = opts.temperature === undefined ? 1 : expectNumber(opts.temperature, 'options.temperature');
    const topK = opts.topK === undefined ? undefined : expectInteger(opts.topK, 'options.topK', 1);
    if (opts.seed !== undefined) manualSeed(expectInteger(opts.seed, 'options.seed', 0, 0xffffffff));
    return this.model.inference(() => {
      const primeIds = this.tokenizer.encode(prime);
      // the prime in one forward call, then the sampling loop in one native call (SequenceModel#sample)
      const start = primeIds.length > 0 ? primeIds : Int32Array.of(this.tokenizer.encode('\n')[0] ?? 0);
      const first = this.model.forward(Tensor.from(Float32Array.from(start), [start.length, 1], { device: this.model.device }));
      const logits = first.output.select(0, start.length - 1).reshape([1, -1]);
      // id 0 is "a character not in the vocabulary": it has no text to give
      const out = this.model.sample(logits, first.state, { length, temperature, topK, exclude: [0] });
      return prime + this.tokenizer.decode(out);
    });
  }

  /** Saves weights, config, vocabulary and training history in one safetensors file. */
  async save(path: string): Promise<void> {
    await save(this.model, path, {
      'recurrent.tokenizer': JSON.stringify(this.tokenizer.toJSON()),
      ...(this.history ? { 'recurrent.history': JSON.stringify(this.history) } : {}),
    });
  }

  /** What exportOnnx puts in the file's metadata_props: the vocabulary (`recurrent.tokenizer`, ids are indices into ['\u0000', ...chars]). */
  onnxMetadata(): Record<string, string> {
    return { 'recurrent.tokenizer': JSON.stringify(this.tokenizer.toJSON()) };
  }

  /** A character model from an ONNX file written by exportOnnx(lm, ...). */
  static async fromOnnx(path: string): Promise<CharLanguageModel> {
    return CharLanguageModel.fromParts(await importOnnxFile(path), path);
  }

  static async load(path: string): Promise<CharLanguageModel> {
    return CharLanguageModel.fromParts(await loadModel(path), path);
  }

  private static fromParts({ model, metadata }: { model: unknown; metadata: Record<string, string> }, path: string): CharLanguageModel {
    if (model instanceof SequenceModel && !metadata['recurrent.tokenizer'] && metadata[CHECKPOINT_KEY]) {
      throw rangeError(`${path} is a training checkpoint without the vocabulary (written by an older version, or by fit() for another model): use the model file saved at the end of training`, 'ERR_INVALID_ARG_VALUE');
    }
    if (!(model instanceof SequenceModel) || !metadata['recurrent.tokenizer']) {
      throw rangeError(`${path} is not a character language model (no tokenizer in its metadata)`, 'ERR_INVALID_ARG_VALUE');
    }
    const tokenizer = tokenizerFromJSON(parseJson(metadata['recurrent.tokenizer'], 'recurrent.tokenizer', path));
    if (!(tokenizer instanceof CharTokenizer)) throw rangeError(`${path} holds a word-level model`);
    const lm = new CharLanguageModel(tokenizer, {}, model);
    lm.history = metadata['recurrent.history'] ? (parseJson(metadata['recurrent.history'], 'recurrent.history', path) as History) : null;
    return lm;
  }
}

/**
 * The text of a TextSource. A plain string is always the text itself; one that looks like a file
 * name and nothing else (one short line without spaces, like "corpus.txt" or "data/a.md") is
 * refused, since training on the characters of a mistyped path is never what was meant.
 */
function readText(source: TextSource): string {
  if (source && typeof source === 'object' && !Array.isArray(source)) {
    const keys = Object.keys(source);
    if (keys.length === 1 && keys[0] === 'file') {
      const file = (source as { file: unknown }).file;
      if (typeof file !== 'string' || !file) throw typeError(`Expected text.file to be a file path but received ${describe(file)}`);
      try {
        return fs.readFileSync(file, 'utf8');
      } catch (error) {
        const e = error as NodeJS.ErrnoException;
        const reason = e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'it is a directory' : e.message;
        throw Object.assign(new Error(`Cannot read the text file ${JSON.stringify(file)}: ${reason}`), { code: e.code ?? 'ERR_INVALID_ARG_VALUE', path: file });
      }
    }
    if (keys.length === 1 && keys[0] === 'text' && typeof (source as { text: unknown }).text === 'string') return (source as { text: string }).text;
  }
  if (typeof source !== 'string') throw typeError(`Expected text to be a string, { text } or { file } but received ${describe(source)}`);
  if (source.length <= 255 && /^[^\s]+\.[A-Za-z0-9]{1,8}$|^[^\s]*[\\/][^\s]*$/.test(source)) {
    throw rangeError(`The text ${JSON.stringify(source)} looks like a file path: pass { file: ${JSON.stringify(source)} } to read the file, or { text: ${JSON.stringify(source)} } to train on this string itself`, 'ERR_AMBIGUOUS_TEXT');
  }
  return source;
}
