/** Shapes and strides: the checks and arithmetic every op shares (no memory, no devices). */
import { describe, expectInteger, formatShape, rangeError, typeError } from './errors';

const MAX_ELEMENTS = 2 ** 34;

export interface NestedArray extends ReadonlyArray<number | NestedArray> {}

export function numel(shape: readonly number[]): number {
  return shape.reduce((n, size) => n * size, 1);
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let stride = 1;
  for (let k = shape.length - 1; k >= 0; --k) {
    strides[k] = stride;
    stride *= shape[k];
  }
  return strides;
}

/** Strides that read `shape` (contiguous) broadcast against `outShape`. */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const own = contiguousStrides(shape);
  const offset = outShape.length - shape.length;
  return outShape.map((size, k) => {
    const j = k - offset;
    if (j < 0 || shape[j] === 1) return 0;
    return own[j];
  });
}

export function broadcastShapes(a: readonly number[], b: readonly number[], op: string): number[] {
  const rank = Math.max(a.length, b.length);
  const out = new Array<number>(rank);
  for (let k = 0; k < rank; ++k) {
    const sa = a[a.length - rank + k] ?? 1;
    const sb = b[b.length - rank + k] ?? 1;
    if (sa !== sb && sa !== 1 && sb !== 1) {
      throw rangeError(
        `${op}: shapes ${formatShape(a)} and ${formatShape(b)} cannot be broadcast together`,
        'ERR_SHAPE_MISMATCH',
      );
    }
    out[k] = sa === 1 ? sb : sa;
  }
  return out;
}

export function normalizeDim(dim: unknown, rank: number, name = 'dim'): number {
  expectInteger(dim, name, -Math.max(rank, 1), Math.max(rank, 1) - 1);
  const d = dim as number;
  return d < 0 ? d + rank : d;
}

export function checkShape(shape: unknown, name = 'shape'): number[] {
  if (!Array.isArray(shape)) throw typeError(`Expected ${name} to be an array of sizes but received ${describe(shape)}`);
  if (shape.length > 8) throw rangeError(`Expected ${name} to have at most 8 dimensions but received ${shape.length}`);
  shape.forEach((size, k) => expectInteger(size, `${name}[${k}]`, 0));
  if (numel(shape) > MAX_ELEMENTS) throw rangeError(`${name} ${formatShape(shape)} has too many elements`);
  return [...shape];
}

export function inferShape(data: unknown): number[] {
  const shape: number[] = [];
  let level: unknown = data;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0];
  }
  return shape;
}

export function flatten(data: NestedArray, shape: number[], out: Float32Array): void {
  let index = 0;
  const walk = (value: unknown, depth: number, path: string): void => {
    if (depth === shape.length) {
      if (typeof value !== 'number') throw typeError(`Expected data${path} to be a number but received ${describe(value)}`);
      out[index++] = value;
      return;
    }
    if (!Array.isArray(value) || value.length !== shape[depth]) {
      throw rangeError(`data${path} is ragged: expected an array of length ${shape[depth]}`, 'ERR_SHAPE_MISMATCH');
    }
    value.forEach((v, i) => walk(v, depth + 1, `${path}[${i}]`));
  };
  walk(data, 0, '');
}
