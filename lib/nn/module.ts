/**
 * Module: the base of every layer. Holds named parameters and child modules in
 * registration order, so names follow PyTorch (`0.weight_ih_l0`, `weight_hh_l1_reverse`).
 */
import { noGrad } from '../core/autograd';
import { describe, expectBoolean, expectOptions, expectKnownKeys, formatShape, rangeError, typeError } from '../core/errors';
import { native } from '../core/native';
import { Device, checkDevice } from '../core/device';
import { keep } from '../core/memory';
import { Tensor } from '../core/tensor';

export type StateDict = Record<string, Tensor>;

export abstract class Module {
  /** Training mode (dropout active). Set with train() / eval(). */
  training = true;
  private readonly ownParameters = new Map<string, Tensor | null>();
  private readonly children = new Map<string, Module>();

  /** Registers a parameter (null: declared but absent, like PyTorch's bias=False). */
  protected registerParameter(name: string, tensor: Tensor | null): Tensor | null {
    if (tensor) keep(tensor).requiresGrad = true;
    this.ownParameters.set(name, tensor);
    return tensor;
  }

  protected registerModule<M extends Module>(name: string, module: M): M {
    this.children.set(name, module);
    return module;
  }

  abstract forward(...args: never[]): unknown;

  /**
   * The constructor options that rebuild this module (saved with its weights by
   * save()). Modules without one cannot be saved with save().
   */
  config(): Record<string, unknown> {
    throw typeError(`${this.constructor.name} has no config(); register it with registerModule() to save it`, 'ERR_INVALID_ARG_VALUE');
  }

  /** [name, parameter] pairs, depth first, in registration order. */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [name, tensor] of this.ownParameters) if (tensor) out.push([prefix + name, tensor]);
    for (const [name, child] of this.children) out.push(...child.namedParameters(`${prefix}${name}.`));
    return out;
  }

  /**
   * Moves the parameters (and their gradients) to `device` in place and returns the
   * module, like torch's module.to(): the parameter tensors stay the same objects, so an
   * optimizer made before keeps working (its state follows at its next step). 'cuda'
   * without a usable GPU throws ERR_CUDA_UNAVAILABLE with the reason, before changing anything.
   */
  to(device: Device): this {
    const target = checkDevice(device, 'device');
    for (const p of this.parameters()) p.moveTo_(target);
    return this;
  }

  /** The device of the parameters ('cpu' for a module without any). */
  get device(): Device {
    const first = this.parameters()[0];
    return first ? first.device : 'cpu';
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, tensor]) => tensor);
  }

  /** [name, module] pairs of direct children. */
  namedChildren(): [string, Module][] {
    return [...this.children];
  }

  /** Total number of parameter elements. */
  numParameters(): number {
    return this.parameters().reduce((n, p) => n + p.size, 0);
  }

  /** Sets training mode on this module and its children. */
  train(mode = true): this {
    expectBoolean(mode, 'mode');
    this.training = mode;
    for (const child of this.children.values()) child.train(mode);
    return this;
  }

  /** Evaluation mode: train(false). */
  eval(): this {
    return this.train(false);
  }

  /**
   * Runs fn in evaluation mode without gradients, then puts the previous mode back (also when fn
   * throws): what every prediction, decoding or scoring method of a model does.
   */
  inference<R>(fn: () => R): R {
    const wasTraining = this.training;
    this.eval();
    try {
      return noGrad(fn);
    } finally {
      this.train(wasTraining);
    }
  }

  /** Clears the gradients of every parameter (see Optimizer.zeroGrad). */
  zeroGrad(): void {
    for (const p of this.parameters()) p.releaseGrad();
  }

  /** Parameters by PyTorch name, as tensors sharing the parameters' memory. */
  stateDict(): StateDict {
    const out: StateDict = {};
    for (const [name, tensor] of this.namedParameters()) out[name] = tensor.detach();
    return out;
  }

  /**
   * Copies values into the parameters. With strict (default), every key must be present
   * and no other key may appear. All entries are checked before anything is copied.
   */
  loadStateDict(stateDict: StateDict | Map<string, Tensor>, options: { strict?: boolean } = {}): { missingKeys: string[]; unexpectedKeys: string[] } {
    const opts = expectOptions(options, 'options');
    expectKnownKeys(opts, ['strict'], 'options');
    const strict = opts.strict === undefined ? true : expectBoolean(opts.strict, 'options.strict');
    let entries: Map<string, unknown>;
    if (stateDict instanceof Map) entries = stateDict;
    else if (stateDict && typeof stateDict === 'object' && !Array.isArray(stateDict)) entries = new Map(Object.entries(stateDict));
    else throw typeError(`Expected stateDict to be an object or a Map of Tensors but received ${describe(stateDict)}`);

    const own = new Map(this.namedParameters());
    const missingKeys = [...own.keys()].filter((key) => !entries.has(key));
    const unexpectedKeys = [...entries.keys()].filter((key) => !own.has(key));
    if (strict && missingKeys.length) {
      throw rangeError(`loadStateDict: missing key ${missingKeys.map((k) => JSON.stringify(k)).join(', ')}`, 'ERR_STATE_DICT');
    }
    if (strict && unexpectedKeys.length) {
      throw rangeError(
        `loadStateDict: unexpected key ${unexpectedKeys.map((k) => JSON.stringify(k)).join(', ')} ` +
          `(expected keys: ${[...own.keys()].join(', ')})`,
        'ERR_STATE_DICT',
      );
    }
    const copies: [Tensor, Tensor][] = [];
    for (const [key, param] of own) {
      if (!entries.has(key)) continue;
      const value = entries.get(key);
      if (!(value instanceof Tensor)) {
        throw typeError(`loadStateDict: expected ${JSON.stringify(key)} to be a Tensor but received ${describe(value)}`);
      }
      if (value.disposed) throw typeError(`loadStateDict: ${JSON.stringify(key)} is a disposed Tensor`, 'ERR_DISPOSED');
      const expected = param.shape;
      const got = value.shape;
      if (expected.length !== got.length || expected.some((s, i) => s !== got[i])) {
        throw rangeError(
          `loadStateDict: expected ${JSON.stringify(key)} of shape ${formatShape(expected)} but received ${formatShape(got)}`,
          'ERR_SHAPE_MISMATCH',
        );
      }
      copies.push([param, value]);
    }
    noGrad(() => {
      for (const [param, value] of copies) {
        // across devices too: a state dict read from a file (CPU) into a model on 'cuda'
        if (param.storage !== value.storage) native.copyBetween(param.storage, 0, value.storage, 0, param.size);
      }
    });
    return { missingKeys, unexpectedKeys };
  }
}
