/**
 * Reverse-mode automatic differentiation. Every differentiable op that has an input
 * requiring a gradient records a GradNode: its inputs and a function from the
 * gradients of its outputs to the gradients of its inputs. backward() walks the
 * recorded graph once in reverse topological order, summing gradients where a tensor
 * feeds several ops, and accumulates into the `.grad` of leaf tensors (with their hooks).
 * It knows Tensor only as a type: the public backward(), which checks its arguments, is
 * tensor.ts's.
 */
import { expectSameDevice } from './device';
import { describe, typeError } from './errors';
import { keep, logAllocations } from './memory';
import { BinaryOp, native, NativeStorage } from './native';
import { contiguousStrides } from './shape';
import type { Tensor } from './tensor';

/** retainGraph: whether the graph will be used again (else saved buffers may be released). */
export type BackwardFn = (gradOutputs: (Tensor | null)[], retainGraph: boolean) => (Tensor | null)[];

export class GradNode {
  /** Name of the op, for error messages and debugging. */
  readonly name: string;
  readonly outputCount: number;
  private inputList: readonly Tensor[];
  private backwardFn: BackwardFn | null;
  private savedStorages: NativeStorage[];

  /**
   * `saved`: memory only this op's backward reads (a recurrent layer's reserve of gate
   * activations, a dropout mask). It is freed as soon as backward has used it, unless the
   * graph is retained.
   */
  constructor(name: string, inputs: Tensor[], outputCount: number, backwardFn: BackwardFn, saved: NativeStorage[] = []) {
    this.name = name;
    this.inputList = inputs;
    this.outputCount = outputCount;
    this.backwardFn = backwardFn;
    this.savedStorages = saved;
  }

  /** The op's inputs; empty once a backward without retainGraph has gone through it. */
  get inputs(): readonly Tensor[] {
    return this.inputList;
  }

  /** Whether a backward without retainGraph has freed what this op saved. */
  get released(): boolean {
    return this.backwardFn === null;
  }

  /** What the op saved for backward beyond its inputs (freed by backward unless retained). */
  get saved(): readonly NativeStorage[] {
    return this.savedStorages;
  }

  apply(gradOutputs: (Tensor | null)[], retainGraph: boolean): (Tensor | null)[] {
    if (!this.backwardFn) {
      throw typeError(
        `Trying to backward through the graph of ${this.name} a second time (its saved tensors were freed ` +
          'by the first backward); pass { retainGraph: true } to the first backward() to keep them',
        'ERR_GRAPH',
      );
    }
    return this.backwardFn(gradOutputs, retainGraph);
  }

  /**
   * Drops everything the graph holds at this node: the backward closure (and with it the
   * inputs and outputs it saved), the references to the inputs, and the memory in `saved`,
   * which nothing else can read (queued native work that still uses it keeps it until it
   * has run). Memory the user can still reach stays valid; the rest is collected.
   */
  release(): void {
    this.backwardFn = null;
    this.inputList = [];
    for (const storage of this.savedStorages) if (!storage.disposed) storage.dispose();
    this.savedStorages = [];
  }
}

let gradEnabled = true;

/** Whether ops currently record gradients (false inside noGrad). */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/**
 * Runs `fn` without recording gradients (like torch.no_grad()) and returns its result.
 * Tensors created inside do not require grad. `fn` must be synchronous.
 */
export function noGrad<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw typeError(`Expected fn to be a function but received ${describe(fn)}`);
  const previous = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = previous;
  }
}

export interface BackwardOptions {
  /** Keep the graph so that backward can run through it again. Default false. */
  retainGraph?: boolean;
}

/**
 * @internal The engine: runs backward from `roots` with the gradients `seeds` (checked by the
 * public backward() in tensor.ts), without recording a graph of its own.
 */
export function runBackward(roots: Tensor[], seeds: Tensor[], retainGraph: boolean): void {
  noGrad(() => backwardPass(roots, seeds, retainGraph));
}

function backwardPass(roots: Tensor[], seeds: Tensor[], retainGraph: boolean): void {
  // Count, for every reachable node, how many recorded edges consume its outputs.
  const dependencies = new Map<GradNode, number>();
  const stack: GradNode[] = [];
  for (const root of roots) {
    if (root.gradFn && !dependencies.has(root.gradFn)) {
      dependencies.set(root.gradFn, 0);
      stack.push(root.gradFn);
    }
  }
  while (stack.length) {
    const node = stack.pop()!;
    for (const input of node.inputs) {
      const fn = input.gradFn;
      if (!fn) continue;
      if (!dependencies.has(fn)) {
        dependencies.set(fn, 0);
        stack.push(fn);
      }
      dependencies.set(fn, dependencies.get(fn)! + 1);
    }
  }

  // For every leaf that requires grad, how many gradients will reach it: its post-accumulate
  // hooks run once, after the last one (PyTorch's register_post_accumulate_grad_hook). Counted
  // only while some tensor has such a hook.
  const leafEdges = new Map<Tensor, number>();
  if (postAccumulateHooks > 0) {
    const countLeaf = (tensor: Tensor): void => {
      if (!tensor.gradFn && tensor.requiresGrad) leafEdges.set(tensor, (leafEdges.get(tensor) ?? 0) + 1);
    };
    roots.forEach(countLeaf);
    for (const node of dependencies.keys()) node.inputs.forEach(countLeaf);
  }

  // A gradient the pass allocated and handed out exactly once can become a leaf's .grad as it
  // is (PyTorch's AccumulateGrad steals a gradient nobody else holds); any other is copied.
  // Nobody else can hold it later: gradients reach backward functions only through handouts.
  const fresh = new WeakSet<NativeStorage>();
  const handouts = new Map<NativeStorage, number>();
  const handOut = (grads: readonly (Tensor | null | undefined)[]): void => {
    for (const g of grads) if (g) handouts.set(g.storage, (handouts.get(g.storage) ?? 0) + 1);
  };
  const owned = (grad: Tensor): boolean => fresh.has(grad.storage) && handouts.get(grad.storage) === 1;

  const pending = new Map<GradNode, (Tensor | null)[]>();
  const leafDone = (tensor: Tensor): void => {
    if (leafEdges.size === 0) return;
    const left = leafEdges.get(tensor)! - 1;
    leafEdges.set(tensor, left);
    if (left === 0) runPostAccumulateGradHooks(tensor);
  };
  const addGrad = (tensor: Tensor, grad: Tensor | null): void => {
    const fn = tensor.gradFn;
    if (!fn) {
      if (tensor.requiresGrad) {
        if (grad) accumulateGrad(tensor, grad, owned(grad));
        leafDone(tensor);
      }
      return;
    }
    if (!grad) return;
    let slots = pending.get(fn);
    if (!slots) {
      slots = new Array<Tensor | null>(fn.outputCount).fill(null);
      pending.set(fn, slots);
    }
    const index = tensor.outputIndex;
    slots[index] = slots[index] ? logAllocations(fresh, () => slots![index]!.add(grad)) : grad;
  };
  handOut(seeds);
  roots.forEach((root, i) => addGrad(root, seeds[i]));

  const ready: GradNode[] = [...dependencies.keys()].filter((node) => dependencies.get(node) === 0);
  while (ready.length) {
    const node = ready.pop()!;
    const gradOutputs = pending.get(node) ?? new Array<Tensor | null>(node.outputCount).fill(null);
    pending.delete(node);
    const gradInputs = gradOutputs.some((g) => g !== null)
      ? logAllocations(fresh, () => node.apply(gradOutputs, retainGraph))
      : new Array<Tensor | null>(node.inputs.length).fill(null);
    handOut(gradInputs);
    node.inputs.forEach((input, i) => {
      const grad = gradInputs[i];
      if (input.requiresGrad) addGrad(input, grad ?? null);
      const fn = input.gradFn;
      if (fn) {
        const left = dependencies.get(fn)! - 1;
        dependencies.set(fn, left);
        if (left === 0) ready.push(fn);
      }
    });
    // PyTorch's retain_graph=False: the node's saved memory goes now, during backward, so
    // the peak is lower too, and nothing the graph held outlives this call.
    if (!retainGraph) node.release();
  }
  if (backwardEndHooks.size > 0) for (const hook of [...backwardEndHooks]) hook();
}

const backwardEndHooks = new Set<() => void>();
let postAccumulateHooks = 0;

// ---------------------------------------------------------------------------
// Leaves: gradient accumulation and its hooks (PyTorch's AccumulateGrad)

/**
 * Adds `grad` into the leaf's .grad. `owned`: nothing else holds grad's memory, so a first
 * gradient becomes .grad as it is; any other is copied. A .grad is the library's to keep.
 */
function accumulateGrad(leaf: Tensor, grad: Tensor, owned: boolean): void {
  const accumulated = leaf.ownGrad;
  if (!accumulated) {
    leaf.setOwnGrad(keep(owned ? grad : grad.copyData()));
    return;
  }
  expectSameDevice('backward', [['the accumulated gradient', accumulated], ['a new gradient', grad]]);
  const strides = contiguousStrides(leaf.shape);
  native.binary(BinaryOp.Add, accumulated.storage, accumulated.storage, 0, strides, grad.storage, 0, strides, [...leaf.shape]);
}

const leafHooks = new WeakMap<Tensor, ((tensor: Tensor) => void)[]>();

/**
 * Runs `hook(leaf)` after backward() has accumulated the last gradient it computes for `leaf`
 * (PyTorch's register_post_accumulate_grad_hook); Tensor#registerPostAccumulateGradHook calls it.
 */
export function registerPostAccumulateGradHook(leaf: Tensor, hook: (tensor: Tensor) => void): { remove(): void } {
  const hooks = leafHooks.get(leaf) ?? [];
  leafHooks.set(leaf, hooks);
  hooks.push(hook);
  postAccumulateHooks += 1;
  return {
    remove: () => {
      const at = hooks.indexOf(hook);
      if (at < 0) return;
      hooks.splice(at, 1);
      postAccumulateHooks -= 1;
    },
  };
}

function runPostAccumulateGradHooks(leaf: Tensor): void {
  const hooks = leafHooks.get(leaf);
  if (hooks) for (const hook of [...hooks]) hook(leaf);
}

/**
 * Runs `hook` at the end of every backward() (after the last gradient was accumulated), like
 * PyTorch's Variable._execution_engine.queue_callback; returns the function that removes it.
 * Data-parallel training uses it to wait for the gradients' all-reduce.
 */
export function registerBackwardEndHook(hook: () => void): () => void {
  backwardEndHooks.add(hook);
  return () => backwardEndHooks.delete(hook);
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((size, i) => size === b[i]);
}
