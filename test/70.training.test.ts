/**
 * Losses, optimizers, clipping and schedules against plain-JS transcriptions of
 * PyTorch's definitions (torch.nn.functional, torch.optim).
 */
import { expect } from 'chai';
import {
  Adam, AdamW, CosineAnnealingLR, LinearLR, RMSprop, SGD, StepLR, Tensor, backends, clipGradNorm, clipGradValue, crossEntropyLoss, huberLoss,
  mseLoss, setNumThreads,
} from '../lib/index';
import { expectClose, randomArray, seededRandom } from './helpers';

const arr = (t: Tensor) => Array.from(t.toArray());

describe('losses', () => {
  it('crossEntropyLoss matches -log softmax[target], with mean/sum/none and ignoreIndex', () => {
    const logits = [[1, 2, 3], [0, 0, 0], [5, -1, 2], [0.5, 0.2, -3]];
    const targets = [2, 0, -100, 1];
    const nll = logits.map((row, i) => {
      const lse = Math.log(row.reduce((s, v) => s + Math.exp(v), 0));
      return targets[i] === -100 ? 0 : lse - row[targets[i]];
    });
    const x = Tensor.from(logits, undefined, { requiresGrad: true });
    expectClose(crossEntropyLoss(x, targets, { reduction: 'none' }).toArray(), nll, 'none', { rtol: 1e-6 });
    expect(crossEntropyLoss(x, targets, { reduction: 'sum' }).item()).to.be.closeTo(nll.reduce((a, b) => a + b), 1e-5);
    const mean = crossEntropyLoss(x, Int32Array.from(targets));
    expect(mean.item()).to.be.closeTo(nll.reduce((a, b) => a + b) / 3, 1e-6); // the ignored row does not count
    mean.backward();
    const grad = x.grad!.toArray();
    logits.forEach((row, i) => {
      const z = row.reduce((s, v) => s + Math.exp(v), 0);
      row.forEach((v, j) => {
        const expected = targets[i] === -100 ? 0 : (Math.exp(v) / z - (j === targets[i] ? 1 : 0)) / 3;
        expect(grad[i * 3 + j]).to.be.closeTo(expected, 1e-6);
      });
    });
  });

  it('crossEntropyLoss with labelSmoothing matches torch.nn.functional.cross_entropy(label_smoothing=0.25)', () => {
    // python3-torch 1.13, float64: the mean over the three counted rows, its gradient, and the per-row losses
    const x = Tensor.from([[1, 2, 3], [0, 0, 0], [5, -1, 2], [0.5, 0.2, -3]], undefined, { requiresGrad: true });
    const targets = [2, 0, -100, 1];
    const loss = crossEntropyLoss(x, targets, { labelSmoothing: 0.25 });
    expect(loss.item()).to.be.closeTo(0.9564793631470383, 1e-6);
    loss.backward();
    expectClose(x.grad!.toArray(), [0.002232413279, 0.05379837924, -0.05603079252, -0.166666666667, 0.083333333333, 0.083333333333, 0, 0, 0,
      0.160438143392, -0.138343993952, -0.02209414944], 'grad', { atol: 1e-6 });
    expectClose(crossEntropyLoss(x, targets, { labelSmoothing: 0.25, reduction: 'none' }).toArray(), [0.657605964444, 1.098612288668, 0, 1.113219836329],
      'none', { rtol: 1e-6 });
    // 0 is the plain loss; out of range is refused
    expect(crossEntropyLoss(x, targets, { labelSmoothing: 0 }).item()).to.equal(crossEntropyLoss(x, targets).item());
    expect(() => crossEntropyLoss(x, targets, { labelSmoothing: 1.5 })).to.throw(RangeError, /labelSmoothing in \[0, 1\]/);
    expect(() => crossEntropyLoss(x, targets, { labelSmoothing: '0.1' as unknown as number })).to.throw(TypeError, /labelSmoothing/);
  });

  it('crossEntropyLoss takes [T, B, V] logits with [T, B] targets and rejects bad targets', () => {
    const logits = Tensor.randn([4, 3, 5]);
    const targets = Tensor.from([[0, 1, 2], [3, 4, 0], [1, 1, 1], [4, 3, 2]]);
    const a = crossEntropyLoss(logits, targets).item();
    const b = crossEntropyLoss(logits.reshape([12, 5]), targets.reshape([12])).item();
    expect(a).to.be.closeTo(b, 1e-6);
    expect(() => crossEntropyLoss(logits, [0, 1])).to.throw(RangeError, /12 targets/);
    expect(() => crossEntropyLoss(logits.reshape([12, 5]), Array(12).fill(5))).to.throw(RangeError, /targets\[0\] = 5/);
    expect(() => crossEntropyLoss(logits.reshape([12, 5]), Array(12).fill(0.5))).to.throw(RangeError, /integer/);
  });

  it('mseLoss and huberLoss match their definitions', () => {
    const input = Tensor.from([0, 1, 3, -2]);
    const target = Tensor.from([0.5, 1, 0, 0]);
    expect(mseLoss(input, target).item()).to.be.closeTo((0.25 + 0 + 9 + 4) / 4, 1e-6);
    expect(mseLoss(input, target, { reduction: 'sum' }).item()).to.be.closeTo(13.25, 1e-5);
    // delta 1: 0.5 d^2 for |d| < 1, |d| - 0.5 otherwise
    expectClose(huberLoss(input, target, { reduction: 'none' }).toArray(), [0.125, 0, 2.5, 1.5], 'huber', { rtol: 1e-6 });
    expect(huberLoss(input, target, { delta: 2 }).item()).to.be.closeTo((0.125 + 0 + 2 * (3 - 1) + 2 * (2 - 1)) / 4, 1e-6);
    expect(() => mseLoss(Tensor.zeros([4, 1]), Tensor.zeros([4]))).to.throw(RangeError, /target of shape \[4, 1\]/);
  });
});

// ---------------------------------------------------------------------------
// torch.optim transcribed (single-tensor, foreach=False), in double precision

type Rule = (p: number[], g: number[], state: Record<string, number[]>, step: number) => void;

const rules: Record<string, { make: (params: Tensor[]) => { step(): void }; rule: Rule }> = {
  'SGD momentum + weight decay + dampening': {
    make: (ps) => new SGD(ps, { lr: 0.1, momentum: 0.9, dampening: 0.1, weightDecay: 0.01 }),
    rule: (p, g, s, step) => p.forEach((_, i) => {
      const d = g[i] + 0.01 * p[i];
      s.buf ??= [];
      s.buf[i] = step === 1 ? d : 0.9 * s.buf[i] + 0.9 * d;
      p[i] -= 0.1 * s.buf[i];
    }),
  },
  'SGD Nesterov': {
    make: (ps) => new SGD(ps, { lr: 0.05, momentum: 0.8, nesterov: true }),
    rule: (p, g, s, step) => p.forEach((_, i) => {
      s.buf ??= [];
      s.buf[i] = step === 1 ? g[i] : 0.8 * s.buf[i] + g[i];
      p[i] -= 0.05 * (g[i] + 0.8 * s.buf[i]);
    }),
  },
  'Adam with L2 weight decay': {
    make: (ps) => new Adam(ps, { lr: 0.01, betas: [0.8, 0.9], eps: 1e-6, weightDecay: 0.1 }),
    rule: (p, g, s, step) => p.forEach((_, i) => {
      const d = g[i] + 0.1 * p[i];
      s.m ??= p.map(() => 0);
      s.v ??= p.map(() => 0);
      s.m[i] = 0.8 * s.m[i] + 0.2 * d;
      s.v[i] = 0.9 * s.v[i] + 0.1 * d * d;
      const mHat = s.m[i] / (1 - 0.8 ** step);
      const vHat = s.v[i] / (1 - 0.9 ** step);
      p[i] -= (0.01 * mHat) / (Math.sqrt(vHat) + 1e-6);
    }),
  },
  'AdamW (decoupled decay 0.01 by default)': {
    make: (ps) => new AdamW(ps, { lr: 0.01 }),
    rule: (p, g, s, step) => p.forEach((_, i) => {
      p[i] *= 1 - 0.01 * 0.01;
      s.m ??= p.map(() => 0);
      s.v ??= p.map(() => 0);
      s.m[i] = 0.9 * s.m[i] + 0.1 * g[i];
      s.v[i] = 0.999 * s.v[i] + 0.001 * g[i] * g[i];
      p[i] -= (0.01 * s.m[i] / (1 - 0.9 ** step)) / (Math.sqrt(s.v[i] / (1 - 0.999 ** step)) + 1e-8);
    }),
  },
  'RMSprop centered with momentum': {
    make: (ps) => new RMSprop(ps, { lr: 0.01, alpha: 0.9, momentum: 0.5, centered: true }),
    rule: (p, g, s) => p.forEach((_, i) => {
      s.sq ??= p.map(() => 0);
      s.ga ??= p.map(() => 0);
      s.buf ??= p.map(() => 0);
      s.sq[i] = 0.9 * s.sq[i] + 0.1 * g[i] * g[i];
      s.ga[i] = 0.9 * s.ga[i] + 0.1 * g[i];
      const avg = Math.sqrt(s.sq[i] - s.ga[i] * s.ga[i]) + 1e-8;
      s.buf[i] = 0.5 * s.buf[i] + g[i] / avg;
      p[i] -= 0.01 * s.buf[i];
    }),
  },
};

describe('optimizers against torch.optim transcribed', () => {
  for (const [name, { make, rule }] of Object.entries(rules)) {
    it(`${name}: five steps`, () => {
      const rand = seededRandom(name.length);
      const start = Array.from(randomArray(rand, 6));
      const p = Tensor.from(Float32Array.from(start), [2, 3], { requiresGrad: true });
      const opt = make([p]);
      const expected = [...Float32Array.from(start)];
      const state: Record<string, number[]> = {};
      for (let step = 1; step <= 5; ++step) {
        const g = Array.from(Float32Array.from(randomArray(rand, 6)));
        p.grad = Tensor.from(Float32Array.from(g), [2, 3]);
        opt.step();
        rule(expected, g, state, step);
      }
      expectClose(p.toArray(), expected, 'parameters', { rtol: 1e-5, atol: 1e-6 });
    });
  }

  it('large parameters (updated in chunks across threads): the same rule at every element, bit-identical for 1 and 2 threads', () => {
    const n = 200_003; // six chunks of 32,768 elements and a partial one
    const threads = backends().cpu.threads;
    try {
      for (const [name, { make, rule }] of Object.entries(rules)) {
        const rand = seededRandom(name.length + 1);
        const start = Float32Array.from(randomArray(rand, n));
        const grads = [1, 2, 3].map(() => Float32Array.from(randomArray(rand, n)));
        const run = (count: number) => {
          setNumThreads(count);
          const p = Tensor.from(start, [n], { requiresGrad: true });
          const opt = make([p]);
          for (const g of grads) {
            p.grad = Tensor.from(g, [n]);
            opt.step();
          }
          return p.toArray();
        };
        const one = run(1);
        const two = run(2);
        expect(Buffer.from(two.buffer).equals(Buffer.from(one.buffer)), `${name}: 2 threads bit-identical to 1`).to.equal(true);
        const expected = Array.from(start);
        const state: Record<string, number[]> = {};
        grads.forEach((g, i) => rule(expected, Array.from(g), state, i + 1));
        expectClose(Array.from(two), expected, name, { rtol: 1e-5, atol: 1e-6 });
      }
    } finally {
      setNumThreads(threads);
    }
  });

  it('many parameters at once (chunks of 16,384 elements across tensors and threads): every rule, bit-identical for 1 and 2 threads', () => {
    const sizes = [40_000, 7, 16_384, 3, 16_385]; // chunks that end inside a tensor, at its end, and tensors smaller than one
    const threads = backends().cpu.threads;
    try {
      for (const [name, { make, rule }] of Object.entries(rules)) {
        const rand = seededRandom(name.length + 2);
        const starts = sizes.map((n) => Float32Array.from(randomArray(rand, n)));
        const grads = [1, 2, 3].map(() => sizes.map((n) => Float32Array.from(randomArray(rand, n))));
        const skipped = (step: number, i: number) => step === 1 && i === 2; // no gradient in one step
        const run = (count: number) => {
          setNumThreads(count);
          const ps = starts.map((start) => Tensor.from(start, [start.length], { requiresGrad: true }));
          const opts = ps.map((p) => make([p])); // one optimizer per tensor: the reference below
          const together = ps.map((p) => Tensor.from(p.toArray(), p.shape, { requiresGrad: true }));
          const opt = make(together);
          grads.forEach((g, step) => {
            ps.forEach((p, i) => {
              p.grad = skipped(step, i) ? null : Tensor.from(g[i], [sizes[i]]);
              together[i].grad = p.grad;
              if (p.grad) opts[i].step();
            });
            opt.step();
          });
          return { alone: ps.map((p) => p.toArray()), together: together.map((p) => p.toArray()) };
        };
        const one = run(1);
        const two = run(2);
        const bytes = (list: Float32Array[]) => Buffer.concat(list.map((a) => Buffer.from(a.buffer)));
        expect(bytes(two.together).equals(bytes(one.together)), `${name}: 2 threads bit-identical to 1`).to.equal(true);
        expect(bytes(two.together).equals(bytes(one.alone)), `${name}: all at once bit-identical to one at a time`).to.equal(true);
        sizes.forEach((n, i) => {
          const expected = Array.from(starts[i]);
          const state: Record<string, number[]> = {};
          let step = 0;
          grads.forEach((g, s) => {
            if (!skipped(s, i)) rule(expected, Array.from(g[i]), state, ++step);
          });
          expectClose(Array.from(two.together[i]), expected, `${name}, tensor ${i}`, { rtol: 1e-5, atol: 1e-6 });
        });
      }
    } finally {
      setNumThreads(threads);
    }
  });

  it('stateDict / loadStateDict continue identically', () => {
    const make = () => Tensor.from([1, -2, 3], [3], { requiresGrad: true });
    const a = make();
    const b = make();
    const optA = new Adam([a], { lr: 0.1 });
    const grads = [[0.1, 0.2, -0.3], [0.5, -0.1, 0.2], [-0.2, 0.3, 0.1]];
    a.grad = Tensor.from(grads[0]);
    optA.step();
    const optB = new Adam([b], { lr: 0.5 });
    b.grad = Tensor.from(grads[0]);
    optB.step();
    // b now follows a: copy a's parameters and optimizer state
    b.storage.write(a.toArray(), 0);
    optB.loadStateDict(optA.stateDict());
    for (const g of grads.slice(1)) {
      a.grad = Tensor.from(g);
      b.grad = Tensor.from(g);
      optA.step();
      optB.step();
    }
    expect(arr(b)).to.deep.equal(arr(a));
    expect(optB.lr).to.equal(0.1);
  });

  it('parameters without a gradient are left alone; bad options are rejected', () => {
    const p = Tensor.from([1, 2], [2], { requiresGrad: true });
    const q = Tensor.from([3], [1], { requiresGrad: true });
    const opt = new SGD([p, q], { lr: 1 });
    p.grad = Tensor.from([1, 1]);
    opt.step();
    expect(arr(p)).to.deep.equal([0, 1]);
    expect(arr(q)).to.deep.equal([3]);
    expect(() => new Adam([p], { lr: -1 })).to.throw(RangeError, /options\.lr/);
    expect(() => new Adam([p], { betas: [1, 0.9] })).to.throw(RangeError, /betas\[0\]/);
    expect(() => new SGD([Tensor.zeros([2])])).to.throw(TypeError, /leaf tensor that requires grad/);
    expect(() => new SGD([])).to.throw(TypeError, /non-empty/);
    expect(() => new SGD([p, p])).to.throw(TypeError, /twice/);
    expect(() => new SGD([p], { lr: 0.1, nesterov: true })).to.throw(RangeError, /Nesterov/);
  });

  it('step() checks every parameter before changing anything', () => {
    const a = Tensor.from([1, 2], [2], { requiresGrad: true });
    const b = Tensor.from([3, 4], [2], { requiresGrad: true });
    const opt = new Adam([a, b], { lr: 0.1 });
    a.grad = Tensor.from([1, 1]);
    b.grad = Tensor.from([1, 1, 1]); // the wrong shape
    expect(() => opt.step()).to.throw(RangeError, /params\[1\]/).with.property('code', 'ERR_SHAPE_MISMATCH');
    expect(opt.stateDict().steps).to.deep.equal([0, 0]);
    expect(arr(a)).to.deep.equal([1, 2]);
    b.grad = Tensor.from([1, 1]);
    opt.step();
    expect(opt.stateDict().steps).to.deep.equal([1, 1]);
    expect(arr(a)[0]).to.be.closeTo(0.9, 1e-6); // Adam's first step moves by lr
  });
});

describe('clipping and schedules', () => {
  it('clipGradNorm returns the global norm and scales all grads together', () => {
    const a = Tensor.zeros([2], { requiresGrad: true });
    const b = Tensor.zeros([1], { requiresGrad: true });
    a.grad = Tensor.from([3, 0]);
    b.grad = Tensor.from([4]);
    expect(clipGradNorm([a, b], 10)).to.be.closeTo(5, 1e-6);
    expect(arr(a.grad)).to.deep.equal([3, 0]);
    expect(clipGradNorm([a, b], 1)).to.be.closeTo(5, 1e-6);
    expectClose(a.grad.toArray(), [0.6, 0], 'a.grad', { rtol: 1e-5 });
    expectClose(b.grad!.toArray(), [0.8], 'b.grad', { rtol: 1e-5 });
    clipGradValue([a, b], 0.7);
    expectClose(b.grad!.toArray(), [0.7], 'clipped', { rtol: 1e-6 });
  });

  it('StepLR, CosineAnnealingLR and LinearLR follow their formulas', () => {
    const p = Tensor.zeros([1], { requiresGrad: true });
    const step = new StepLR(new SGD([p], { lr: 1 }), { stepSize: 2, gamma: 0.5 });
    const lrs = [];
    for (let i = 0; i < 5; ++i) {
      step.step();
      lrs.push(step.getLastLr());
    }
    expect(lrs).to.deep.equal([1, 0.5, 0.5, 0.25, 0.25]);
    const cosine = new CosineAnnealingLR(new SGD([p], { lr: 1 }), { tMax: 4, etaMin: 0.2 });
    cosine.step();
    cosine.step();
    expect(cosine.getLastLr()).to.be.closeTo(0.6, 1e-12);
    const warm = new LinearLR(new SGD([p], { lr: 0.9 }), { startFactor: 1 / 3, totalIters: 3 });
    expect(warm.getLastLr()).to.be.closeTo(0.3, 1e-12);
    warm.step();
    warm.step();
    warm.step();
    warm.step();
    expect(warm.getLastLr()).to.be.closeTo(0.9, 1e-12);
  });
});
