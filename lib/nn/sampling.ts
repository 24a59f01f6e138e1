/**
 * Drawing a token from logits: sampleLogits (one draw, in JS) is the reference that the native
 * sampling loop (SequenceModel#sample(), cpp/step.h's sample_logits) reproduces draw for draw.
 */
import { expectInteger, expectNumber, rangeError } from '../core/errors';
import { random } from '../core/random';

// sampleLogits' weights, kept between calls (generate() samples once per character)
let sampleWeights = new Float64Array(0);

/** Samples an index from logits with temperature and optional top-k, using the global generator. */
export function sampleLogits(logits: ArrayLike<number>, temperature = 1, topK?: number): number {
  expectNumber(temperature, 'temperature');
  if (temperature < 0) throw rangeError(`Expected temperature to be >= 0 but received ${temperature}`);
  const n = logits.length;
  const keepAll = topK === undefined || expectInteger(topK, 'topK', 1) >= n;
  if (temperature === 0 || topK === 1) {
    let best = 0;
    for (let i = 1; i < n; ++i) if (logits[i] > logits[best]) best = i;
    return best;
  }
  if (keepAll) {
    // every candidate, in index order (no sort: this runs once per generated token)
    let max = -Infinity;
    for (let i = 0; i < n; ++i) if (logits[i] > max) max = logits[i];
    if (sampleWeights.length < n) sampleWeights = new Float64Array(n);
    const weights = sampleWeights;
    let total = 0;
    for (let i = 0; i < n; ++i) total += weights[i] = Math.exp((logits[i] - max) / temperature);
    let r = random() * total;
    let last = -1;
    for (let i = 0; i < n; ++i) {
      if (!(weights[i] > 0)) continue;
      r -= weights[i];
      if (r <= 0) return i;
      last = i;
    }
    // rounding left r a hair above 0: the last candidate that can be drawn at all
    return Math.max(last, 0);
  }
  const order = [...Array(n).keys()].sort((a, b) => logits[b] - logits[a]);
  const keep = Math.min(n, topK!);
  const kept = order.slice(0, keep);
  const max = logits[kept[0]];
  const weights = kept.map((i) => Math.exp((logits[i] - max) / temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let r = random() * total;
  for (let k = 0; k < kept.length; ++k) {
    r -= weights[k];
    if (r <= 0 && weights[k] > 0) return kept[k];
  }
  // rounding left r a hair above 0: the least likely candidate that can be drawn at all
  let last = kept.length - 1;
  while (last > 0 && !(weights[last] > 0)) last -= 1;
  return kept[last];
}
