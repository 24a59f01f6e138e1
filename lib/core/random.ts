/**
 * Random generators. JS draws a 53-bit seed for every random native call (initialization,
 * dropout masks); the native side expands it with a counter-based generator. So a
 * generator's whole state is two numbers: saving and restoring it reproduces a run exactly.
 *
 * There is one global generator (manualSeed / getRngState / setRngState), and a `current`
 * one that every draw uses: the global one, except inside `generator.run(fn)`. fit() runs
 * its shuffling and its forward passes under a generator of its own, so two fits in
 * flight at once (interleaved at their awaits) draw exactly what each would draw alone.
 */
import { expectInteger } from './errors';

const DEFAULT_SEED = 67280421; // fixed, like PyTorch's default generator: runs repeat unless seeded otherwise

export interface RngState {
  counter: number;
  high: number;
}

export class Generator {
  private counter: number;
  private high = 0;

  constructor(seed: number = DEFAULT_SEED) {
    this.counter = expectInteger(seed, 'seed', 0, 0xffffffff) >>> 0;
  }

  /** Restarts the sequence from `seed` (an integer in [0, 2^32)). */
  manualSeed(seed: number): this {
    this.counter = expectInteger(seed, 'seed', 0, 0xffffffff) >>> 0;
    this.high = 0;
    return this;
  }

  next32(): number {
    // mulberry32 over a Weyl sequence; `high` extends the period past 2^32 draws.
    this.counter = (this.counter + 0x6d2b79f5) >>> 0;
    if (this.counter < 0x6d2b79f5) this.high = (this.high + 1) >>> 0;
    let t = (this.counter ^ Math.imul(this.high, 0x9e3779b9)) >>> 0;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  getState(): RngState {
    return { counter: this.counter, high: this.high };
  }

  setState(state: RngState): void {
    this.counter = expectInteger(state?.counter, 'state.counter', 0, 0xffffffff);
    this.high = expectInteger(state?.high, 'state.high', 0, 0xffffffff);
  }

  /** Runs `fn` (synchronously) with this generator as the one every random draw uses. */
  run<R>(fn: () => R): R {
    const previous = current;
    current = this;
    try {
      return fn();
    } finally {
      current = previous;
    }
  }
}

const globalGenerator = new Generator();
let current: Generator = globalGenerator;

/** Seeds the global generator (an integer in [0, 2^32)). */
export function manualSeed(seed: number): void {
  globalGenerator.manualSeed(seed);
}

/** A fresh 53-bit seed for one native random call, from the current generator. */
export function nextSeed(): number {
  return (current.next32() & 0x1fffff) * 0x100000000 + current.next32();
}

/** A uniform number in [0, 1) from the current generator. */
export function random(): number {
  return current.next32() / 0x100000000;
}

/**
 * @internal Runs `fn` on the current generator's state as a Uint32Array [counter, high] (for a native
 * loop that draws from the same stream: cpp/step.h's RandomStream) and keeps the state it leaves.
 */
export function drawNatively<R>(fn: (state: Uint32Array) => R): R {
  const { counter, high } = current.getState();
  const state = Uint32Array.of(counter, high);
  try {
    return fn(state);
  } finally {
    current.setState({ counter: state[0], high: state[1] });
  }
}

export function getRngState(): RngState {
  return globalGenerator.getState();
}

export function setRngState(state: RngState): void {
  globalGenerator.setState(state);
}
