/**
 * Errors thrown by recurrent. Every error is a built-in TypeError or RangeError (so
 * `instanceof` checks work as users expect) carrying a stable `code`.
 */

export type ErrorCode =
  | 'ERR_INVALID_ARG_TYPE'
  | 'ERR_INVALID_ARG_VALUE'
  | 'ERR_SHAPE_MISMATCH'
  | 'ERR_DEVICE_MISMATCH'
  | 'ERR_DISPOSED'
  | 'ERR_STATE_DICT'
  | 'ERR_GRAPH'
  | 'ERR_CUDA_UNAVAILABLE'
  | 'ERR_NATIVE_LOAD'
  | 'ERR_NON_FINITE'
  | 'ERR_BAD_FILE'
  | 'ERR_UNSUPPORTED'
  /** a bad value found by the native side's own checks (binding/args.h) */
  | 'ERR_OUT_OF_RANGE'
  /** a native op queued by runAsync (or fit) failed on the worker thread; synchronize() rejects with it */
  | 'ERR_QUEUED_OP'
  /** the collectives of data-parallel training: not available, not initialized, or another rank failed */
  | 'ERR_DISTRIBUTED'
  /** a plain string given as text looks like a file path: pass { file } or { text } */
  | 'ERR_AMBIGUOUS_TEXT';

export interface CodedError extends Error {
  code: ErrorCode;
}

function withCode<E extends Error>(error: E, code: ErrorCode): E & CodedError {
  return Object.assign(error, { code });
}

export function typeError(message: string, code: ErrorCode = 'ERR_INVALID_ARG_TYPE'): TypeError & CodedError {
  return withCode(new TypeError(message), code);
}

export function rangeError(message: string, code: ErrorCode = 'ERR_INVALID_ARG_VALUE'): RangeError & CodedError {
  return withCode(new RangeError(message), code);
}

export function distributedError(message: string): Error & CodedError {
  return withCode(new Error(message), 'ERR_DISTRIBUTED');
}

/**
 * Sets an own enumerable property, even for keys like "__proto__" that a plain assignment
 * would treat as the prototype: records keyed by names from a file use this.
 */
export function setOwn<V>(record: Record<string, V>, key: string, value: V): void {
  Object.defineProperty(record, key, { value, enumerable: true, writable: true, configurable: true });
}

/** A short description of what a value is, for "but received ..." messages. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (Array.isArray(value)) return `an Array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name}`;
  if (typeof value === 'object') {
    const shape = (value as { shape?: unknown }).shape;
    const name = value.constructor?.name ?? 'Object';
    if (Array.isArray(shape)) return `a ${name} of shape ${formatShape(shape as number[])}`;
    return `a ${name}`;
  }
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
  return `${typeof value} ${String(value)}`;
}

export function formatShape(shape: readonly (number | string)[]): string {
  return `[${shape.join(', ')}]`;
}

export function expectInteger(value: unknown, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number') throw typeError(`Expected ${name} to be an integer but received ${describe(value)}`);
  if (!Number.isInteger(value) || value < min || value > max) {
    const bounds = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
    throw rangeError(`Expected ${name} to be an integer ${bounds} but received ${value}`);
  }
  return value;
}

export function expectNumber(value: unknown, name: string): number {
  if (typeof value !== 'number') throw typeError(`Expected ${name} to be a number but received ${describe(value)}`);
  if (!Number.isFinite(value)) throw rangeError(`Expected ${name} to be a finite number but received ${value}`);
  return value;
}

export function expectBoolean(value: unknown, name: string): boolean {
  if (typeof value !== 'boolean') throw typeError(`Expected ${name} to be a boolean but received ${describe(value)}`);
  return value;
}

/** Rejects option keys the function does not know (catches typos like `hiddensize`). */
export function expectKnownKeys(options: object, known: readonly string[], name: string): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw typeError(`Unknown option ${name}.${key}; expected one of ${known.join(', ')}`, 'ERR_INVALID_ARG_VALUE');
    }
  }
}

export function expectOptions(value: unknown, name: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw typeError(`Expected ${name} to be an options object but received ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}
