/**
 * Tensor creation, the ops models and losses use (values checked by hand), and every
 * op's gradient against central finite differences.
 */
import { expect } from 'chai';
import { Tensor, backward, memoryStats, noGrad } from '../lib/index';
import { expectClose, randomArray, seededRandom } from './helpers';

const arr = (t: Tensor) => Array.from(t.toArray());

/**
 * Checks the autograd gradient of sum(f(inputs) * w) (w fixed random weights) with
 * respect to every input against central differences in float32.
 */
function gradCheck(f: (...xs: Tensor[]) => Tensor, shapes: number[][], seed = 1, positive = false): void {
  const rand = seededRandom(seed);
  const data = shapes.map((s) => {
    const values = randomArray(rand, s.reduce((a, b) => a * b, 1));
    return positive ? values.map((v) => Math.abs(v) + 0.5) : values;
  });
  const inputs = data.map((d, i) => Tensor.from(Float32Array.from(d), shapes[i], { requiresGrad: true }));
  const out = f(...inputs);
  const weights = Tensor.from(Float32Array.from(randomArray(rand, out.size)), out.shape);
  out.mul(weights).sum().backward();
  const lossAt = (k: number, i: number, delta: number): number =>
    noGrad(() => {
      const moved = data.map((d, j) => {
        const copy = Float32Array.from(d);
        if (j === k) copy[i] += delta;
        return Tensor.from(copy, shapes[j]);
      });
      return f(...moved).mul(weights).sum().item();
    });
  const eps = 1e-2;
  inputs.forEach((input, k) => {
    const numeric = new Float64Array(input.size);
    for (let i = 0; i < input.size; ++i) numeric[i] = (lossAt(k, i, eps) - lossAt(k, i, -eps)) / (2 * eps);
    expectClose(input.grad!.toArray(), numeric, `grad of input ${k}`, { rtol: 2e-2, atol: 2e-3 });
  });
}

describe('Tensor creation', () => {
  it('from a Float32Array with a shape, or from nested arrays', () => {
    const a = Tensor.from(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
    expect(a.shape).to.deep.equal([2, 3]);
    expect(a.device).to.equal('cpu');
    expect(arr(a)).to.deep.equal([1, 2, 3, 4, 5, 6]);
    const b = Tensor.from([[1, 2], [3, 4]]);
    expect(b.shape).to.deep.equal([2, 2]);
    expect(arr(Tensor.from([1, 2, 3]))).to.deep.equal([1, 2, 3]);
  });

  it('toArray() is a copy', () => {
    const a = Tensor.from([1, 2]);
    const data = a.toArray();
    data[0] = 42;
    expect(arr(a)).to.deep.equal([1, 2]);
  });

  it('toArray(out) writes into out and returns it; a wrong out is a TypeError naming the size', () => {
    const a = Tensor.from([[1, 2, 3], [4, 5, 6]]);
    const out = new Float32Array(6).fill(-1);
    expect(a.toArray(out)).to.equal(out);
    expect(Array.from(out)).to.deep.equal([1, 2, 3, 4, 5, 6]);
    a.mul(2).toArray(out);
    expect(Array.from(out)).to.deep.equal([2, 4, 6, 8, 10, 12]);
    expect(() => a.toArray(new Float32Array(5))).to.throw(TypeError, /Float32Array of 6 elements but received a Float32Array of 5/);
    expect(() => a.toArray(new Float64Array(6) as unknown as Float32Array)).to.throw(TypeError, /Float64Array/);
    expect(() => a.toArray([0, 0, 0, 0, 0, 0] as unknown as Float32Array)).to.throw(TypeError, /an Array of length 6/);
  });

  it('zeros, ones, full, scalar, rand within bounds, randn with the right moments', () => {
    expect(arr(Tensor.zeros([2, 2]))).to.deep.equal([0, 0, 0, 0]);
    expect(arr(Tensor.ones([3]))).to.deep.equal([1, 1, 1]);
    expect(arr(Tensor.full([2], 2.5))).to.deep.equal([2.5, 2.5]);
    expect(Tensor.scalar(3).shape).to.deep.equal([]);
    expect(Tensor.scalar(3).item()).to.equal(3);
    const u = Tensor.rand([1000], { low: -2, high: 3 }).toArray();
    expect(Math.min(...u)).to.be.at.least(-2);
    expect(Math.max(...u)).to.be.below(3);
    const n = Tensor.randn([20000]).toArray();
    const mean = n.reduce((s, v) => s + v, 0) / n.length;
    const variance = n.reduce((s, v) => s + (v - mean) ** 2, 0) / n.length;
    expect(Math.abs(mean)).to.be.below(0.03);
    expect(Math.abs(variance - 1)).to.be.below(0.05);
  });

  it('reshape and view share memory and infer -1', () => {
    const a = Tensor.from([1, 2, 3, 4, 5, 6], [6]);
    const b = a.reshape([2, -1]);
    expect(b.shape).to.deep.equal([2, 3]);
    expect(a.view([3, 2]).storage).to.equal(a.storage);
    expect(() => a.reshape([4, -1])).to.throw(RangeError, /Cannot reshape a tensor of shape \[6\] into \[4, -1\]/);
  });

  it('dispose frees memory and later use throws a TypeError', () => {
    const a = Tensor.ones([3]);
    a.dispose();
    expect(a.disposed).to.equal(true);
    expect(() => a.toArray()).to.throw(TypeError, /disposed/);
    expect(() => Tensor.ones([3]).add(a)).to.throw(TypeError, /disposed/);
  });
});

describe('Tensor ops: values', () => {
  const a = Tensor.from([[1, 2, 3], [4, 5, 6]]);
  it('add/sub/mul/div with broadcasting and with numbers', () => {
    const row = Tensor.from([10, 20, 30]);
    expect(arr(a.add(row))).to.deep.equal([11, 22, 33, 14, 25, 36]);
    expect(arr(a.sub(Tensor.from([[1], [2]])))).to.deep.equal([0, 1, 2, 2, 3, 4]);
    expect(arr(a.mul(2))).to.deep.equal([2, 4, 6, 8, 10, 12]);
    expect(arr(a.div(Tensor.from([1, 2, 4])))).to.deep.equal([1, 1, 0.75, 4, 2.5, 1.5]);
    expect(arr(a.add(1).sub(1))).to.deep.equal(arr(a));
  });

  it('matmul: 2-D, N-D by 2-D, batched', () => {
    const b = Tensor.from([[1, 0], [0, 1], [1, 1]]);
    expect(arr(a.matmul(b))).to.deep.equal([4, 5, 10, 11]);
    const x = Tensor.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [2, 2, 3]);
    expect(x.matmul(b).shape).to.deep.equal([2, 2, 2]);
    expect(arr(x.matmul(b))).to.deep.equal([4, 5, 10, 11, 16, 17, 22, 23]);
    const y = Tensor.from([1, 0, 0, 1, 2, 0, 0, 2], [2, 2, 2]);
    expect(arr(Tensor.from([1, 2, 3, 4, 1, 2, 3, 4], [2, 2, 2]).matmul(y))).to.deep.equal([1, 2, 3, 4, 2, 4, 6, 8]);
  });

  it('sum and mean over all, one or several dims, keepDim', () => {
    expect(a.sum().item()).to.equal(21);
    expect(arr(a.sum(0))).to.deep.equal([5, 7, 9]);
    expect(arr(a.sum(1))).to.deep.equal([6, 15]);
    expect(a.sum(1, true).shape).to.deep.equal([2, 1]);
    expect(a.sum([0, 1]).item()).to.equal(21);
    expect(a.mean().item()).to.equal(3.5);
    expect(arr(a.mean(-1))).to.deep.equal([2, 5]);
  });

  it('transpose, permute, select, slice, concat', () => {
    expect(arr(a.transpose(0, 1))).to.deep.equal([1, 4, 2, 5, 3, 6]);
    expect(arr(a.t())).to.deep.equal([1, 4, 2, 5, 3, 6]);
    const x = Tensor.from([...Array(24).keys()], [2, 3, 4]);
    const p = x.permute([2, 0, 1]);
    expect(p.shape).to.deep.equal([4, 2, 3]);
    expect(arr(p).slice(0, 6)).to.deep.equal([0, 4, 8, 12, 16, 20]);
    expect(arr(a.select(0, 1))).to.deep.equal([4, 5, 6]);
    expect(arr(a.select(1, -1))).to.deep.equal([3, 6]);
    expect(arr(a.slice(1, 1, 3))).to.deep.equal([2, 3, 5, 6]);
    expect(arr(Tensor.concat([a, Tensor.from([[7, 8, 9]])], 0))).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(arr(Tensor.concat([a, Tensor.from([[0], [0]])], 1))).to.deep.equal([1, 2, 3, 0, 4, 5, 6, 0]);
  });

  it('tanh, sigmoid, relu, exp, log', () => {
    const x = Tensor.from([-1, 0, 2]);
    expectClose(x.tanh().toArray(), [-1, 0, 2].map(Math.tanh), 'tanh', { rtol: 1e-6 });
    expectClose(x.sigmoid().toArray(), [-1, 0, 2].map((v) => 1 / (1 + Math.exp(-v))), 'sigmoid', { rtol: 1e-6 });
    expect(arr(x.relu())).to.deep.equal([0, 0, 2]);
    expectClose(x.exp().toArray(), [-1, 0, 2].map(Math.exp), 'exp', { rtol: 1e-6 });
    expectClose(Tensor.from([1, 2]).log().toArray(), [0, Math.log(2)], 'log', { rtol: 1e-6 });
  });

  it('softmax and logSoftmax are stable and normalized along any dim', () => {
    const x = Tensor.from([[1000, 1001, 1002], [-5, 0, 5]]);
    const s = x.softmax();
    const e = [Math.exp(-2), Math.exp(-1), 1];
    const z = e[0] + e[1] + e[2];
    expectClose(s.toArray().slice(0, 3), e.map((v) => v / z), 'softmax', { rtol: 1e-6 });
    expectClose(x.logSoftmax().toArray().slice(0, 3), e.map((v) => Math.log(v / z)), 'logSoftmax', { rtol: 1e-6 });
    const cols = x.softmax(0).sum(0).toArray();
    expectClose(cols, [1, 1, 1], 'softmax(0) column sums', { rtol: 1e-6 });
  });
});

describe('Tensor ops: gradients against finite differences', () => {
  const cases: [string, (...xs: Tensor[]) => Tensor, number[][], boolean?][] = [
    ['add (broadcast)', (a, b) => a.add(b), [[3, 4], [4]]],
    ['sub (broadcast)', (a, b) => a.sub(b), [[3, 1], [3, 4]]],
    ['mul (broadcast)', (a, b) => a.mul(b), [[2, 3, 4], [3, 1]]],
    ['div', (a, b) => a.div(b), [[3, 4], [3, 4]], true],
    ['matmul 2-D', (a, b) => a.matmul(b), [[3, 4], [4, 5]]],
    ['matmul N-D x 2-D', (a, b) => a.matmul(b), [[2, 3, 4], [4, 2]]],
    ['matmul batched', (a, b) => a.matmul(b), [[2, 3, 4], [2, 4, 2]]],
    ['sum(dim)', (a) => a.sum(1), [[3, 4, 2]]],
    ['mean(dims, keepDim)', (a) => a.mean([0, 2], true), [[3, 4, 2]]],
    ['transpose', (a) => a.transpose(0, 2), [[2, 3, 4]]],
    ['select', (a) => a.select(1, 2), [[2, 3, 4]]],
    ['slice', (a) => a.slice(2, 1, 3), [[2, 3, 4]]],
    ['concat', (a, b) => Tensor.concat([a, b], 1), [[2, 3], [2, 2]]],
    ['reshape', (a) => a.reshape([4, 3]), [[2, 6]]],
    ['tanh', (a) => a.tanh(), [[3, 4]]],
    ['sigmoid', (a) => a.sigmoid(), [[3, 4]]],
    ['relu', (a) => a.relu(), [[3, 4]]],
    ['exp', (a) => a.exp(), [[3, 4]]],
    ['log', (a) => a.log(), [[3, 4]], true],
    ['softmax', (a) => a.softmax(), [[3, 5]]],
    ['softmax(dim 0)', (a) => a.softmax(0), [[3, 5]]],
    ['logSoftmax', (a) => a.logSoftmax(), [[3, 5]]],
    ['a graph reusing a tensor', (a, b) => a.mul(b).add(a.tanh()).sum(1).mul(a.sum(1)), [[3, 4], [3, 4]]],
  ];
  cases.forEach(([name, f, shapes, positive], i) => {
    it(name, () => gradCheck(f, shapes, i + 1, positive));
  });
});

describe('autograd', () => {
  it('.grad accumulates across backward calls', () => {
    const x = Tensor.from([1, 2, 3], [3], { requiresGrad: true });
    x.mul(2).sum().backward();
    x.mul(3).sum().backward();
    expect(arr(x.grad!)).to.deep.equal([5, 5, 5]);
  });

  it('a fresh gradient becomes .grad without a copy; a shared one is copied', () => {
    // add hands the same gradient to both of its inputs: two leaves must not share memory
    const a = Tensor.from([1, 2], [2], { requiresGrad: true });
    const b = Tensor.from([3, 4], [2], { requiresGrad: true });
    a.add(b).sum().backward();
    a.mul(5).sum().backward(); // accumulates into a.grad in place
    expect(arr(a.grad!)).to.deep.equal([6, 6]);
    expect(arr(b.grad!)).to.deep.equal([1, 1]);
    // ... nor may one leaf's two gradients alias the same memory
    const c = Tensor.from([1, 2], [2], { requiresGrad: true });
    c.add(c).sum().backward();
    expect(arr(c.grad!)).to.deep.equal([2, 2]);
    // a gradient the caller passed in stays the caller's (a view of it reaches the leaf)
    const d = Tensor.from([1, 2, 3, 4], [2, 2], { requiresGrad: true });
    const seedGrad = Tensor.from([1, 1, 1, 1], [4]);
    backward([d.reshape([4])], [seedGrad]);
    backward([d.reshape([4])], [seedGrad]);
    expect(arr(d.grad!)).to.deep.equal([2, 2, 2, 2]);
    expect(arr(seedGrad)).to.deep.equal([1, 1, 1, 1]);
    // the fresh one: backward allocates the expanded sum gradient and mul's result (kept as .grad)
    const n = 1 << 20;
    const w = Tensor.zeros([n], { requiresGrad: true });
    const loss = w.mul(2).sum();
    (global as { gc?: () => void }).gc?.();
    const before = memoryStats().allocatedBytes;
    loss.backward();
    const grown = memoryStats().allocatedBytes - before;
    expect(grown).to.be.below(2.5 * 4 * n); // a copy would make it 3 x 4n
    expect(arr(w.grad!.slice(0, 0, 3))).to.deep.equal([2, 2, 2]);
  });

  it('backward(tensors, grads) takes several roots and explicit gradients', () => {
    const x = Tensor.from([1, 2], [2], { requiresGrad: true });
    const y1 = x.mul(x);
    const y2 = x.mul(3);
    backward([y1, y2], [Tensor.from([1, 1]), Tensor.from([2, 0])]);
    expect(arr(x.grad!)).to.deep.equal([2 * 1 + 6, 2 * 2]);
  });

  it('backward() without grad needs a one-element tensor', () => {
    const x = Tensor.from([1, 2], [2], { requiresGrad: true });
    expect(() => x.mul(2).backward()).to.throw(TypeError, /one-element/);
    expect(() => backward([x.mul(2)], [Tensor.zeros([3])])).to.throw(RangeError, /shape \[2\] but received \[3\]/);
  });

  it('noGrad records nothing; detach cuts the graph', () => {
    const x = Tensor.from([1, 2], [2], { requiresGrad: true });
    const y = noGrad(() => x.mul(2));
    expect(y.requiresGrad).to.equal(false);
    const z = x.mul(2).detach();
    expect(z.requiresGrad).to.equal(false);
    expect(z.storage).to.not.equal(undefined);
    const w = x.detach().mul(x).sum();
    w.backward();
    expect(arr(x.grad!)).to.deep.equal([1, 2]);
  });

  it('a freed graph cannot be walked twice unless retainGraph', () => {
    const x = Tensor.from([1], [1], { requiresGrad: true });
    const y = x.mul(2).sum();
    y.backward(undefined, { retainGraph: true });
    y.backward();
    expect(arr(x.grad!)).to.deep.equal([4]);
    expect(() => y.backward()).to.throw(TypeError, /second time/);
  });
});
