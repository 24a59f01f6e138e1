/**
 * ONNX export (opset 17). The recurrent layers become ONNX's RNN, LSTM and GRU
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
import { describe, expectOptions, expectKnownKeys, expectBoolean, rangeError, typeError } from '../../core/errors';
import { LSTM, Recurrent, RNN, isRecurrent } from '../../nn/recurrent';
import { Dropout, Embedding, Linear, Sequential } from '../../nn/layers';
import { Module } from '../../nn/module';
import { SequenceModel } from '../../nn/sequence-model';
import { MODEL_KEY, ModelSpec, describeModel } from '../serialize';
import { noGrad } from '../../core/tensor';
import { AttributeType, DataType, IR_VERSION, ONNX_GATE_ORDER, ONNX_OPSET, reorderGates } from './common';
import { AttributeProto, ModelProto, NodeProto, TensorProto, ValueInfoProto, encodeModel } from './schema';

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

// ---------------------------------------------------------------------------
// Graph building

type Dim = number | string;

class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  readonly inputs: ValueInfoProto[] = [];
  readonly outputs: ValueInfoProto[] = [];
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

function attribute(name: string, value: number | number[] | string | string[]): AttributeProto {
  if (typeof value === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value) };
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: AttributeType.INT, i: value } : { name, type: AttributeType.FLOAT, f: value };
  }
  if (value.length > 0 && typeof value[0] === 'string') {
    return { name, type: AttributeType.STRINGS, strings: (value as string[]).map((s) => new TextEncoder().encode(s)) };
  }
  return { name, type: AttributeType.INTS, ints: value as number[] };
}

function valueInfo(name: string, elemType: number, dims: Dim[]): ValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

/**
 * Adds the recurrent stack: x is [T, B, I] (time-major). Returns the output [T, B, D*H] and
 * the final states [L*D, B, H].
 */
function emitRecurrent(g: GraphBuilder, module: Recurrent, prefix: string, x: string, h0: string, c0: string | null, lengths: string | null):
  { output: string; h: string; c: string | null } {
  const op = module.kind;
  const gates = module.gates;
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
        const [wih, whh, bih, bhh] = module.layerWeights(layer, d === 1, params);
        if (kind === 'bias') {
          parts.push(reorderGates(bih ? bih.toArray() : new Float32Array(gates * H), gates, ONNX_GATE_ORDER[op]));
          parts.push(reorderGates(bhh ? bhh.toArray() : new Float32Array(gates * H), gates, ONNX_GATE_ORDER[op]));
        } else {
          parts.push(reorderGates((kind === 'weight_ih' ? wih : whh).toArray(), gates, ONNX_GATE_ORDER[op]));
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

function buildGraph(model: Module, opts: OnnxExportOptions): ModelProto {
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

  if (isRecurrent(model)) {
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
      } else if (isRecurrent(layer)) {
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
    return (require('../../../package.json') as { version: string }).version;
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
  return encodeModel(proto);
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

