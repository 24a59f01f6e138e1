/**
 * Tensor memory: every allocation goes through allocate(), which charges the allocation budget
 * (withAllocationBudget) and records the storage in the innermost scope() so that it can be
 * freed when the scope ends.
 */
import type { Device } from './device';
import { describe, typeError } from './errors';
import { native, NativeStorage } from './native';

// Allocation budget: code that builds something from an untrusted description (a model
// config read from a file) runs under a budget, so that a file can never make us
// allocate more than it could fill.

let budget: { left: number; onExceeded: (requested: number) => Error } | null = null;

export function allocate(count: number, uninitialized = false, device: Device = 'cpu'): NativeStorage {
  if (budget) {
    if (count > budget.left) throw budget.onExceeded(count);
    budget.left -= count;
  }
  // memory a scope will free is left out of V8's external count (see scope())
  const storage = new native.Storage(count, uninitialized, device, scopes.length === 0);
  if (scopes.length > 0) scopes[scopes.length - 1].add(storage);
  allocationLog?.add(storage);
  return storage;
}

// The memory allocated while a backward pass runs (weakly held: backward frees the graph's
// memory as it goes). Backward may hand a leaf such memory as its gradient without copying it.
let allocationLog: WeakSet<NativeStorage> | null = null;

/** @internal Runs `fn` and returns what it returned, with `log` recording the storages allocated meanwhile. */
export function logAllocations<R>(log: WeakSet<NativeStorage>, fn: () => R): R {
  const previous = allocationLog;
  allocationLog = log;
  try {
    return fn();
  } finally {
    allocationLog = previous;
  }
}

// ---------------------------------------------------------------------------
// Scopes: free the memory of a loop iteration's intermediates now, not at the next
// garbage collection (native memory that waits for V8 costs page faults and RSS).

const scopes: Set<NativeStorage>[] = [];
const kept = new WeakSet<NativeStorage>();

/**
 * Marks a tensor's memory as owned beyond any scope it was created in (parameters,
 * gradients and optimizer state are marked by the library itself). Returns the tensor.
 */
export function keep<T extends TensorLike>(tensor: T): T {
  kept.add(tensor.storage);
  return tensor;
}

/** @internal `moved` takes the place of `old` (Tensor.moveTo_): kept if `old` was. */
export function transferKept(old: NativeStorage, moved: NativeStorage): void {
  if (kept.has(old)) kept.add(moved);
}

// A Tensor, known by its memory (this module sits below tensor.ts and does not import it).
interface TensorLike {
  storage: NativeStorage;
  ownGrad: TensorLike | null;  // .grad, read without handing it out (Tensor.ownGrad)
}

function isTensor(value: object): value is TensorLike {
  return (value as { storage?: unknown }).storage instanceof native.Storage;
}

function survivors(value: unknown, into: Set<NativeStorage>, depth: number): void {
  if (value && typeof value === 'object' && isTensor(value)) {
    into.add(value.storage);
    if (value.ownGrad) into.add(value.ownGrad.storage);
  } else if (depth < 4 && value && typeof value === 'object') {
    // arrays, Maps and plain objects only (never the elements of a typed array)
    if (Array.isArray(value) || value instanceof Map) for (const v of value.values()) survivors(v, into, depth + 1);
    else if ([Object.prototype, null].includes(Object.getPrototypeOf(value))) for (const v of Object.values(value)) survivors(v, into, depth + 1);
  }
}

/**
 * Runs `fn` (synchronously) and then frees the memory of every tensor created inside it,
 * except the tensors it returns (found in arrays, Maps and plain objects up to 4 levels deep) and
 * those marked with keep() (parameters, gradients, optimizer state). Like tf.tidy: a
 * tensor freed here throws ERR_DISPOSED if used later, so return what you need.
 * Work already queued in async mode keeps its memory until it has run.
 *
 * Memory allocated inside a scope is not reported to V8 as external memory unless it outlives
 * the outermost scope: the scope holds it (collection could not free it) and frees it when it
 * ends. V8 starts a full collection whenever external memory grows 64 MB past its level at the
 * last one, so a training step that allocates more than that would otherwise start one every
 * step, each marking the whole JS heap (with a data set held in JS arrays, that halved G2P
 * training at a batch of 128).
 *
 * @example
 * for (const batch of batches) {
 *   const loss = scope(() => {
 *     const l = crossEntropyLoss(model.forward(batch.x), batch.y);
 *     l.backward();
 *     return l.item();
 *   });
 *   optimizer.step();
 * }
 */
export function scope<R>(fn: () => R): R {
  if (typeof fn !== 'function') throw typeError(`Expected fn to be a function but received ${describe(fn)}`);
  const allocated = new Set<NativeStorage>();
  scopes.push(allocated);
  let result: R | undefined;
  try {
    result = fn();
    return result;
  } finally {
    scopes.pop();
    const keepAlive = new Set<NativeStorage>();
    survivors(result, keepAlive, 0);
    const parent = scopes.length > 0 ? scopes[scopes.length - 1] : null;
    for (const storage of allocated) {
      const survives = kept.has(storage) || keepAlive.has(storage);
      if (survives && parent) {
        parent.add(storage);
        continue;
      }
      // what outlives the outermost scope is V8's to know of from now on
      if (survives) storage.report();
      else if (!storage.disposed) storage.dispose();
    }
  }
}

/** Runs `fn`; any tensor allocation past `elements` float32 elements in all throws `onExceeded(requested)`. */
export function withAllocationBudget<R>(elements: number, onExceeded: (requested: number) => Error, fn: () => R): R {
  const previous = budget;
  budget = { left: elements, onExceeded };
  try {
    return fn();
  } finally {
    budget = previous;
  }
}
