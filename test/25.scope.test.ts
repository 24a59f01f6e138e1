/**
 * Memory of loop iterations: scope() frees what a step created (but what it returns and
 * what the library owns: parameters, gradients, optimizer state), Tensor.empty, and the
 * layer's reserve given back right after backward.
 */
import { expect } from 'chai';
import { Adam, LSTM, Linear, Tensor, keep, memoryStats, runAsync, scope, seed } from '../lib/index';

describe('scope()', () => {
  it('frees the tensors created inside, keeps returned ones, parameters, gradients and optimizer state', () => {
    seed(3);
    const lstm = new LSTM({ inputSize: 4, hiddenSize: 8 });
    const head = new Linear({ inFeatures: 8, outFeatures: 1 });
    const params = [...lstm.parameters(), ...head.parameters()];
    const optimizer = new Adam(params, { lr: 1e-2 });
    const x = Tensor.randn([6, 3, 4]);
    let inside: Tensor[] = [];
    const loss = scope(() => {
      const { output } = lstm.forward(x);
      const y = head.forward(output.select(0, 5));
      const l = y.mul(y).mean();
      l.backward();
      optimizer.step();
      inside = [output, y];
      return l;
    });
    expect(inside.every((t) => t.disposed)).to.equal(true);
    expect(loss.disposed).to.equal(false);
    expect(Number.isFinite(loss.item())).to.equal(true);
    expect(x.disposed).to.equal(false); // created outside
    expect(params.every((p) => !p.disposed && p.grad !== null && !p.grad.disposed)).to.equal(true);
    // a second step reuses everything the first one kept
    const second = scope(() => {
      const l = head.forward(lstm.forward(x).output.select(0, 5)).mul(2).mean();
      l.backward();
      optimizer.step();
      return { value: l.item(), kept: keep(Tensor.ones([2])) };
    });
    expect(Number.isFinite(second.value)).to.equal(true);
    expect(second.kept.toArray()[0]).to.equal(1);
    expect(() => inside[0].toArray()).to.throw(TypeError);
  });

  it('nests: what an inner scope returns belongs to the outer one; views of outside tensors survive', () => {
    const outside = Tensor.from([1, 2, 3, 4], [2, 2]);
    let innerKept: Tensor | null = null;
    let view: Tensor | null = null;
    scope(() => {
      innerKept = scope(() => Tensor.ones([3]).mul(2));
      view = outside.reshape([4]);
      expect(innerKept.disposed).to.equal(false);
      return null;
    });
    expect(innerKept!.disposed).to.equal(true);
    expect(view!.disposed).to.equal(false);
    expect(Array.from(outside.toArray())).to.deep.equal([1, 2, 3, 4]);
  });

  it('returns typed arrays and class instances as they are, without walking their contents', () => {
    // what it protects against: scope() reading every element of a large returned array
    // (seconds for 10M elements), counted here instead of timed
    const reads: PropertyKey[] = [];
    const watch = <T extends object>(target: T): T => new Proxy(target, {
      get: (t, key) => {
        if (key !== 'storage') reads.push(key); // the one property that tells a Tensor apart
        const value = Reflect.get(t, key, t) as unknown;
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(t) : value;
      },
      ownKeys: (t) => { reads.push('ownKeys'); return Reflect.ownKeys(t); },
    });
    class Batch { constructor(readonly values = new Float32Array(4)) {} }
    const typed = watch(new Float32Array(10_000_000));
    const instance = watch(new Batch());
    const returned = scope(() => ({ typed, instance, nested: [typed, new Map([['a', instance]])] }));
    expect(reads).to.deep.equal([]);
    expect(returned.typed.length).to.equal(10_000_000);
    expect(returned.nested[0]).to.equal(typed);
  });

  it('optimizer state restored by loadStateDict inside a scope outlives it (a checkpoint resumed in a scoped loop)', () => {
    seed(5);
    const lstm = new LSTM({ inputSize: 3, hiddenSize: 4 });
    const x = Tensor.randn([5, 2, 3]);
    const step = (optimizer: Adam) => scope(() => {
      const l = lstm.forward(x).output.mean();
      l.backward();
      optimizer.step();
      return l.item();
    });
    const first = new Adam(lstm.parameters(), { lr: 1e-2 });
    step(first);
    const saved = first.stateDict();
    const resumed = new Adam(lstm.parameters(), { lr: 1e-2 });
    scope(() => resumed.loadStateDict(saved));
    expect(() => step(resumed)).to.not.throw();
    const state = resumed.stateDict();
    expect(Object.keys(state.buffers)).to.have.length(2 * lstm.parameters().length);
    expect(Object.values(state.buffers).every((b) => !b.disposed && b.toArray().some((v) => v !== 0))).to.equal(true);
    expect(state.steps.every((s) => s === 2)).to.equal(true);
  });

  it('frees on the way out of an exception too, and checks its argument', () => {
    let made: Tensor | null = null;
    expect(() => scope(() => {
      made = Tensor.zeros([100]);
      throw new Error('boom');
    })).to.throw('boom');
    expect(made!.disposed).to.equal(true);
    expect(() => scope(42 as never)).to.throw(TypeError, /fn/);
  });

  it('in async mode, queued work keeps the memory it uses until it has run', async () => {
    seed(4);
    const lstm = new LSTM({ inputSize: 8, hiddenSize: 16 });
    const x = Tensor.randn([20, 4, 8]);
    const value = await runAsync(() => scope(() => {
      const l = lstm.forward(x).output.sum();
      l.backward();
      return l;
    }));
    expect(lstm.parameters().every((p) => p.grad !== null && Number.isFinite(p.grad.toArray()[0]))).to.equal(true);
    const sync = scope(() => lstm.forward(x).output.sum().item());
    expect(value.item()).to.be.closeTo(sync, 1e-4);
  });

  it('a training loop in a scope reuses cached blocks instead of allocating new ones', () => {
    seed(5);
    const lstm = new LSTM({ inputSize: 64, hiddenSize: 64 });
    const x = Tensor.randn([32, 16, 64]);
    const step = () => scope(() => {
      lstm.zeroGrad();
      lstm.forward(x).output.sum().backward();
      return null;
    });
    step();
    step();
    const before = memoryStats().cachedBytes;
    for (let i = 0; i < 5; ++i) step();
    // every large block of a step came back to the cache and was taken again
    expect(memoryStats().cachedBytes).to.be.at.least(before);
    expect(memoryStats().cachedBytes).to.be.greaterThan(1 << 20);
  });
});

describe('Tensor.empty', () => {
  it('has the shape asked for and is writable; validates like zeros', () => {
    const t = Tensor.empty([2, 3]);
    expect(t.shape).to.deep.equal([2, 3]);
    t.storage.write(new Float32Array([1, 2, 3, 4, 5, 6]), 0);
    expect(Array.from(t.toArray())).to.deep.equal([1, 2, 3, 4, 5, 6]);
    expect(() => Tensor.empty([-1])).to.throw(RangeError);
    expect(() => Tensor.empty('x' as never)).to.throw(TypeError);
  });
});
