/**
 * Optimizers (torch.optim semantics) whose update is one fused native call over all
 * parameters, gradient clipping, and learning-rate schedules.
 */
import { describe, expectBoolean, expectNumber, expectOptions, expectKnownKeys, formatShape, rangeError, typeError } from '../core/errors';
import { native, NativeStorage, OptimizerUpdate, optimizerStep } from '../core/native';
import { runAsync } from '../core/stream';
import { expectSameDevice } from '../core/device';
import { keep } from '../core/memory';
import { Tensor, zerosOn } from '../core/tensor';

type Hyper = Record<string, number | boolean>;

export interface OptimizerState {
  type: string;
  hyper: Hyper;
  /** per parameter: updates applied so far */
  steps: number[];
  /** `${index}.${name}` -> state tensor (PyTorch's names: exp_avg, momentum_buffer, ...) */
  buffers: Record<string, Tensor>;
}

function checkParams(params: unknown, name: string): Tensor[] {
  const list = params instanceof Map ? [...params.values()] : params;
  if (!Array.isArray(list) || list.length === 0) {
    throw typeError(`${name}: expected params to be a non-empty array of Tensors but received ${describe(params)}`);
  }
  const seen = new Set<Tensor>();
  list.forEach((p, i) => {
    if (!(p instanceof Tensor)) throw typeError(`${name}: expected params[${i}] to be a Tensor but received ${describe(p)}`);
    if (!p.isLeaf || !p.requiresGrad) throw typeError(`${name}: params[${i}] must be a leaf tensor that requires grad`, 'ERR_INVALID_ARG_VALUE');
    if (seen.has(p)) throw typeError(`${name}: params[${i}] appears twice`, 'ERR_INVALID_ARG_VALUE');
    seen.add(p);
  });
  return list as Tensor[];
}

function positive(value: unknown, name: string, allowZero = true): number {
  const v = expectNumber(value, name);
  if (v < 0 || (!allowZero && v === 0)) throw rangeError(`Expected ${name} to be ${allowZero ? '>= 0' : '> 0'} but received ${v}`);
  return v;
}

function fraction(value: unknown, name: string): number {
  const v = expectNumber(value, name);
  if (v < 0 || v >= 1) throw rangeError(`Expected ${name} to be in [0, 1) but received ${v}`);
  return v;
}

export abstract class Optimizer {
  readonly params: Tensor[];
  /** Learning rate; schedules change it between steps. */
  lr: number;
  protected readonly steps: number[];
  /** up to three state tensors per parameter, created on its first update */
  protected readonly buffers: (Tensor | null)[][];
  protected abstract readonly bufferNames: readonly string[];

  protected constructor(params: unknown, lr: number, name: string) {
    this.params = checkParams(params, name);
    this.lr = positive(lr, 'options.lr');
    this.steps = this.params.map(() => 0);
    this.buffers = [0, 1, 2].map(() => this.params.map(() => null));
  }

  /** The native update and its hyperparameters, by name (lib/core/native.ts orders them). */
  protected abstract update(): OptimizerUpdate;
  /** Which of the three state slots this configuration uses. */
  protected abstract usedBuffers(): boolean[];
  /** Hyperparameters by name (for stateDict). */
  abstract hyperparameters(): Hyper;

  /** Applies one update to every parameter that has a gradient. */
  step(): void {
    const used = this.usedBuffers();
    // every parameter is checked before anything changes: a bad one leaves steps and state as they were
    const grads: (NativeStorage | null)[] = this.params.map((p, i) => {
      p.live();
      const grad = p.ownGrad;
      if (!grad) return null;
      if (!sameShape(grad.shape, p.shape)) {
        throw rangeError(`step: the grad of params[${i}] has shape ${formatShape(grad.shape)}, not ${formatShape(p.shape)}`, 'ERR_SHAPE_MISMATCH');
      }
      if (grad.device !== p.device) {
        throw typeError(`step: the grad of params[${i}] is on '${grad.device}' but the parameter is on '${p.device}'`, 'ERR_DEVICE_MISMATCH');
      }
      return grad.storage;
    });
    this.params.forEach((p, i) => {
      if (!grads[i]) return;
      this.steps[i] += 1;
      used.forEach((isUsed, k) => {
        const buffer = this.buffers[k][i];
        if (isUsed && !buffer) this.buffers[k][i] = keep(zerosOn(p.shape, p.device));
        else if (buffer && buffer.device !== p.device) buffer.moveTo_(p.device); // the model moved since the last step
      });
    });
    const state = (k: number) => this.buffers[k].map((b) => (b ? b.storage : null));
    optimizerStep({ ...this.update(), steps: this.steps.map((s) => Math.max(s, 1)), params: this.params.map((p) => p.storage), grads, state: [state(0), state(1), state(2)] });
  }

  /** step() with the update computed off the main thread. */
  stepAsync(): Promise<void> {
    return runAsync(() => this.step());
  }

  /**
   * Clears every parameter's gradient (PyTorch's zero_grad(set_to_none=True)): a gradient that
   * was never read through `.grad` is freed now, one that was stays valid for whoever holds it.
   */
  zeroGrad(): void {
    for (const p of this.params) p.releaseGrad();
  }

  stateDict(): OptimizerState {
    const buffers: Record<string, Tensor> = {};
    this.buffers.forEach((list, k) =>
      list.forEach((b, i) => {
        if (b) buffers[`${i}.${this.bufferNames[k]}`] = b.detach();
      }),
    );
    return { type: this.constructor.name, hyper: { ...this.hyperparameters(), lr: this.lr }, steps: [...this.steps], buffers };
  }

  /** Restores state saved by stateDict() (same parameter list and optimizer type). */
  loadStateDict(state: OptimizerState): void {
    if (!state || typeof state !== 'object') throw typeError(`Expected state to be an optimizer state dict but received ${describe(state)}`);
    if (state.type !== this.constructor.name) throw typeError(`loadStateDict: state of a ${state.type} cannot load into a ${this.constructor.name}`, 'ERR_STATE_DICT');
    if (!Array.isArray(state.steps) || state.steps.length !== this.params.length) {
      throw rangeError(`loadStateDict: state is for ${state.steps?.length} parameters, this optimizer has ${this.params.length}`, 'ERR_STATE_DICT');
    }
    const restored: (Tensor | null)[][] = [0, 1, 2].map(() => this.params.map(() => null));
    for (const [key, tensor] of Object.entries(state.buffers ?? {})) {
      const [index, name] = [Number(key.slice(0, key.indexOf('.'))), key.slice(key.indexOf('.') + 1)];
      const k = this.bufferNames.indexOf(name);
      if (!Number.isInteger(index) || index < 0 || index >= this.params.length || k < 0) {
        throw rangeError(`loadStateDict: unexpected optimizer state ${JSON.stringify(key)}`, 'ERR_STATE_DICT');
      }
      if (!(tensor instanceof Tensor) || !sameShape(tensor.shape, this.params[index].shape)) {
        throw rangeError(`loadStateDict: optimizer state ${JSON.stringify(key)} must be a Tensor of shape ${formatShape(this.params[index].shape)}`, 'ERR_SHAPE_MISMATCH');
      }
      restored[k][index] = keep(tensor.copyData()); // optimizer state outlives any scope, as the buffers step() makes do
    }
    this.applyHyper(state.hyper ?? {});
    state.steps.forEach((s, i) => (this.steps[i] = s));
    restored.forEach((list, k) => list.forEach((b, i) => (this.buffers[k][i] = b)));
  }

  protected abstract applyHyper(hyper: Hyper): void;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

export interface SGDOptions {
  lr?: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/** Stochastic gradient descent with optional momentum (PyTorch's formulation), Nesterov and weight decay. */
export class SGD extends Optimizer {
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
  protected readonly bufferNames = ['momentum_buffer'] as const;

  constructor(params: Tensor[], options: SGDOptions = {}) {
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['lr', 'momentum', 'dampening', 'weightDecay', 'nesterov'], 'options');
    super(params, (opts.lr as number | undefined) ?? 1e-3, 'SGD');
    this.momentum = positive(opts.momentum ?? 0, 'options.momentum');
    this.dampening = positive(opts.dampening ?? 0, 'options.dampening');
    this.weightDecay = positive(opts.weightDecay ?? 0, 'options.weightDecay');
    this.nesterov = expectBoolean(opts.nesterov ?? false, 'options.nesterov');
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw rangeError('SGD: Nesterov momentum requires a momentum > 0 and zero dampening');
    }
  }

  protected update(): OptimizerUpdate {
    return { optimizer: 'SGD', hyper: { lr: this.lr, momentum: this.momentum, dampening: this.dampening, weightDecay: this.weightDecay, nesterov: this.nesterov } };
  }

  protected usedBuffers(): boolean[] {
    return [this.momentum !== 0, false, false];
  }

  hyperparameters(): Hyper {
    return { momentum: this.momentum, dampening: this.dampening, weightDecay: this.weightDecay, nesterov: this.nesterov };
  }

  protected applyHyper(h: Hyper): void {
    this.lr = (h.lr as number) ?? this.lr;
    this.momentum = (h.momentum as number) ?? this.momentum;
    this.dampening = (h.dampening as number) ?? this.dampening;
    this.weightDecay = (h.weightDecay as number) ?? this.weightDecay;
    this.nesterov = (h.nesterov as boolean) ?? this.nesterov;
  }
}

export interface AdamOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/** Adam (L2 weight decay added to the gradient, as torch.optim.Adam). */
export class Adam extends Optimizer {
  betas: [number, number];
  eps: number;
  weightDecay: number;
  protected readonly bufferNames = ['exp_avg', 'exp_avg_sq'] as const;
  protected readonly decoupled: boolean = false;

  constructor(params: Tensor[], options: AdamOptions = {}, defaults = { weightDecay: 0, name: 'Adam' }) {
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['lr', 'betas', 'eps', 'weightDecay'], 'options');
    super(params, (opts.lr as number | undefined) ?? 1e-3, defaults.name);
    const betas = opts.betas ?? [0.9, 0.999];
    if (!Array.isArray(betas) || betas.length !== 2) throw typeError(`Expected options.betas to be [beta1, beta2] but received ${describe(betas)}`);
    this.betas = [fraction(betas[0], 'options.betas[0]'), fraction(betas[1], 'options.betas[1]')];
    this.eps = positive(opts.eps ?? 1e-8, 'options.eps');
    this.weightDecay = positive(opts.weightDecay ?? defaults.weightDecay, 'options.weightDecay');
  }

  protected update(): OptimizerUpdate {
    return { optimizer: 'Adam', hyper: { lr: this.lr, beta1: this.betas[0], beta2: this.betas[1], eps: this.eps, weightDecay: this.weightDecay, decoupled: this.decoupled } };
  }

  protected usedBuffers(): boolean[] {
    return [true, true, false];
  }

  hyperparameters(): Hyper {
    return { beta1: this.betas[0], beta2: this.betas[1], eps: this.eps, weightDecay: this.weightDecay };
  }

  protected applyHyper(h: Hyper): void {
    this.lr = (h.lr as number) ?? this.lr;
    this.betas = [(h.beta1 as number) ?? this.betas[0], (h.beta2 as number) ?? this.betas[1]];
    this.eps = (h.eps as number) ?? this.eps;
    this.weightDecay = (h.weightDecay as number) ?? this.weightDecay;
  }
}

/** AdamW: Adam with decoupled weight decay (default 0.01), as torch.optim.AdamW. */
export class AdamW extends Adam {
  protected override readonly decoupled: boolean = true;

  constructor(params: Tensor[], options: AdamOptions = {}) {
    super(params, options, { weightDecay: 1e-2, name: 'AdamW' });
  }
}

export interface RMSpropOptions {
  lr?: number;
  alpha?: number;
  eps?: number;
  weightDecay?: number;
  momentum?: number;
  centered?: boolean;
}

/** RMSprop (torch.optim.RMSprop: lr 0.01, alpha 0.99, eps 1e-8 by default). */
export class RMSprop extends Optimizer {
  alpha: number;
  eps: number;
  weightDecay: number;
  momentum: number;
  centered: boolean;
  protected readonly bufferNames = ['square_avg', 'grad_avg', 'momentum_buffer'] as const;

  constructor(params: Tensor[], options: RMSpropOptions = {}) {
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['lr', 'alpha', 'eps', 'weightDecay', 'momentum', 'centered'], 'options');
    super(params, (opts.lr as number | undefined) ?? 1e-2, 'RMSprop');
    this.alpha = fraction(opts.alpha ?? 0.99, 'options.alpha');
    this.eps = positive(opts.eps ?? 1e-8, 'options.eps');
    this.weightDecay = positive(opts.weightDecay ?? 0, 'options.weightDecay');
    this.momentum = positive(opts.momentum ?? 0, 'options.momentum');
    this.centered = expectBoolean(opts.centered ?? false, 'options.centered');
  }

  protected update(): OptimizerUpdate {
    return { optimizer: 'RMSprop', hyper: { lr: this.lr, alpha: this.alpha, eps: this.eps, weightDecay: this.weightDecay, momentum: this.momentum, centered: this.centered } };
  }

  protected usedBuffers(): boolean[] {
    return [true, this.centered, this.momentum > 0];
  }

  hyperparameters(): Hyper {
    return { alpha: this.alpha, eps: this.eps, weightDecay: this.weightDecay, momentum: this.momentum, centered: this.centered };
  }

  protected applyHyper(h: Hyper): void {
    this.lr = (h.lr as number) ?? this.lr;
    this.alpha = (h.alpha as number) ?? this.alpha;
    this.eps = (h.eps as number) ?? this.eps;
    this.weightDecay = (h.weightDecay as number) ?? this.weightDecay;
    this.momentum = (h.momentum as number) ?? this.momentum;
    this.centered = (h.centered as boolean) ?? this.centered;
  }
}

// ---------------------------------------------------------------------------
// Clipping

function gradsOf(params: unknown, name: string): Tensor[] {
  const list = params instanceof Tensor ? [params] : params;
  if (!Array.isArray(list)) throw typeError(`${name}: expected params to be an array of Tensors but received ${describe(params)}`);
  list.forEach((p, i) => {
    if (!(p instanceof Tensor)) throw typeError(`${name}: expected params[${i}] to be a Tensor but received ${describe(p)}`);
  });
  return (list as Tensor[]).filter((p) => p.ownGrad !== null).map((p) => p.ownGrad!);
}

/**
 * Scales all gradients together so that their global L2 norm is at most maxNorm.
 * Returns a one-element tensor holding the norm before clipping, without waiting for
 * it (for use inside async steps).
 */
export function clipGradNormTensor(params: Tensor[], maxNorm: number): Tensor {
  const grads = gradsOf(params, 'clipGradNorm');
  const norm = positive(maxNorm, 'maxNorm', false);
  const device = grads.length > 0 ? expectSameDevice('clipGradNorm', grads.map((g, i) => [`the grad of parameter ${i}`, g] as const)) : 'cpu';
  const out = zerosOn([], device);
  native.clipGradNorm(grads.map((g) => g.storage), norm, out.storage);
  return out;
}

/**
 * Scales all gradients together so that their global L2 norm is at most maxNorm
 * (torch.nn.utils.clip_grad_norm_). Returns the norm before clipping.
 */
export function clipGradNorm(params: Tensor[], maxNorm: number): number {
  return clipGradNormTensor(params, maxNorm).item();
}

/** Clamps every gradient element to [-clipValue, clipValue]. */
export function clipGradValue(params: Tensor[], clipValue: number): void {
  const grads = gradsOf(params, 'clipGradValue');
  native.clipGradValue(grads.map((g) => g.storage), positive(clipValue, 'clipValue'));
}

// ---------------------------------------------------------------------------
// Learning-rate schedules: call step() once per epoch (or per batch) after optimizer.step().

export abstract class LRScheduler {
  readonly optimizer: Optimizer;
  readonly baseLr: number;
  /** Number of step() calls so far. */
  lastEpoch = 0;

  constructor(optimizer: Optimizer) {
    if (!(optimizer instanceof Optimizer)) throw typeError(`Expected optimizer to be an Optimizer but received ${describe(optimizer)}`);
    this.optimizer = optimizer;
    this.baseLr = optimizer.lr;
  }

  /** The learning rate after `epoch` steps. */
  abstract lrAt(epoch: number): number;

  step(): void {
    this.lastEpoch += 1;
    this.optimizer.lr = this.lrAt(this.lastEpoch);
  }

  getLastLr(): number {
    return this.optimizer.lr;
  }

  stateDict(): { lastEpoch: number } {
    return { lastEpoch: this.lastEpoch };
  }

  loadStateDict(state: { lastEpoch: number }): void {
    this.lastEpoch = state.lastEpoch;
    this.optimizer.lr = this.lrAt(this.lastEpoch);
  }
}

/** lr * gamma^floor(epoch / stepSize). */
export class StepLR extends LRScheduler {
  readonly stepSize: number;
  readonly gamma: number;
  constructor(optimizer: Optimizer, options: { stepSize: number; gamma?: number }) {
    super(optimizer);
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['stepSize', 'gamma'], 'options');
    this.stepSize = positive(opts.stepSize, 'options.stepSize', false);
    this.gamma = positive(opts.gamma ?? 0.1, 'options.gamma');
  }
  lrAt(epoch: number): number {
    return this.baseLr * this.gamma ** Math.floor(epoch / this.stepSize);
  }
}

/** Cosine annealing from lr down to etaMin over tMax steps. */
export class CosineAnnealingLR extends LRScheduler {
  readonly tMax: number;
  readonly etaMin: number;
  constructor(optimizer: Optimizer, options: { tMax: number; etaMin?: number }) {
    super(optimizer);
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['tMax', 'etaMin'], 'options');
    this.tMax = positive(opts.tMax, 'options.tMax', false);
    this.etaMin = positive(opts.etaMin ?? 0, 'options.etaMin');
  }
  lrAt(epoch: number): number {
    const t = Math.min(epoch, this.tMax);
    return this.etaMin + ((this.baseLr - this.etaMin) * (1 + Math.cos((Math.PI * t) / this.tMax))) / 2;
  }
}

/** Linear warm-up: the factor goes from startFactor to endFactor over totalIters steps. */
export class LinearLR extends LRScheduler {
  readonly startFactor: number;
  readonly endFactor: number;
  readonly totalIters: number;
  constructor(optimizer: Optimizer, options: { startFactor?: number; endFactor?: number; totalIters?: number } = {}) {
    super(optimizer);
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['startFactor', 'endFactor', 'totalIters'], 'options');
    this.startFactor = positive(opts.startFactor ?? 1 / 3, 'options.startFactor', false);
    this.endFactor = positive(opts.endFactor ?? 1, 'options.endFactor');
    this.totalIters = positive(opts.totalIters ?? 5, 'options.totalIters', false);
    optimizer.lr = this.lrAt(0);
  }
  lrAt(epoch: number): number {
    const progress = Math.min(epoch, this.totalIters) / this.totalIters;
    return this.baseLr * (this.startFactor + (this.endFactor - this.startFactor) * progress);
  }
}
