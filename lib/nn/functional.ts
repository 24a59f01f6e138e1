/**
 * Differentiable ops that modules are built from, usable on their own.
 */
import { isGradEnabled, noGrad } from '../core/autograd';
import { describe, expectBoolean, expectInteger, expectNumber, formatShape, rangeError, typeError } from '../core/errors';
import { gemm, native } from '../core/native';
import { nextSeed } from '../core/random';
import { expectSameDevice } from '../core/device';
import { Tensor, emptyOn, expectTensor, record, zerosOn } from '../core/tensor';

/**
 * y = x W^T + b over the last dimension of x: x (..., in), weight (out, in), bias (out).
 */
export function linear(input: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  const x = expectTensor(input, 'input');
  const w = expectTensor(weight, 'weight');
  if (w.ndim !== 2) throw rangeError(`Expected weight of shape [out, in] but received ${formatShape(w.shape)}`, 'ERR_SHAPE_MISMATCH');
  const [outFeatures, inFeatures] = w.shape;
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== inFeatures) {
    throw rangeError(`Expected input of shape [..., ${inFeatures}] but received ${formatShape(x.shape)}`, 'ERR_SHAPE_MISMATCH');
  }
  if (bias !== null) {
    expectTensor(bias, 'bias');
    if (bias.ndim !== 1 || bias.shape[0] !== outFeatures) {
      throw rangeError(`Expected bias of shape [${outFeatures}] but received ${formatShape(bias.shape)}`, 'ERR_SHAPE_MISMATCH');
    }
  }
  const device = expectSameDevice('linear', [['input', x], ['weight', w], ['bias', bias]]);
  const rows = x.size / Math.max(inFeatures, 1) || 0;
  const outShape = [...x.shape.slice(0, -1), outFeatures];
  const out = zerosOn(outShape, device);
  if (bias) {
    // broadcast the bias into every row, then accumulate the product on top
    native.stridedCopy(out.storage, 0, [outFeatures, 1], bias.storage, 0, [0, 1], [rows, outFeatures], false);
  }
  gemm({ a: x.storage, b: w.storage, c: out.storage, m: rows, n: outFeatures, k: inFeatures, transB: true, beta: bias ? 1 : 0 });
  const inputs = bias ? [x, w, bias] : [x, w];
  return record('linear', inputs, out, ([g]) => {
    const grad = g!;
    let gx: Tensor | null = null;
    let gw: Tensor | null = null;
    let gb: Tensor | null = null;
    if (x.requiresGrad) {
      gx = zerosOn(x.shape, device);
      gemm({ a: grad.storage, b: w.storage, c: gx.storage, m: rows, n: inFeatures, k: outFeatures });
    }
    if (w.requiresGrad) {
      gw = zerosOn(w.shape, device);
      gemm({ a: grad.storage, b: x.storage, c: gw.storage, m: outFeatures, n: inFeatures, k: rows, transA: true });
    }
    if (bias?.requiresGrad) gb = grad.reshape([rows, outFeatures]).sum(0);
    return bias ? [gx, gw, gb] : [gx, gw];
  });
}

/**
 * Inverted dropout: in training, zeroes each element with probability p and scales the
 * rest by 1 / (1 - p); otherwise returns the input.
 */
export function dropout(input: Tensor, p = 0.5, training = true): Tensor {
  const x = expectTensor(input, 'input');
  expectNumber(p, 'p');
  if (p < 0 || p >= 1) throw rangeError(`Expected p to be in [0, 1) but received ${p}`);
  expectBoolean(training, 'training');
  if (!training || p === 0) return x;
  const mask = emptyOn(x.shape, x.device);
  native.dropoutMask(mask.storage, mask.size, p, nextSeed());
  const out = noGrad(() => x.mul(mask));
  // the mask is saved for backward only: freed now without a graph, else by backward
  return record('dropout', [x], out, ([g]) => [g!.mul(mask)], [mask.storage]);
}

/**
 * Rows of `weight` (num, dim) picked by integer `indices` (any shape): output is
 * [...indices.shape, dim]. Indices may be a Tensor holding integers or an Int32Array /
 * number[] (1-D).
 */
export function embedding(indices: Tensor | Int32Array | readonly number[], weight: Tensor, paddingIdx: number | null = null): Tensor {
  const w = expectTensor(weight, 'weight');
  if (w.ndim !== 2) throw rangeError(`Expected weight of shape [num, dim] but received ${formatShape(w.shape)}`, 'ERR_SHAPE_MISMATCH');
  const [rows, dim] = w.shape;
  const { values, shape } = toIndices(indices, rows);
  const out = emptyOn([...shape, dim], w.device);
  native.embeddingForward(out.storage, w.storage, values, rows, dim);
  return record('embedding', [w], out, ([g]) => {
    const gw = zerosOn(w.shape, w.device);
    native.embeddingBackward(gw.storage, g!.storage, values, rows, dim);
    if (paddingIdx !== null) native.fill(gw.storage, 0, paddingIdx * dim, dim);
    return [gw];
  });
}

function toIndices(indices: unknown, rows: number): { values: Int32Array; shape: number[] } {
  let values: Int32Array;
  let shape: number[];
  if (indices instanceof Tensor) {
    expectTensor(indices, 'indices');
    const data = indices.toArray();
    values = new Int32Array(data.length);
    shape = indices.shape;
    for (let i = 0; i < data.length; ++i) {
      if (!Number.isInteger(data[i])) throw rangeError(`Expected indices to hold integers but element ${i} is ${data[i]}`);
      values[i] = data[i];
    }
  } else if (indices instanceof Int32Array) {
    values = indices;
    shape = [indices.length];
  } else if (Array.isArray(indices)) {
    values = new Int32Array(indices.length);
    indices.forEach((v, i) => (values[i] = expectInteger(v, `indices[${i}]`, 0, rows - 1)));
    shape = [indices.length];
  } else {
    throw typeError(`Expected indices to be a Tensor, an Int32Array or an array of integers but received ${describe(indices)}`);
  }
  for (let i = 0; i < values.length; ++i) {
    if (values[i] < 0 || values[i] >= rows) {
      throw rangeError(`Expected indices in [0, ${rows - 1}] but indices[${i}] is ${values[i]}`);
    }
  }
  return { values, shape };
}

export { isGradEnabled };
