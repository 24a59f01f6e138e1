/**
 * Saving and loading models and training checkpoints as safetensors files.
 *
 * save(model, path) writes the parameters under PyTorch's names (so
 * `module.load_state_dict(safetensors.torch.load_file(path))` works in PyTorch) and
 * the model's class and constructor options in `__metadata__`, from which load(path)
 * rebuilds it. Checkpoints add the optimizer state, the training position and the
 * random generator's state, so that training resumes exactly.
 */
import { describe, rangeError, setOwn, typeError } from '../core/errors';
import { GRU, LSTM, RNN } from '../nn/recurrent';
import { Dropout, Embedding, Linear, Sequential } from '../nn/layers';
import { Module } from '../nn/module';
import { SequenceModel } from '../nn/sequence-model';
import { Seq2Seq } from '../nn/seq2seq';
import { BahdanauAttention, LuongAttention } from '../nn/attention';
import { loadSafetensors, saveSafetensors, SafetensorsContent } from './safetensors';
import { withAllocationBudget } from '../core/memory';
import { Tensor } from '../core/tensor';

type Factory = (config: Record<string, unknown>) => Module;

const registry = new Map<string, Factory>([
  ['LSTM', (c) => new LSTM(c as never)],
  ['GRU', (c) => new GRU(c as never)],
  ['RNN', (c) => new RNN(c as never)],
  ['Linear', (c) => new Linear(c as never)],
  ['Embedding', (c) => new Embedding(c as never)],
  ['Dropout', (c) => new Dropout((c as { p: number }).p)],
  ['SequenceModel', (c) => new SequenceModel(c as never)],
  ['Seq2Seq', (c) => new Seq2Seq(c as never)],
  ['BahdanauAttention', (c) => new BahdanauAttention(c as never)],
  ['LuongAttention', (c) => new LuongAttention(c as never)],
  ['Sequential', (c) => new Sequential(...((c as { layers: ModelSpec[] }).layers ?? []).map(buildModel))],
]);

export interface ModelSpec {
  class: string;
  config: Record<string, unknown>;
}

/** Makes a Module subclass loadable by load(): `factory(config)` must rebuild it from its config(). */
export function registerModule(name: string, factory: Factory): void {
  if (typeof name !== 'string' || !name) throw typeError(`Expected name to be a class name but received ${describe(name)}`);
  if (typeof factory !== 'function') throw typeError(`Expected factory to be a function but received ${describe(factory)}`);
  registry.set(name, factory);
}

export function describeModel(model: Module): ModelSpec {
  if (!(model instanceof Module)) throw typeError(`Expected model to be a Module but received ${describe(model)}`);
  return { class: model.constructor.name, config: model.config() };
}

export function buildModel(spec: ModelSpec): Module {
  const factory = spec && typeof spec === 'object' ? registry.get(spec.class) : undefined;
  if (!factory) throw rangeError(`Unknown model class ${JSON.stringify(spec?.class)}; known: ${[...registry.keys()].join(', ')}`, 'ERR_INVALID_ARG_VALUE');
  return factory(spec.config ?? {});
}

/** The `__metadata__` key (and ONNX metadata_props key) of a file's model description. */
export const MODEL_KEY = 'recurrent.model';
/** The `__metadata__` key of a checkpoint's run state. */
export const CHECKPOINT_KEY = 'recurrent.checkpoint';

/**
 * Saves the model's parameters (PyTorch names, F32) and its class and config, atomically.
 * `metadata` adds string entries (for example a tokenizer's vocabulary as JSON).
 */
export async function save(model: Module, path: string, metadata: Record<string, string> = {}): Promise<void> {
  const spec = describeModel(model);
  await saveSafetensors(path, model.stateDict(), { format: 'pt', ...metadata, [MODEL_KEY]: JSON.stringify(spec) });
}

/** Rebuilds a model saved by save(). */
export async function load(path: string): Promise<Module> {
  return (await loadModel(path)).model;
}

/** Like load(), and also returns the file's metadata. */
export async function loadModel(path: string): Promise<{ model: Module; metadata: Record<string, string> }> {
  return modelFromContent(await loadSafetensors(path), path);
}

/** Rebuilds a model from parsed safetensors content (what loadModel does after reading the file). */
export function modelFromContent(content: SafetensorsContent, path = '<buffer>'): { model: Module; metadata: Record<string, string> } {
  // a checkpoint holds the model too (its weights under `model.`): it loads, samples and exports like a model file
  const tensors = content.metadata[CHECKPOINT_KEY] !== undefined ? checkpointFromContent(content, path).model : content.tensors;
  const { metadata } = content;
  const raw = metadata[MODEL_KEY];
  if (raw === undefined) throw rangeError(`${path} has no model description (${MODEL_KEY} in __metadata__); was it written by save()?`, 'ERR_BAD_FILE');
  const spec = parseJson(raw, MODEL_KEY, path) as ModelSpec;
  // the description comes from the file: building it may allocate no more than the file holds
  let held = 0;
  for (const t of Object.values(tensors)) held += t.size;
  let model: Module;
  try {
    model = withAllocationBudget(held + 4096, (requested) => rangeError(
      `its model description asks for more parameters than the file's ${held} values (a tensor of ${requested})`, 'ERR_BAD_FILE',
    ), () => buildModel(spec));
  } catch (error) {
    throw rangeError(`Invalid model file ${path}: ${(error as Error).message}`, 'ERR_BAD_FILE');
  }
  model.loadStateDict(tensors);
  return { model, metadata };
}

// ---------------------------------------------------------------------------
// Checkpoints

export interface CheckpointContent {
  /** Model parameters by PyTorch name. */
  model: Record<string, Tensor>;
  modelSpec: ModelSpec | null;
  /** Optimizer buffers by `${index}.${name}`. */
  optimizerBuffers: Record<string, Tensor>;
  /** Other named tensors (for example a carried recurrent state). */
  tensors: Record<string, Tensor>;
  /** Everything else, as JSON. */
  state: Record<string, unknown>;
  /**
   * Extra `__metadata__` entries saved with the checkpoint (a character model's vocabulary, so
   * that the checkpoint samples like a model file); on load, every entry of the file.
   */
  metadata?: Record<string, string>;
}


/** Writes a checkpoint atomically: a crash mid-save leaves the previous file intact. */
export async function saveCheckpoint(path: string, content: Omit<CheckpointContent, 'modelSpec'> & { modelSpec?: ModelSpec | null }): Promise<void> {
  const tensors: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(content.model)) tensors[`model.${k}`] = t;
  for (const [k, t] of Object.entries(content.optimizerBuffers)) tensors[`optimizer.${k}`] = t;
  for (const [k, t] of Object.entries(content.tensors)) tensors[`extra.${k}`] = t;
  const metadata: Record<string, string> = { ...content.metadata, format: 'pt', [CHECKPOINT_KEY]: JSON.stringify(content.state) };
  if (content.modelSpec) metadata[MODEL_KEY] = JSON.stringify(content.modelSpec);
  await saveSafetensors(path, tensors, metadata);
}

export async function loadCheckpoint(path: string): Promise<CheckpointContent> {
  return checkpointFromContent(await loadSafetensors(path), path);
}

/** A checkpoint from the parsed safetensors content of its file (`path` names it in errors). */
export function checkpointFromContent({ tensors, metadata }: SafetensorsContent, path = '<buffer>'): CheckpointContent {
  const raw = metadata[CHECKPOINT_KEY];
  if (raw === undefined) throw rangeError(`${path} is not a recurrent checkpoint`, 'ERR_BAD_FILE');
  const state = parseJson(raw, CHECKPOINT_KEY, path);
  if (!state || typeof state !== 'object' || Array.isArray(state)) throw rangeError(`Invalid checkpoint ${path}: ${CHECKPOINT_KEY} is not a JSON object`, 'ERR_BAD_FILE');
  const content: CheckpointContent = {
    model: {}, optimizerBuffers: {}, tensors: {}, metadata,
    modelSpec: metadata[MODEL_KEY] ? (parseJson(metadata[MODEL_KEY], MODEL_KEY, path) as ModelSpec) : null,
    state: state as Record<string, unknown>,
  };
  for (const [key, t] of Object.entries(tensors)) {
    const dot = key.indexOf('.');
    const group = key.slice(0, dot);
    const name = key.slice(dot + 1);
    if (group === 'model') setOwn(content.model, name, t);
    else if (group === 'optimizer') setOwn(content.optimizerBuffers, name, t);
    else if (group === 'extra') setOwn(content.tensors, name, t);
  }
  return content;
}

/** JSON.parse for a metadata entry of a file: a syntax error becomes an ERR_BAD_FILE RangeError. */
export function parseJson(raw: string, key: string, path: string): unknown {
  try {
    return JSON.parse(raw);
  } catch (error) {
    throw rangeError(`Invalid file ${path}: ${key} in __metadata__ is not valid JSON (${(error as Error).message})`, 'ERR_BAD_FILE');
  }
}
