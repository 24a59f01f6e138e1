/**
 * ONNX export and import (opset 17). The recurrent layers become ONNX's RNN, LSTM and GRU
 * operators, one node per layer (both directions in one node), so onnxruntime runs them with
 * its fused kernels on CPU, GPU or in a browser (onnxruntime-web).
 *
 * Conventions differ from PyTorch's (and ours), and are converted here:
 * - gate order: LSTM i, f, g, o -> ONNX i, o, f, c; GRU r, z, n -> ONNX z, r, h;
 * - PyTorch's GRU applies the reset gate after the recurrent matmul: linear_before_reset = 1;
 * - W [D, G*H, I], R [D, G*H, H] and B [D, 2*G*H] (input then recurrent biases) stack the
 *   directions; Y is [T, D, B, H] (we transpose and reshape it to [T, B, D*H]);
 * - variable lengths are the `sequence_lens` input (exported with { lengths: true }).
 *
 * Graph interface: input `input` ([T, B, I], or [B, T, I] with batchFirst; token ids [T, B] as
 * int64 for models with an embedding), `h0` (and `c0`) [L*D, B, H] with
 * { stateInputs: true } (zeros inside the graph otherwise), optional `sequence_lens` [B]; outputs `output`, `h_n` (and
 * `c_n`). The protobuf is written by onnx-proto (protobufjs with ONNX's schema).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { describe, expectOptions, expectKnownKeys, expectBoolean, rangeError, typeError } from '../core/errors';
import { GRU, LSTM, RNN } from '../nn/recurrent';
import { Dropout, Embedding, Linear, Sequential } from '../nn/layers';
import { Module } from '../nn/module';
import { SequenceModel } from '../nn/sequence-model';
import { buildModel, describeModel, ModelSpec } from './serialize';
import { Tensor, noGrad } from '../core/tensor';

export const ONNX_OPSET = 17;
const IR_VERSION = 8; // the IR version that opset 17 shipped with (ONNX 1.12)
const MODEL_KEY = 'recurrent.model';

const { DataType } = onnx.TensorProto;
const { AttributeType } = onnx.AttributeProto;

export interface OnnxExportOptions {
  /** Add the `sequence_lens` input ([B] int32) for variable-length batches. Default false. */
  lengths?: boolean;
  /**
   * Make `h0` (and `c0`) required inputs, to give a state (e.g. generating step by step). By
   * default the initial state is zeros inside the graph and `run({ input })` is all it takes
   * (an initializer that is also an input would make onnxruntime warn on every session, and its
   * JavaScript API feeds only required inputs anyway). Default false.
   */
  stateInputs?: boolean;
  /** Extra key/value pairs for the model's metadata_props. */
  metadata?: Record<string, string>;
  /** Model name in the file's graph. Default the class name. */
  name?: string;
}

type Recurrent = RNN | LSTM | GRU;

// ---------------------------------------------------------------------------
// Graph building

type Dim = number | string;

class GraphBuilder {
  readonly nodes: onnx.INodeProto[] = [];
  readonly initializers: onnx.ITensorProto[] = [];
  readonly inputs: onnx.IValueInfoProto[] = [];
  readonly outputs: onnx.IValueInfoProto[] = [];
  private names = new Map<string, number>();

  /** A name not used before, based on `base`. */
  fresh(base: string): string {
    const n = this.names.get(base) ?? 0;
    this.names.set(base, n + 1);
    return n === 0 ? base : `${base}_${n}`;
  }

  node(opType: string, inputs: string[], outputCount: number, attributes: Record<string, number | number[] | string | string[]> = {}, base = opType): string[] {
    const name = this.fresh(base);
    const outputs = Array.from({ length: outputCount }, (_, i) => (outputCount === 1 ? name : `${name}_${['Y', 'Y_h', 'Y_c'][i] ?? i}`));
    this.nodes.push({ opType, name, input: inputs, output: outputs, attribute: Object.entries(attributes).map(([key, value]) => attribute(key, value)) });
    return outputs;
  }

  floats(name: string, dims: number[], values: Float32Array): string {
    const n = this.fresh(name);
    this.initializers.push({ name: n, dims, dataType: DataType.FLOAT, rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength) });
    return n;
  }

  int64s(name: string, values: number[]): string {
    const n = this.fresh(name);
    this.initializers.push({ name: n, dims: [values.length], dataType: DataType.INT64, int64Data: values });
    return n;
  }

  input(name: string, elemType: number, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    this.names.set(name, 1);
    return name;
  }

  output(from: string, name: string, elemType: number, dims: Dim[]): void {
    this.nodes.push({ opType: 'Identity', name: this.fresh(`${name}_identity`), input: [from], output: [name] });
    this.outputs.push(valueInfo(name, elemType, dims));
  }
}

function attribute(name: string, value: number | number[] | string | string[]): onnx.IAttributeProto {
  if (typeof value === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value) };
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: AttributeType.INT, i: value } : { name, type: AttributeType.FLOAT, f: value };
  }
  if (value.length > 0 && typeof value[0] === 'string') {
    return { name, type: AttributeType.STRINGS, strings: (value as string[]).map((s) => new TextEncoder().encode(s)) };
  }
  return { name, type: AttributeType.INTS, ints: value as number[] };
}

function valueInfo(name: string, elemType: number, dims: Dim[]): onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

/** Rows of `w` ([G*H, ...]) regrouped by gate block in `order` (ONNX's order, as indices into ours). */
function reorderGates(w: Float32Array, gates: number, order: readonly number[]): Float32Array {
  const block = w.length / gates;
  const out = new Float32Array(w.length);
  order.forEach((from, to) => out.set(w.subarray(from * block, (from + 1) * block), to * block));
  return out;
}

const ONNX_GATE_ORDER: Record<string, readonly number[]> = {
  LSTM: [0, 3, 1, 2], // ONNX i, o, f, c from PyTorch i, f, g, o
  GRU: [1, 0, 2], // ONNX z, r, h from PyTorch r, z, n
  RNN: [0],
};

function opOf(module: Recurrent): 'LSTM' | 'GRU' | 'RNN' {
  return module instanceof LSTM ? 'LSTM' : module instanceof GRU ? 'GRU' : 'RNN';
}

/**
 * Adds the recurrent stack: x is [T, B, I] (time-major). Returns the output [T, B, D*H] and
 * the final states [L*D, B, H].
 */
function emitRecurrent(g: GraphBuilder, module: Recurrent, prefix: string, x: string, h0: string, c0: string | null, lengths: string | null):
  { output: string; h: string; c: string | null } {
  const op = opOf(module);
  const gates = op === 'LSTM' ? 4 : op === 'GRU' ? 3 : 1;
  const H = module.hiddenSize;
  const D = module.directions;
  const params = new Map(module.namedParameters());
  const hs: string[] = [];
  const cs: string[] = [];
  let input = x;
  for (let layer = 0; layer < module.numLayers; ++layer) {
    const stack = (kind: 'weight_ih' | 'weight_hh' | 'bias') => {
      const parts: Float32Array[] = [];
      for (let d = 0; d < D; ++d) {
        const suffix = `_l${layer}${d === 1 ? '_reverse' : ''}`;
        if (kind === 'bias') {
          const bih = params.get(`bias_ih${suffix}`);
          const bhh = params.get(`bias_hh${suffix}`);
          parts.push(reorderGates(bih ? bih.toArray() : new Float32Array(gates * H), gates, ONNX_GATE_ORDER[op]));
          parts.push(reorderGates(bhh ? bhh.toArray() : new Float32Array(gates * H), gates, ONNX_GATE_ORDER[op]));
        } else {
          parts.push(reorderGates(params.get(`${kind}${suffix}`)!.toArray(), gates, ONNX_GATE_ORDER[op]));
        }
      }
      const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) { all.set(p, at); at += p.length; }
      return all;
    };
    const inputSize = layer === 0 ? module.inputSize : D * H;
    const W = g.floats(`${prefix}W_l${layer}`, [D, gates * H, inputSize], stack('weight_ih'));
    const R = g.floats(`${prefix}R_l${layer}`, [D, gates * H, H], stack('weight_hh'));
    const B = module.bias ? g.floats(`${prefix}B_l${layer}`, [D, 2 * gates * H], stack('bias')) : '';
    const rows = (state: string) => (module.numLayers === 1 ? state
      : g.node('Slice', [state, g.int64s('starts', [layer * D]), g.int64s('ends', [(layer + 1) * D]), g.int64s('axes', [0])], 1, {}, `${prefix}${state}_l${layer}`)[0]);
    const attributes: Record<string, number | string | string[]> = { hidden_size: H, direction: D === 2 ? 'bidirectional' : 'forward' };
    if (op === 'GRU') attributes.linear_before_reset = 1;
    if (op === 'RNN') attributes.activations = new Array<string>(D).fill((module as RNN).nonlinearity === 'relu' ? 'Relu' : 'Tanh');
    const nodeInputs = [input, W, R, B, lengths ?? '', rows(h0), ...(c0 ? [rows(c0)] : [])];
    const [Y, Yh, Yc] = g.node(op, nodeInputs, op === 'LSTM' ? 3 : 2, attributes, `${prefix}${op.toLowerCase()}_l${layer}`);
    // Y [T, D, B, H] -> [T, B, D, H] -> [T, B, D*H]
    const transposed = g.node('Transpose', [Y], 1, { perm: [0, 2, 1, 3] }, `${prefix}transpose_l${layer}`)[0];
    input = g.node('Reshape', [transposed, g.int64s('shape', [0, 0, -1])], 1, {}, `${prefix}reshape_l${layer}`)[0];
    hs.push(Yh);
    if (Yc) cs.push(Yc);
  }
  const concat = (list: string[], base: string) => (list.length === 1 ? list[0] : g.node('Concat', list, 1, { axis: 0 }, base)[0]);
  return { output: input, h: concat(hs, `${prefix}h_layers`), c: cs.length ? concat(cs, `${prefix}c_layers`) : null };
}

/**
 * The initial state [rows, B, H]: a required input, or zeros [rows, 1, H] in the graph broadcast
 * to the batch of `batchOf`.
 */
function stateInput(g: GraphBuilder, name: string, rows: number, H: number, batchOf: string, batchAxis: number, required: boolean): string {
  if (required) {
    g.input(name, DataType.FLOAT, [rows, 'batch', H]);
    return name;
  }
  // zeros inside the graph, not an input with a default: onnxruntime warns on every session
  // about an initializer that is also a graph input, and its JS API could not feed one anyway
  const zeros = `${name}_zeros`;
  g.initializers.push({ name: zeros, dims: [rows, 1, H], dataType: DataType.FLOAT, rawData: new Uint8Array(new Float32Array(rows * H).buffer) });
  const shape = g.node('Shape', [batchOf], 1, {}, `${name}_input_shape`)[0];
  const batch = g.node('Gather', [shape, g.int64s('batch_axis', [batchAxis])], 1, { axis: 0 }, `${name}_batch`)[0];
  const target = g.node('Concat', [g.int64s(`${name}_rows`, [rows]), batch, g.int64s(`${name}_width`, [H])], 1, { axis: 0 }, `${name}_shape`)[0];
  return g.node('Expand', [zeros, target], 1, {}, `${name}_expanded`)[0];
}

function emitLinear(g: GraphBuilder, module: Linear, prefix: string, x: string): string {
  // MatMul + Add works on any rank ([T, B, F] or [B, F]); Gemm would need 2-D
  const wt = new Float32Array(module.inFeatures * module.outFeatures);
  const w = module.weight.toArray();
  for (let o = 0; o < module.outFeatures; ++o) for (let i = 0; i < module.inFeatures; ++i) wt[i * module.outFeatures + o] = w[o * module.inFeatures + i];
  const weight = g.floats(`${prefix}weight_t`, [module.inFeatures, module.outFeatures], wt);
  const product = g.node('MatMul', [x, weight], 1, {}, `${prefix}matmul`)[0];
  if (!module.bias) return product;
  return g.node('Add', [product, g.floats(`${prefix}bias`, [module.outFeatures], module.bias.toArray())], 1, {}, `${prefix}add`)[0];
}

function emitEmbedding(g: GraphBuilder, module: Embedding, prefix: string, ids: string): string {
  const weight = g.floats(`${prefix}weight`, [module.numEmbeddings, module.embeddingDim], module.weight.toArray());
  return g.node('Gather', [weight, ids], 1, { axis: 0 }, `${prefix}gather`)[0];
}

// ---------------------------------------------------------------------------
// Export

function buildGraph(model: Module, opts: OnnxExportOptions): onnx.IModelProto {
  const g = new GraphBuilder();
  const required = opts.stateInputs ?? false;
  const lengths = opts.lengths ? g.input('sequence_lens', DataType.INT32, ['batch']) : null;

  const recurrentModel = (module: Recurrent, inputName: string, inputType: number, inputDims: Dim[], prefix: string, batchFirst: boolean) => {
    const x = g.input(inputName, inputType, inputDims);
    const timeMajor = batchFirst ? g.node('Transpose', [x], 1, { perm: [1, 0, 2] }, `${prefix}input_time_major`)[0] : x;
    const rows = module.numLayers * module.directions;
    const h0 = stateInput(g, 'h0', rows, module.hiddenSize, x, batchFirst ? 0 : 1, required);
    const c0 = module instanceof LSTM ? stateInput(g, 'c0', rows, module.hiddenSize, x, batchFirst ? 0 : 1, required) : null;
    return { timeMajor, ...emitRecurrent(g, module, prefix, timeMajor, h0, c0, lengths) };
  };
  const stateOutputs = (module: Recurrent, h: string, c: string | null) => {
    const dims = [module.numLayers * module.directions, 'batch', module.hiddenSize];
    g.output(h, 'h_n', DataType.FLOAT, dims);
    if (c) g.output(c, 'c_n', DataType.FLOAT, dims);
  };

  if (model instanceof RNN || model instanceof LSTM || model instanceof GRU) {
    const dims: Dim[] = model.batchFirst ? ['batch', 'time', model.inputSize] : ['time', 'batch', model.inputSize];
    const { output, h, c } = recurrentModel(model, 'input', DataType.FLOAT, dims, '', model.batchFirst);
    const out = model.batchFirst ? g.node('Transpose', [output], 1, { perm: [1, 0, 2] }, 'output_batch_first')[0] : output;
    const width = model.directions * model.hiddenSize;
    g.output(out, 'output', DataType.FLOAT, model.batchFirst ? ['batch', 'time', width] : ['time', 'batch', width]);
    stateOutputs(model, h, c);
  } else if (model instanceof SequenceModel) {
    const { rnn, embedding, head } = model;
    let x: string;
    let state: { output: string; h: string; c: string | null };
    const batchFirst = model.options.batchFirst;
    if (embedding) {
      const fed = g.input('input', DataType.INT64, batchFirst ? ['batch', 'time'] : ['time', 'batch']);
      const ids = batchFirst ? g.node('Transpose', [fed], 1, { perm: [1, 0] }, 'input_time_major')[0] : fed;
      const embedded = emitEmbedding(g, embedding, 'embedding.', ids);
      const rows = rnn.numLayers * rnn.directions;
      const h0 = stateInput(g, 'h0', rows, rnn.hiddenSize, ids, 1, required);
      const c0 = rnn instanceof LSTM ? stateInput(g, 'c0', rows, rnn.hiddenSize, ids, 1, required) : null;
      state = emitRecurrent(g, rnn, 'rnn.', embedded, h0, c0, lengths);
    } else {
      state = recurrentModel(rnn, 'input', DataType.FLOAT, batchFirst ? ['batch', 'time', rnn.inputSize] : ['time', 'batch', rnn.inputSize], 'rnn.', batchFirst);
    }
    if (model.options.outputs === 'last') {
      // the last layer's final state, directions side by side: [B, D*H]
      const D = rnn.directions;
      const L = rnn.numLayers;
      const last = g.node('Slice', [state.h, g.int64s('starts', [(L - 1) * D]), g.int64s('ends', [L * D]), g.int64s('axes', [0])], 1, {}, 'last_layer_h')[0];
      const batchMajor = g.node('Transpose', [last], 1, { perm: [1, 0, 2] }, 'last_batch_major')[0];
      x = g.node('Reshape', [batchMajor, g.int64s('shape', [0, -1])], 1, {}, 'last_features')[0];
      g.output(emitLinear(g, head, 'head.', x), 'output', DataType.FLOAT, ['batch', head.outFeatures]);
    } else {
      const perStep = emitLinear(g, head, 'head.', state.output);
      if (batchFirst) g.output(g.node('Transpose', [perStep], 1, { perm: [1, 0, 2] }, 'output_batch_first')[0], 'output', DataType.FLOAT, ['batch', 'time', head.outFeatures]);
      else g.output(perStep, 'output', DataType.FLOAT, ['time', 'batch', head.outFeatures]);
    }
    stateOutputs(rnn, state.h, state.c);
  } else if (model instanceof Sequential || model instanceof Linear || model instanceof Embedding || model instanceof Dropout) {
    const layers = model instanceof Sequential ? model.layers : [model];
    let x: string | null = null;
    let dims: Dim[] = [];
    layers.forEach((layer, i) => {
      const prefix = model instanceof Sequential ? `${i}.` : '';
      if (layer instanceof Embedding) {
        if (x === null) x = g.input('input', DataType.INT64, ['time', 'batch']);
        x = emitEmbedding(g, layer, prefix, x);
        dims = ['time', 'batch', layer.embeddingDim];
      } else if (layer instanceof Linear) {
        if (x === null) x = g.input('input', DataType.FLOAT, dims = ['batch', layer.inFeatures]);
        x = emitLinear(g, layer, prefix, x);
        dims = [...dims.slice(0, -1), layer.outFeatures];
      } else if (layer instanceof Dropout) {
        if (x === null) throw typeError('exportOnnx: a Sequential cannot start with Dropout (its input size is unknown)', 'ERR_INVALID_ARG_VALUE');
      } else if (layer instanceof RNN || layer instanceof LSTM || layer instanceof GRU) {
        if (x === null) x = g.input('input', DataType.FLOAT, layer.batchFirst ? ['batch', 'time', layer.inputSize] : ['time', 'batch', layer.inputSize]);
        const timeMajor = layer.batchFirst ? g.node('Transpose', [x], 1, { perm: [1, 0, 2] }, `${prefix}input_time_major`)[0] : x;
        const rows = layer.numLayers * layer.directions;
        const zeros = (name: string) => stateInput(g, g.fresh(`${prefix}${name}`), rows, layer.hiddenSize, timeMajor, 1, false);
        const state = emitRecurrent(g, layer, prefix, timeMajor, zeros('h0'), layer instanceof LSTM ? zeros('c0') : null, lengths);
        x = layer.batchFirst ? g.node('Transpose', [state.output], 1, { perm: [1, 0, 2] }, `${prefix}output_batch_first`)[0] : state.output;
        dims = layer.batchFirst ? ['batch', 'time', layer.directions * layer.hiddenSize] : ['time', 'batch', layer.directions * layer.hiddenSize];
      } else {
        throw typeError(`exportOnnx: ${layer.constructor.name} (layer ${i}) has no ONNX export; supported: RNN, LSTM, GRU, Linear, Embedding, Dropout`, 'ERR_INVALID_ARG_VALUE');
      }
    });
    if (x === null) throw rangeError('exportOnnx: an empty Sequential has nothing to export', 'ERR_INVALID_ARG_VALUE');
    g.output(x, 'output', DataType.FLOAT, dims);
  } else {
    throw typeError(`exportOnnx: ${describe(model)} has no ONNX export; supported: RNN, LSTM, GRU, Linear, Embedding, Dropout, Sequential, SequenceModel, CharLanguageModel`, 'ERR_INVALID_ARG_VALUE');
  }

  let spec: ModelSpec | null = null;
  try {
    spec = describeModel(model);
  } catch {
    spec = null;
  }
  const metadata: Record<string, string> = { ...(spec ? { [MODEL_KEY]: JSON.stringify(spec) } : {}), ...(opts.metadata ?? {}) };
  return {
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: ONNX_OPSET }],
    producerName: 'recurrent',
    producerVersion: packageVersion(),
    graph: { name: opts.name ?? model.constructor.name, node: g.nodes, initializer: g.initializers, input: g.inputs, output: g.outputs },
    metadataProps: Object.entries(metadata).map(([key, value]) => ({ key, value })),
  };
}

function packageVersion(): string {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('../../package.json') as { version: string }).version;
  } catch {
    return '0';
  }
}

function exportOptions(options: unknown): OnnxExportOptions {
  const opts = expectOptions(options, 'options');
  expectKnownKeys(opts, ['lengths', 'stateInputs', 'metadata', 'name'], 'options');
  if (opts.lengths !== undefined) expectBoolean(opts.lengths, 'options.lengths');
  if (opts.stateInputs !== undefined) expectBoolean(opts.stateInputs, 'options.stateInputs');
  if (opts.metadata !== undefined) {
    const m = expectOptions(opts.metadata, 'options.metadata');
    for (const [key, value] of Object.entries(m)) {
      if (typeof value !== 'string') throw typeError(`Expected options.metadata.${key} to be a string but received ${describe(value)}`);
    }
  }
  if (opts.name !== undefined && typeof opts.name !== 'string') throw typeError(`Expected options.name to be a string but received ${describe(opts.name)}`);
  return opts as OnnxExportOptions;
}

/** The ONNX file's bytes for `model` (see exportOnnx). */
export function exportOnnxBuffer(model: Module | { model: Module; onnxMetadata(): Record<string, string> }, options: OnnxExportOptions = {}): Uint8Array {
  const opts = exportOptions(options);
  let module: Module;
  let metadata = opts.metadata ?? {};
  if (model instanceof Module) module = model;
  else if (model && typeof model === 'object' && 'onnxMetadata' in model && model.model instanceof Module) {
    module = model.model;
    metadata = { ...model.onnxMetadata(), ...metadata };
  } else {
    throw typeError(`exportOnnx: expected model to be a Module or a CharLanguageModel but received ${describe(model)}`);
  }
  const proto = noGrad(() => buildGraph(module, { ...opts, metadata }));
  return onnx.ModelProto.encode(onnx.ModelProto.create(proto)).finish();
}

/**
 * Writes `model` as an ONNX file (opset 17) that onnxruntime runs: RNN, LSTM, GRU (every
 * option), Linear, Embedding, Dropout (identity), Sequential, SequenceModel (state in and
 * out) and CharLanguageModel (vocabulary in metadata_props). The write is atomic.
 *
 * @example
 * await exportOnnx(lstm, 'lstm.onnx');
 * // onnxruntime: session.run({ input }), or { input, h0, c0 } with { stateInputs: true } -> { output, h_n, c_n }
 */
export async function exportOnnx(model: Module | { model: Module; onnxMetadata(): Record<string, string> }, file: string, options: OnnxExportOptions = {}): Promise<void> {
  if (typeof file !== 'string' || !file) throw typeError(`exportOnnx: expected path to be a file path but received ${describe(file)}`);
  const bytes = exportOnnxBuffer(model, options);
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  const handle = await fs.open(temp, 'w');
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(temp, file);
}

// ---------------------------------------------------------------------------
// Import

const SUPPORTED_OPS = new Set([
  'RNN', 'LSTM', 'GRU', 'Gather', 'MatMul', 'Add', 'Gemm', 'Transpose', 'Reshape', 'Squeeze', 'Unsqueeze', 'Concat', 'Slice',
  'Identity', 'Dropout', 'Shape', 'Expand', 'Constant', 'ConstantOfShape', 'Cast', 'Flatten',
]);

function num(value: unknown): number {
  if (typeof value === 'number') return value;
  if (value && typeof value === 'object' && 'toNumber' in value) return (value as { toNumber(): number }).toNumber();
  return Number(value);
}

function floatsOf(t: onnx.ITensorProto, where: string): Float32Array {
  if (t.dataType !== DataType.FLOAT) throw rangeError(`importOnnx: ${where} is not float32 (data type ${t.dataType})`, 'ERR_BAD_FILE');
  const count = (t.dims ?? []).reduce((n: number, d) => n * num(d), 1);
  if (t.rawData && t.rawData.length > 0) {
    if (t.rawData.length !== count * 4) throw rangeError(`importOnnx: ${where} holds ${t.rawData.length} bytes for ${count} floats`, 'ERR_BAD_FILE');
    const copy = new Uint8Array(t.rawData); // aligned
    return new Float32Array(copy.buffer, 0, count);
  }
  const values = Float32Array.from(t.floatData ?? []);
  if (values.length !== count) throw rangeError(`importOnnx: ${where} holds ${values.length} values for ${count}`, 'ERR_BAD_FILE');
  return values;
}

function attr(node: onnx.INodeProto, name: string): onnx.IAttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

function stringAttr(node: onnx.INodeProto, name: string, fallback: string): string {
  const a = attr(node, name);
  return a?.s ? new TextDecoder().decode(a.s) : fallback;
}

function intAttr(node: onnx.INodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a && a.i !== undefined && a.i !== null ? num(a.i) : fallback;
}

function nodeLabel(node: onnx.INodeProto): string {
  return `${node.opType} node ${JSON.stringify(node.name ?? '')}`;
}

interface RecurrentLayer {
  op: 'RNN' | 'LSTM' | 'GRU';
  nonlinearity: 'tanh' | 'relu';
  hiddenSize: number;
  inputSize: number;
  directions: number;
  bias: boolean;
  /** weight_ih, weight_hh, bias_ih, bias_hh per direction, in PyTorch's gate order. */
  weights: Float32Array[][];
}

/** Parses an ONNX model into our modules; what the graph holds is recognised, not interpreted. */
function modelFromProto(proto: onnx.ModelProto, where: string): { model: Module; metadata: Record<string, string> } {
  const graph = proto.graph;
  if (!graph) throw rangeError(`importOnnx: ${where} has no graph`, 'ERR_BAD_FILE');
  const metadata: Record<string, string> = {};
  for (const entry of proto.metadataProps ?? []) if (entry.key) metadata[entry.key] = entry.value ?? '';
  const initializers = new Map<string, onnx.ITensorProto>();
  for (const t of graph.initializer ?? []) if (t.name) initializers.set(t.name, t);
  for (const node of graph.node ?? []) {
    if (node.domain && node.domain !== 'ai.onnx') throw rangeError(`importOnnx: unsupported ${nodeLabel(node)} in domain ${JSON.stringify(node.domain)}`, 'ERR_UNSUPPORTED');
    if (!SUPPORTED_OPS.has(node.opType ?? '')) {
      throw rangeError(`importOnnx: unsupported ${nodeLabel(node)} (supported: ${[...SUPPORTED_OPS].join(', ')})`, 'ERR_UNSUPPORTED');
    }
  }
  const constant = (name: string | undefined | null, node: onnx.INodeProto, role: string): Float32Array => {
    const t = name ? initializers.get(name) : undefined;
    if (!t) throw rangeError(`importOnnx: ${nodeLabel(node)}: ${role} ${JSON.stringify(name)} is not a constant initializer`, 'ERR_UNSUPPORTED');
    return floatsOf(t, `${role} of ${nodeLabel(node)}`);
  };
  const dimsOf = (name: string | null | undefined) => (initializers.get(name ?? '')?.dims ?? []).map(num);

  let embedding: Float32Array | null = null;
  let embeddingDims: number[] = [];
  const layers: RecurrentLayer[] = [];
  const linears: { weight: Float32Array; bias: Float32Array | null; inFeatures: number; outFeatures: number }[] = [];
  const nodes = graph.node ?? [];
  for (let k = 0; k < nodes.length; ++k) {
    const node = nodes[k];
    const op = node.opType!;
    const inputs = node.input ?? [];
    if (op === 'Gather' && initializers.has(inputs[0]) && initializers.get(inputs[0])!.dataType === DataType.FLOAT && dimsOf(inputs[0]).length === 2) {
      if (embedding) throw rangeError(`importOnnx: a second embedding (${nodeLabel(node)}) is not supported`, 'ERR_UNSUPPORTED');
      embedding = constant(inputs[0], node, 'embedding table');
      embeddingDims = dimsOf(inputs[0]);
    } else if (op === 'RNN' || op === 'LSTM' || op === 'GRU') {
      const gates = op === 'LSTM' ? 4 : op === 'GRU' ? 3 : 1;
      const H = intAttr(node, 'hidden_size', 0);
      const direction = stringAttr(node, 'direction', 'forward');
      if (direction === 'reverse') throw rangeError(`importOnnx: ${nodeLabel(node)}: direction 'reverse' alone has no PyTorch equivalent`, 'ERR_UNSUPPORTED');
      const D = direction === 'bidirectional' ? 2 : 1;
      if (intAttr(node, 'layout', 0) !== 0) throw rangeError(`importOnnx: ${nodeLabel(node)}: layout 1 is not supported (transpose the input instead)`, 'ERR_UNSUPPORTED');
      if (attr(node, 'clip') || intAttr(node, 'input_forget', 0) !== 0 || (inputs[7] ?? '') !== '') {
        throw rangeError(`importOnnx: ${nodeLabel(node)}: clip, input_forget and peepholes have no PyTorch equivalent`, 'ERR_UNSUPPORTED');
      }
      if (op === 'GRU' && intAttr(node, 'linear_before_reset', 0) !== 1) {
        throw rangeError(`importOnnx: ${nodeLabel(node)}: a GRU with linear_before_reset = 0 is not PyTorch's GRU`, 'ERR_UNSUPPORTED');
      }
      const activations = (attr(node, 'activations')?.strings ?? []).map((s) => new TextDecoder().decode(s).toLowerCase());
      const expected = op === 'LSTM' ? ['sigmoid', 'tanh', 'tanh'] : op === 'GRU' ? ['sigmoid', 'tanh'] : null;
      let nonlinearity: 'tanh' | 'relu' = 'tanh';
      if (op === 'RNN') {
        nonlinearity = activations[0] === 'relu' ? 'relu' : 'tanh';
        if (activations.some((a) => a !== nonlinearity)) throw rangeError(`importOnnx: ${nodeLabel(node)}: activations ${activations.join(', ')} are not supported`, 'ERR_UNSUPPORTED');
      } else if (activations.length && activations.join() !== [...expected!, ...(D === 2 ? expected! : [])].join()) {
        throw rangeError(`importOnnx: ${nodeLabel(node)}: activations ${activations.join(', ')} are not supported`, 'ERR_UNSUPPORTED');
      }
      const W = constant(inputs[1], node, 'W');
      const R = constant(inputs[2], node, 'R');
      const B = inputs[3] ? constant(inputs[3], node, 'B') : null;
      const I = dimsOf(inputs[1])[2];
      if (!H || W.length !== D * gates * H * I || R.length !== D * gates * H * H || (B && B.length !== D * 2 * gates * H)) {
        throw rangeError(`importOnnx: ${nodeLabel(node)}: W, R or B do not match hidden_size ${H}`, 'ERR_BAD_FILE');
      }
      const back = ONNX_GATE_ORDER[op].map((_, i) => ONNX_GATE_ORDER[op].indexOf(i)); // ours from ONNX's
      const weights: Float32Array[][] = [];
      for (let d = 0; d < D; ++d) {
        const w = W.subarray(d * gates * H * I, (d + 1) * gates * H * I);
        const r = R.subarray(d * gates * H * H, (d + 1) * gates * H * H);
        const b = B ? B.subarray(d * 2 * gates * H, (d + 1) * 2 * gates * H) : new Float32Array(2 * gates * H);
        weights.push([reorderGates(w, gates, back), reorderGates(r, gates, back),
          reorderGates(b.subarray(0, gates * H), gates, back), reorderGates(b.subarray(gates * H), gates, back)]);
      }
      const layer: RecurrentLayer = { op, nonlinearity, hiddenSize: H, inputSize: I, directions: D, bias: B !== null, weights };
      const previous = layers[layers.length - 1];
      if (previous && (previous.op !== op || previous.hiddenSize !== H || previous.directions !== D || previous.bias !== layer.bias || previous.nonlinearity !== nonlinearity)) {
        throw rangeError(`importOnnx: ${nodeLabel(node)} differs from the layer before it (cell, size, direction or bias); only one recurrent stack is supported`, 'ERR_UNSUPPORTED');
      }
      layers.push(layer);
    } else if (op === 'Gemm' || (op === 'MatMul' && initializers.has(inputs[1]))) {
      let inFeatures: number;
      let outFeatures: number;
      let weight: Float32Array;
      let bias: Float32Array | null = null;
      const raw = constant(inputs[1], node, 'weight');
      const dims = dimsOf(inputs[1]);
      const transposed = op === 'Gemm' ? intAttr(node, 'transB', 0) === 1 : false;
      if (op === 'Gemm' && (intAttr(node, 'transA', 0) !== 0 || (attr(node, 'alpha') && attr(node, 'alpha')!.f !== 1) || (attr(node, 'beta') && attr(node, 'beta')!.f !== 1))) {
        throw rangeError(`importOnnx: ${nodeLabel(node)}: only Gemm with alpha = beta = 1 and transA = 0 is a Linear layer`, 'ERR_UNSUPPORTED');
      }
      if (transposed) {
        [outFeatures, inFeatures] = dims;
        weight = raw;
      } else {
        [inFeatures, outFeatures] = dims;
        weight = new Float32Array(raw.length);
        for (let i = 0; i < inFeatures; ++i) for (let o = 0; o < outFeatures; ++o) weight[o * inFeatures + i] = raw[i * outFeatures + o];
      }
      if (op === 'Gemm' && inputs[2]) bias = constant(inputs[2], node, 'bias');
      const next = nodes[k + 1];
      if (op === 'MatMul' && next?.opType === 'Add' && (next.input ?? []).includes(node.output![0])) {
        const other = next.input!.find((n) => n !== node.output![0]);
        if (other && initializers.has(other)) {
          bias = constant(other, next, 'bias');
          k += 1;
        }
      }
      if (bias && bias.length !== outFeatures) throw rangeError(`importOnnx: ${nodeLabel(node)}: a bias of ${bias.length} values for ${outFeatures} outputs`, 'ERR_BAD_FILE');
      linears.push({ weight, bias, inFeatures, outFeatures });
    }
  }
  if (layers.length === 0 && linears.length === 0 && !embedding) throw rangeError(`importOnnx: ${where} holds no RNN, LSTM, GRU, Linear or Embedding`, 'ERR_UNSUPPORTED');
  if (linears.length > 1) throw rangeError('importOnnx: more than one Linear layer is not supported', 'ERR_UNSUPPORTED');

  // our modules, from the file's own description when it has one, else from the graph
  let model: Module;
  const described = metadata[MODEL_KEY];
  let batchFirst = false;
  const firstInput = (graph.input ?? []).find((i) => !initializers.has(i.name ?? ''));
  const firstConsumer = nodes.find((n) => (n.input ?? []).includes(firstInput?.name ?? ''));
  if (firstConsumer?.opType === 'Transpose') {
    const perm = (attr(firstConsumer, 'perm')?.ints ?? []).map(num);
    batchFirst = perm.join() === '1,0,2';
  }
  if (described) {
    let spec: ModelSpec;
    try {
      spec = JSON.parse(described) as ModelSpec;
    } catch {
      throw rangeError(`importOnnx: ${where}: metadata ${MODEL_KEY} is not JSON`, 'ERR_BAD_FILE');
    }
    model = buildModel(spec);
  } else {
    const recurrent = (l: RecurrentLayer, options: { batchFirst: boolean }) => {
      const config = { inputSize: l.inputSize, hiddenSize: l.hiddenSize, numLayers: layers.length, bias: l.bias, bidirectional: l.directions === 2, batchFirst: options.batchFirst };
      return l.op === 'LSTM' ? new LSTM(config) : l.op === 'GRU' ? new GRU(config) : new RNN({ ...config, nonlinearity: l.nonlinearity });
    };
    const parts: Module[] = [];
    if (embedding) parts.push(new Embedding({ numEmbeddings: embeddingDims[0], embeddingDim: embeddingDims[1] }));
    if (layers.length) parts.push(recurrent(layers[0], { batchFirst: batchFirst && !embedding }));
    if (linears.length) parts.push(new Linear({ inFeatures: linears[0].inFeatures, outFeatures: linears[0].outFeatures, bias: linears[0].bias !== null }));
    model = parts.length === 1 ? parts[0] : new Sequential(...parts);
  }

  // the weights, under the module's own names
  const state = new Map<string, Float32Array>();
  const recurrentModule = model instanceof SequenceModel ? model.rnn
    : model instanceof RNN || model instanceof LSTM || model instanceof GRU ? model
      : model instanceof Sequential ? model.layers.find((m): m is Recurrent => m instanceof RNN || m instanceof LSTM || m instanceof GRU) ?? null : null;
  const prefixOf = (m: Module | null) => {
    if (!m || m === model) return '';
    if (model instanceof SequenceModel) return m === model.rnn ? 'rnn.' : m === model.head ? 'head.' : 'embedding.';
    if (model instanceof Sequential) return `${model.layers.indexOf(m)}.`;
    return '';
  };
  if (recurrentModule) {
    if (recurrentModule.numLayers !== layers.length) throw rangeError(`importOnnx: ${where} has ${layers.length} recurrent layers, its description ${recurrentModule.numLayers}`, 'ERR_BAD_FILE');
    const prefix = prefixOf(recurrentModule);
    layers.forEach((l, k) => l.weights.forEach(([wih, whh, bih, bhh], d) => {
      const suffix = `_l${k}${d === 1 ? '_reverse' : ''}`;
      state.set(`${prefix}weight_ih${suffix}`, wih);
      state.set(`${prefix}weight_hh${suffix}`, whh);
      if (l.bias) {
        state.set(`${prefix}bias_ih${suffix}`, bih);
        state.set(`${prefix}bias_hh${suffix}`, bhh);
      }
    }));
  }
  const linearModule = model instanceof SequenceModel ? model.head : model instanceof Linear ? model
    : model instanceof Sequential ? model.layers.find((m): m is Linear => m instanceof Linear) ?? null : null;
  if (linearModule && linears[0]) {
    state.set(`${prefixOf(linearModule)}weight`, linears[0].weight);
    if (linears[0].bias) state.set(`${prefixOf(linearModule)}bias`, linears[0].bias);
  }
  const embeddingModule = model instanceof SequenceModel ? model.embedding : model instanceof Embedding ? model
    : model instanceof Sequential ? model.layers.find((m): m is Embedding => m instanceof Embedding) ?? null : null;
  if (embeddingModule && embedding) state.set(`${prefixOf(embeddingModule)}weight`, embedding);

  const expected = model.namedParameters();
  const dict: Record<string, Tensor> = {};
  for (const [name, param] of expected) {
    const values = state.get(name);
    if (!values) throw rangeError(`importOnnx: ${where} has no weights for ${name}`, 'ERR_BAD_FILE');
    dict[name] = Tensor.from(values, param.shape);
  }
  model.loadStateDict(dict);
  return { model, metadata };
}

/** Reads ONNX bytes into our modules (see importOnnx). */
export function importOnnxBuffer(bytes: Uint8Array, where = '<buffer>'): { model: Module; metadata: Record<string, string> } {
  if (!(bytes instanceof Uint8Array)) throw typeError(`importOnnx: expected bytes to be a Uint8Array but received ${describe(bytes)}`);
  let proto: onnx.ModelProto;
  try {
    proto = onnx.ModelProto.decode(bytes);
  } catch (error) {
    throw rangeError(`importOnnx: ${where} is not an ONNX model (${(error as Error).message})`, 'ERR_BAD_FILE');
  }
  return modelFromProto(proto, where);
}

/**
 * Reads an ONNX file into our modules with PyTorch's parameter names: graphs of RNN, LSTM
 * and GRU nodes (a stack of layers, one or two directions) with an optional embedding
 * (Gather) before and a linear head (MatMul + Add or Gemm) after, as our exportOnnx and
 * PyTorch's torch.onnx.export write them. A file we wrote comes back as the same class
 * (its description is in the metadata); others as the recurrent module, or a Sequential of
 * Embedding, recurrent module and Linear. An unsupported graph fails with ERR_UNSUPPORTED
 * naming the first node that is not understood.
 */
export async function importOnnx(file: string): Promise<Module> {
  return (await importOnnxFile(file)).model;
}

/** importOnnx with the file's metadata_props beside the model. */
export async function importOnnxFile(file: string): Promise<{ model: Module; metadata: Record<string, string> }> {
  if (typeof file !== 'string' || !file) throw typeError(`importOnnx: expected path to be a file path but received ${describe(file)}`);
  const bytes = await fs.readFile(file);
  return importOnnxBuffer(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), file);
}

