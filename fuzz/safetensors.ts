/**
 * A structured fuzzer for the safetensors reader and for rebuilding a model from a file
 * (parseSafetensors, then modelFromContent: what load() does after reading the bytes).
 *
 * Two kinds of input, built with fast-check so that a failure shrinks to a small
 * reproducer and every run is replayable from its seed:
 *  - mutations of valid files (saved models of every cell, checkpoints-like files, every
 *    dtype): bit flips, byte overwrites with boundary values, truncation, insertion,
 *    deletion, splices of two files, a rewritten header length;
 *  - files built from generated headers: valid and invalid dtypes, shapes and offsets
 *    (negative, fractional, huge, overlapping, out of range, wrong types), duplicate and
 *    odd names (__proto__, empty, unicode), metadata with model descriptions whose sizes
 *    are absurd or whose fields have the wrong types, data sections of any length.
 *
 * An input passes when reading it either succeeds or throws a TypeError/RangeError with
 * an ERR_ code, in under `hangMs` milliseconds. Anything else (another error, a native
 * crash, a hang) fails the run with the input that caused it.
 *
 *   npm run fuzz                      # 1,000,000 inputs (half of each kind)
 *   npx tsx fuzz/safetensors.ts --runs 20000 --seed 7
 */
import * as fc from 'fast-check';
import { GRU, LSTM, Linear, RNN, SequenceModel, Sequential, Embedding, Tensor, manualSeed } from '../lib/index';
import { parseSafetensors, serializeSafetensors } from '../lib/io/safetensors';
import { describeModel, modelFromContent } from '../lib/io/serialize';
import { Module } from '../lib/nn/module';

export interface FuzzReport {
  inputs: number;
  accepted: number;
  rejected: number;
  modelsBuilt: number;
  slowestMs: number;
  errorCodes: Record<string, number>;
  seconds: number;
}

const DTYPES = ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U64', 'U32', 'U16', 'U8', 'BOOL'];
const SIZES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1 };

/** Valid files to mutate: saved models of every kind, and tensors of every dtype. */
export function seedFiles(): Buffer[] {
  manualSeed(3);
  const models: Module[] = [
    new LSTM({ inputSize: 3, hiddenSize: 4, numLayers: 2, bidirectional: true }),
    new GRU({ inputSize: 2, hiddenSize: 3, bias: false }),
    new RNN({ inputSize: 2, hiddenSize: 2, nonlinearity: 'relu', batchFirst: true }),
    new SequenceModel({ cell: 'lstm', vocabSize: 5, embeddingDim: 3, hiddenSize: 4, outputSize: 5 }),
    new Sequential(new Linear({ inFeatures: 3, outFeatures: 2 }), new Embedding({ numEmbeddings: 4, embeddingDim: 2 })),
  ];
  const files = models.map((m) => serializeSafetensors(m.stateDict(), { format: 'pt', 'recurrent.model': JSON.stringify(describeModel(m)) }));
  // one tensor of each dtype, written by hand (the writer only writes F32)
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const chunks: Buffer[] = [];
  let offset = 0;
  DTYPES.forEach((dtype, k) => {
    const shape = [2, k % 3 + 1];
    const bytes = shape[0] * shape[1] * SIZES[dtype];
    header[`t.${dtype}`] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    const chunk = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; ++i) chunk[i] = (i * 37 + k) & 0xff;
    chunks.push(chunk);
    offset += bytes;
  });
  files.push(assemble(JSON.stringify(header), Buffer.concat(chunks)));
  files.push(serializeSafetensors({}, {}));
  for (const m of models) for (const p of m.parameters()) p.dispose();
  return files;
}

function assemble(json: string, data: Buffer, declared?: bigint): Buffer {
  const header = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + header.length + data.length);
  out.writeBigUInt64LE(declared ?? BigInt(header.length), 0);
  header.copy(out, 8);
  data.copy(out, 8 + header.length);
  return out;
}

// ---------------------------------------------------------------------------
// mutations of valid files

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'splice'; at: number; other: number; from: number }
  | { kind: 'length'; value: bigint }
  | { kind: 'text'; at: number; text: string };

const position = fc.nat({ max: 1 << 16 });
const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x22 /* " */, 0x2c /* , */, 0x5b /* [ */, 0x5d, 0x7b /* { */, 0x7d, 0x2d /* - */, 0x30, 0x39, 0x65 /* e */, 0x2e];
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: position, value: fc.oneof(fc.constantFrom(...INTERESTING), fc.nat({ max: 255 })) }),
  fc.record({ kind: fc.constant('truncate' as const), at: position }),
  fc.record({ kind: fc.constant('insert' as const), at: position, bytes: fc.uint8Array({ maxLength: 16 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: position, count: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ kind: fc.constant('splice' as const), at: position, other: fc.nat(), from: position }),
  fc.record({
    kind: fc.constant('length' as const),
    value: fc.oneof(fc.bigInt({ min: 0n, max: 1n << 64n - 1n }), fc.bigInt({ min: 0n, max: 4096n }), fc.constantFrom(0n, 1n, 2n, 7n, (1n << 63n), (1n << 64n) - 1n, 100n * 1024n * 1024n)),
  }),
  fc.record({
    kind: fc.constant('text' as const), at: position,
    text: fc.constantFrom('-1', '1e308', '9007199254740993', '0.5', 'null', '"F32"', '"X"', '[]', '{}', '[1,2,3]', '"__proto__"', '1e21', '18446744073709551616', '"\\u0000"', '\uFFFF', '"hiddenSize":1000000000'),
  }),
);

function applyMutations(base: Buffer, mutations: Mutation[], files: Buffer[]): Buffer {
  let bytes = Buffer.from(base);
  for (const m of mutations) {
    const at = bytes.length ? m.kind === 'length' ? 0 : ('at' in m ? m.at % (bytes.length + 1) : 0) : 0;
    switch (m.kind) {
      case 'flip': if (at < bytes.length) bytes[at] ^= 1 << m.bit; break;
      case 'set': if (at < bytes.length) bytes[at] = m.value; break;
      case 'truncate': bytes = bytes.subarray(0, at); break;
      case 'insert': bytes = Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)]); break;
      case 'delete': bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + m.count)]); break;
      case 'splice': {
        const other = files[m.other % files.length];
        bytes = Buffer.concat([bytes.subarray(0, at), other.subarray(m.from % (other.length + 1))]);
        break;
      }
      case 'length': if (bytes.length >= 8) bytes.writeBigUInt64LE(m.value, 0); break;
      case 'text': bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(m.text), bytes.subarray(at + m.text.length)]); break;
    }
  }
  return bytes;
}

// ---------------------------------------------------------------------------
// generated headers

const size = fc.oneof(
  { weight: 6, arbitrary: fc.nat({ max: 6 }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, 0.5, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 1e300, -0) },
  { weight: 1, arbitrary: fc.oneof(fc.constant(null), fc.string({ maxLength: 3 }), fc.constant(true)) },
);
const dtype = fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...DTYPES) }, { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 4 }), fc.constant(7), fc.constant(null), fc.constant('__proto__')) });
const name = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0', 'weight_ih_l0_reverse', 'weight_ih_l1', 'rnn.weight_ih_l0', 'head.weight', 'head.bias', 'embedding.weight', 'weight', 'bias', '0.weight', '1.weight') },
  { weight: 1, arbitrary: fc.oneof(fc.constantFrom('', '__proto__', 'constructor', 'toString', '__metadata__', 'a\u0000b', '\uD800'), fc.string({ maxLength: 8 })) },
);
const config = fc.dictionary(
  fc.constantFrom('inputSize', 'hiddenSize', 'numLayers', 'bias', 'batchFirst', 'dropout', 'bidirectional', 'projSize', 'nonlinearity', 'cell', 'vocabSize',
    'embeddingDim', 'outputSize', 'outputs', 'inFeatures', 'outFeatures', 'numEmbeddings', 'layers', 'p', 'paddingIdx'),
  fc.oneof(size, fc.constantFrom(1e9, 65536, 3e5), fc.boolean(), fc.constantFrom('lstm', 'gru', 'rnn', 'tanh', 'relu', 'last', 'all', 'x'), fc.constant([]), fc.constant({})),
  { maxKeys: 6 },
);
const modelSpec = fc.record({
  class: fc.constantFrom('LSTM', 'GRU', 'RNN', 'Linear', 'Embedding', 'Dropout', 'SequenceModel', 'Sequential', 'Nope', '__proto__', 'constructor'),
  config,
});
const headerEntry = fc.record({
  dtype,
  shape: fc.oneof({ weight: 8, arbitrary: fc.array(size, { maxLength: 4 }) }, { weight: 1, arbitrary: fc.oneof(fc.array(fc.nat({ max: 2 }), { minLength: 9, maxLength: 12 }), fc.constant('3'), fc.constant(null)) }),
  offsets: fc.oneof({ weight: 6, arbitrary: fc.constant('auto' as const) }, { weight: 1, arbitrary: fc.array(size, { maxLength: 3 }) }),
});
const generatedFile = fc.record({
  entries: fc.array(fc.tuple(name, headerEntry), { maxLength: 6 }),
  metadata: fc.oneof(
    fc.constant(undefined),
    fc.record({ format: fc.constant('pt'), 'recurrent.model': fc.oneof({ weight: 6, arbitrary: modelSpec.map((s) => JSON.stringify(s)) }, { weight: 1, arbitrary: fc.string() }) }),
    fc.oneof(fc.constant(null), fc.constant([]), fc.constant(3), fc.dictionary(fc.string({ maxLength: 4 }), fc.oneof(fc.string(), fc.integer()))),
  ),
  slack: fc.integer({ min: -8, max: 8 }),
  lengthDelta: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -16, max: 16 }) }),
  fill: fc.nat({ max: 255 }),
});

type Generated = typeof generatedFile extends fc.Arbitrary<infer T> ? T : never;

function buildGenerated(g: Generated): Buffer {
  const header: Record<string, unknown> = {};
  if (g.metadata !== undefined) header.__metadata__ = g.metadata;
  let offset = 0;
  for (const [key, e] of g.entries) {
    let offsets: unknown = e.offsets;
    if (e.offsets === 'auto') {
      let count = 1;
      if (Array.isArray(e.shape)) for (const s of e.shape) count *= typeof s === 'number' && s >= 0 && s <= 64 ? s : 1;
      const bytes = count * (Object.hasOwn(SIZES, e.dtype as string) ? SIZES[e.dtype as string] : 4);
      offsets = [offset, offset + bytes];
      offset += bytes;
    }
    Object.defineProperty(header, key, { value: { dtype: e.dtype, shape: e.shape, data_offsets: offsets }, enumerable: true, writable: true, configurable: true });
  }
  const json = JSON.stringify(header);
  const data = Buffer.alloc(Math.max(0, offset + g.slack), g.fill);
  return assemble(json, data, BigInt(Math.max(0, Buffer.byteLength(json) + g.lengthDelta)));
}

// ---------------------------------------------------------------------------
// the property

type Stats = Omit<FuzzReport, 'seconds'>;

function check(bytes: Uint8Array, stats: Stats, hangMs: number): void {
  const started = performance.now();
  stats.inputs += 1;
  let tensors: Tensor[] = [];
  try {
    const content = parseSafetensors(bytes);
    tensors = Object.values(content.tensors);
    for (const t of tensors) if (t.size > 0 && !Number.isNaN(t.size)) t.toArray(); // the values are readable
    if (content.metadata['recurrent.model'] !== undefined) {
      const { model } = modelFromContent(content);
      stats.modelsBuilt += 1;
      for (const p of model.parameters()) p.dispose();
    }
    stats.accepted += 1;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (!(error instanceof TypeError || error instanceof RangeError) || typeof code !== 'string' || !code.startsWith('ERR_')) {
      throw new Error(`unexpected error for a ${bytes.length}-byte input: ${(error as Error)?.stack ?? String(error)}`);
    }
    stats.rejected += 1;
    stats.errorCodes[code] = (stats.errorCodes[code] ?? 0) + 1;
  } finally {
    for (const t of tensors) t.dispose();
  }
  const ms = performance.now() - started;
  stats.slowestMs = Math.max(stats.slowestMs, ms);
  if (ms > hangMs) throw new Error(`a ${bytes.length}-byte input took ${ms.toFixed(0)} ms (limit ${hangMs})`);
}

/** Runs `runs` inputs (half mutated files, half generated ones); throws on the first failure. */
export function runFuzz(options: { runs: number; seed?: number; hangMs?: number; log?: (line: string) => void }): FuzzReport {
  const { runs, seed = Date.now() % 0x7fffffff, hangMs = 2000, log } = options;
  const files = seedFiles();
  const stats: Stats = { inputs: 0, accepted: 0, rejected: 0, modelsBuilt: 0, slowestMs: 0, errorCodes: {} };
  const started = performance.now();
  const half = Math.ceil(runs / 2);
  const mutated = fc.property(fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 6 }), (which, mutations) => {
    check(applyMutations(files[which % files.length], mutations, files), stats, hangMs);
  });
  const generated = fc.property(generatedFile, (g) => check(buildGenerated(g), stats, hangMs));
  const chunk = 50_000;
  let done = 0;
  for (const [label, property, count, offset] of [['mutated', mutated, half, 0], ['generated', generated, runs - half, 1]] as const) {
    for (let k = 0; k * chunk < count; ++k) {
      const n = Math.min(chunk, count - k * chunk);
      fc.assert(property as fc.IPropertyWithHooks<unknown>, { numRuns: n, seed: (seed + 7919 * (2 * k + offset)) | 0, endOnFailure: false });
      done += n;
      log?.(`${label}: ${done.toLocaleString('en-US')} / ${runs.toLocaleString('en-US')} inputs, ${((performance.now() - started) / 1000).toFixed(0)} s`);
    }
  }
  return { ...stats, seconds: (performance.now() - started) / 1000 };
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const flag = (n: string, d: number): number => {
    const i = args.indexOf(n);
    return i >= 0 ? Number(args[i + 1]) : d;
  };
  const seed = flag('--seed', Date.now() % 0x7fffffff);
  const runs = flag('--runs', 1_000_000);
  console.log(`fuzzing the safetensors reader and model loading: ${runs.toLocaleString('en-US')} inputs, seed ${seed} (rerun with --seed ${seed})`);
  try {
    const report = runFuzz({ runs, seed, log: (line) => console.log(line) });
    console.log(JSON.stringify(report, null, 2));
    console.log(`${report.inputs.toLocaleString('en-US')} inputs in ${report.seconds.toFixed(0)} s: no crash, no unexpected error, slowest ${report.slowestMs.toFixed(1)} ms`);
  } catch (error) {
    console.error((error as Error).message);
    if ((error as Error).cause) console.error('cause:', (error as Error).cause);
    process.exitCode = 1;
  }
}
