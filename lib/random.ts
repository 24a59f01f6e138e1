/**
 * The global random generator. JS draws a 53-bit seed for every random native call
 * (initialization, dropout masks); the native side expands it with a counter-based
 * generator. So the whole random state is one number here: saving and restoring it
 * (getRngState / setRngState) reproduces a run exactly.
 */
import { expectInteger } from './errors';

const DEFAULT_SEED = 67280421; // fixed, like PyTorch's default generator: runs repeat unless seeded otherwise
let counter = DEFAULT_SEED >>> 0;
let high = 0;

function next32(): number {
  // mulberry32 over a Weyl sequence; `high` extends the period past 2^32 draws.
  counter = (counter + 0x6d2b79f5) >>> 0;
  if (counter < 0x6d2b79f5) high = (high + 1) >>> 0;
  let t = (counter ^ Math.imul(high, 0x9e3779b9)) >>> 0;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return (t ^ (t >>> 14)) >>> 0;
}

/** Seeds the global generator (an integer in [0, 2^32)). */
export function manualSeed(seed: number): void {
  expectInteger(seed, 'seed', 0, 0xffffffff);
  counter = seed >>> 0;
  high = 0;
}

/** A fresh 53-bit seed for one native random call. */
export function nextSeed(): number {
  return (next32() & 0x1fffff) * 0x100000000 + next32();
}

/** A uniform number in [0, 1) from the global generator. */
export function random(): number {
  return next32() / 0x100000000;
}

export interface RngState {
  counter: number;
  high: number;
}

export function getRngState(): RngState {
  return { counter, high };
}

export function setRngState(state: RngState): void {
  counter = expectInteger(state?.counter, 'state.counter', 0, 0xffffffff);
  high = expectInteger(state?.high, 'state.high', 0, 0xffffffff);
}
