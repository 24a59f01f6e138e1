/**
 * ONNX import: graphs of RNN, LSTM and GRU nodes (as our export and torch.onnx.export write
 * them) read back into our modules with PyTorch's parameter names. What the graph holds is
 * recognised, not interpreted: an unsupported node fails naming it.
 */
import { promises as fs } from 'node:fs';
import { describe, rangeError, typeError } from '../../core/errors';
import { GRU, LSTM, RNN, gateCount, isRecurrent, weightSuffix } from '../../nn/recurrent';
import { Embedding, Linear, Sequential } from '../../nn/layers';
import { Module } from '../../nn/module';
import { MODEL_KEY, ModelSpec, buildModel } from '../serialize';
import { SequenceModel } from '../../nn/sequence-model';
import { Tensor } from '../../core/tensor';
import { DataType, ONNX_GATE_ORDER, reorderGates } from './common';
import { AttributeProto, ModelProto, NodeProto, TensorProto, decodeModel } from './schema';

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

function floatsOf(t: TensorProto, where: string): Float32Array {
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

function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name);
}

function stringAttr(node: NodeProto, name: string, fallback: string): string {
  const a = attr(node, name);
  return a?.s ? new TextDecoder().decode(a.s) : fallback;
}

function intAttr(node: NodeProto, name: string, fallback: number): number {
  const a = attr(node, name);
  return a && a.i !== undefined && a.i !== null ? num(a.i) : fallback;
}

function nodeLabel(node: NodeProto): string {
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
function modelFromProto(proto: ModelProto, where: string): { model: Module; metadata: Record<string, string> } {
  const graph = proto.graph;
  if (!graph) throw rangeError(`importOnnx: ${where} has no graph`, 'ERR_BAD_FILE');
  const metadata: Record<string, string> = {};
  for (const entry of proto.metadataProps ?? []) if (entry.key) metadata[entry.key] = entry.value ?? '';
  const initializers = new Map<string, TensorProto>();
  for (const t of graph.initializer ?? []) if (t.name) initializers.set(t.name, t);
  for (const node of graph.node ?? []) {
    if (node.domain && node.domain !== 'ai.onnx') throw rangeError(`importOnnx: unsupported ${nodeLabel(node)} in domain ${JSON.stringify(node.domain)}`, 'ERR_UNSUPPORTED');
    if (!SUPPORTED_OPS.has(node.opType ?? '')) {
      throw rangeError(`importOnnx: unsupported ${nodeLabel(node)} (supported: ${[...SUPPORTED_OPS].join(', ')})`, 'ERR_UNSUPPORTED');
    }
  }
  const constant = (name: string | undefined | null, node: NodeProto, role: string): Float32Array => {
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
      const gates = gateCount(op);
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
    : isRecurrent(model) ? model
      : model instanceof Sequential ? model.layers.find(isRecurrent) ?? null : null;
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
      const suffix = weightSuffix(k, d === 1);
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
  let proto: ModelProto;
  try {
    proto = decodeModel(bytes);
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


