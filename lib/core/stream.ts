/**
 * Async execution. Inside runAsync(fn), every native op that fn calls is validated at
 * once but computed later, in call order, on a worker thread (Node-API async work);
 * shapes are known up front, so the graph is built without waiting. The returned
 * promise settles after the last op ran. Reading data (toArray, item) waits for the
 * queue, so results never depend on timing.
 */
import { typeError } from './errors';
import { native } from './native';

/** Runs `fn` with its native work queued off the main thread; resolves to fn's result once that work is done. */
export async function runAsync<T>(fn: () => T): Promise<T> {
  if (typeof fn !== 'function') throw typeError('Expected fn to be a function');
  const previous = native.isAsync();
  native.setAsync(true);
  let result: T;
  try {
    result = fn();
  } finally {
    native.setAsync(previous);
  }
  await native.synchronize();
  return result;
}

/** Resolves once every queued native op has run. */
export function synchronize(): Promise<void> {
  return native.synchronize();
}
