/**
 * Saving and loading models and training checkpoints as safetensors files.
 *
 * save(model, path) writes the parameters under PyTorch's names (so
 * `module.load_state_dict(safetensors.torch.load_file(path))` works in PyTorch) and
 * the model's class and constructor options in `__metadata__`, from which load(path)
 * rebuilds it. Checkpoints add the optimizer state, the training position and the
 * random generator's state, so that training resumes exactly.
 */
import { describe, rangeError, typeError } from './errors';
import { GRU, LSTM, RNN } from './nn/recurrent';
import { Dropout, Embedding, Linear, Sequential } from './nn/layers';
import { Module } from './nn/module';
import { SequenceModel } from './nn/sequence-model';
import { loadSafetensors, saveSafetensors } from './safetensors';
import { Tensor } from './tensor';

type Factory = (config: Record<string, unknown>) => Module;

const registry = new Map<string, Factory>([
  ['LSTM', (c) => new LSTM(c as never)],
  ['GRU', (c) => new GRU(c as never)],
  ['RNN', (c) => new RNN(c as never)],
  ['Linear', (c) => new Linear(c as never)],
  ['Embedding', (c) => new Embedding(c as never)],
  ['Dropout', (c) => new Dropout((c as { p: number }).p)],
  ['SequenceModel', (c) => new SequenceModel(c as never)],
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

const MODEL_KEY = 'recurrent.model';

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
  const { tensors, metadata } = await loadSafetensors(path);
  const raw = metadata[MODEL_KEY];
  if (raw === undefined) throw rangeError(`${path} has no model description (${MODEL_KEY} in __metadata__); was it written by save()?`, 'ERR_INVALID_ARG_VALUE');
  let spec: ModelSpec;
  try {
    spec = JSON.parse(raw) as ModelSpec;
  } catch {
    throw rangeError(`${path}: ${MODEL_KEY} is not valid JSON`, 'ERR_INVALID_ARG_VALUE');
  }
  const model = buildModel(spec);
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
}

const CHECKPOINT_KEY = 'recurrent.checkpoint';

/** Writes a checkpoint atomically: a crash mid-save leaves the previous file intact. */
export async function saveCheckpoint(path: string, content: Omit<CheckpointContent, 'modelSpec'> & { modelSpec?: ModelSpec | null }): Promise<void> {
  const tensors: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(content.model)) tensors[`model.${k}`] = t;
  for (const [k, t] of Object.entries(content.optimizerBuffers)) tensors[`optimizer.${k}`] = t;
  for (const [k, t] of Object.entries(content.tensors)) tensors[`extra.${k}`] = t;
  const metadata: Record<string, string> = { format: 'pt', [CHECKPOINT_KEY]: JSON.stringify(content.state) };
  if (content.modelSpec) metadata[MODEL_KEY] = JSON.stringify(content.modelSpec);
  await saveSafetensors(path, tensors, metadata);
}

export async function loadCheckpoint(path: string): Promise<CheckpointContent> {
  const { tensors, metadata } = await loadSafetensors(path);
  const raw = metadata[CHECKPOINT_KEY];
  if (raw === undefined) throw rangeError(`${path} is not a recurrent checkpoint`, 'ERR_INVALID_ARG_VALUE');
  const content: CheckpointContent = {
    model: {}, optimizerBuffers: {}, tensors: {},
    modelSpec: metadata[MODEL_KEY] ? (JSON.parse(metadata[MODEL_KEY]) as ModelSpec) : null,
    state: JSON.parse(raw) as Record<string, unknown>,
  };
  for (const [key, t] of Object.entries(tensors)) {
    const dot = key.indexOf('.');
    const group = key.slice(0, dot);
    const name = key.slice(dot + 1);
    if (group === 'model') content.model[name] = t;
    else if (group === 'optimizer') content.optimizerBuffers[name] = t;
    else if (group === 'extra') content.tensors[name] = t;
  }
  return content;
}
