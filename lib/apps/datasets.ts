/**
 * Small synthetic data sets for tests, examples and benchmarks.
 */
import { expectInteger, expectOptions, expectKnownKeys } from '../core/errors';
import { Tensor } from '../core/tensor';

/**
 * The adding problem (Hochreiter & Schmidhuber, 1997): each step carries a random
 * value in [0, 1) and a marker; exactly two steps are marked, one in each half of the
 * sequence, and the target is the sum of their values. Predicting the mean (1) gives
 * an MSE of 1/6 (about 0.167); solving it needs memory across the whole sequence.
 *
 * Returns inputs [samples, steps, 2] and targets [samples, 1].
 */
export function addingProblem(options: { samples: number; steps: number; seed?: number }): { inputs: Tensor; targets: Tensor } {
  const opts = expectOptions(options, 'options');
  expectKnownKeys(opts, ['samples', 'steps', 'seed'], 'options');
  const samples = expectInteger(opts.samples, 'options.samples', 1);
  const steps = expectInteger(opts.steps, 'options.steps', 2);
  let state = (opts.seed === undefined ? 1 : expectInteger(opts.seed, 'options.seed', 0, 0x7ffffffe)) + 1;
  const rand = () => {
    state = (state * 48271) % 0x7fffffff; // Park-Miller: independent of the library's generator
    return state / 0x7fffffff;
  };
  const x = new Float32Array(samples * steps * 2);
  const y = new Float32Array(samples);
  const half = Math.floor(steps / 2);
  for (let i = 0; i < samples; ++i) {
    for (let t = 0; t < steps; ++t) x[(i * steps + t) * 2] = rand();
    const first = Math.floor(rand() * half);
    const second = half + Math.floor(rand() * (steps - half));
    x[(i * steps + first) * 2 + 1] = 1;
    x[(i * steps + second) * 2 + 1] = 1;
    y[i] = x[(i * steps + first) * 2] + x[(i * steps + second) * 2];
  }
  return { inputs: Tensor.from(x, [samples, steps, 2]), targets: Tensor.from(y, [samples, 1]) };
}
