/**
 * Test helpers: closeness checks that print the worst element, a deterministic RNG,
 * and a composition of the native double-precision reference into stacked layers.
 */
import * as fs from 'node:fs';
import { expect } from 'chai';
import puppeteer, { Browser } from 'puppeteer-core';
import { Tensor } from '../lib/index';
import { native } from '../lib/core/native';

/**
 * In a before() hook: marks the suite pending, saying why, where CUDA is not usable (never
 * passed silently). Returns nothing; mocha skips the suite's tests.
 */
export function pendingWithoutCuda(context: Mocha.Context, what: string): void {
  const cuda = native.backends().cuda;
  if (!cuda.compiled || cuda.deviceCount === 0) {
    console.log(`      (${what} pending: ${cuda.reason ?? 'not compiled in'})`);
    context.skip();
  }
}

/** Asserts |a - b| <= atol + rtol * |b| elementwise, reporting the worst mismatch. */
export function expectClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  { rtol = 1e-3, atol = 1e-5 }: { rtol?: number; atol?: number } = {},
): number {
  expect(actual.length, `${what}: length`).to.equal(expected.length);
  let worst = -1;
  let worstExcess = 0;
  let maxDiff = 0;
  for (let i = 0; i < actual.length; ++i) {
    const diff = Math.abs(actual[i] - expected[i]);
    maxDiff = Math.max(maxDiff, diff);
    const excess = diff - (atol + rtol * Math.abs(expected[i]));
    if (!(excess <= worstExcess)) {
      worstExcess = excess;
      worst = i;
    }
  }
  if (worst >= 0) {
    expect.fail(`${what}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} (max |diff| ${maxDiff})`);
  }
  return maxDiff;
}

/** A small seeded generator (mulberry32) for test data independent of the library's. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomArray(rand: () => number, n: number, scale = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; ++i) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

/** float32-rounded copy, so the float32 kernels and the double reference see the same numbers. */
export function roundToF32(values: Float64Array): Float64Array {
  return Float64Array.from(Float32Array.from(values));
}

export function tensorOf(values: Float64Array, shape: number[], requiresGrad = false): Tensor {
  return Tensor.from(Float32Array.from(values), shape, { requiresGrad });
}

export type CellName = 'rnn_tanh' | 'rnn_relu' | 'lstm' | 'gru';
export const CELL_CODE: Record<CellName, number> = { rnn_tanh: 0, rnn_relu: 1, lstm: 2, gru: 3 };
export const GATES: Record<CellName, number> = { rnn_tanh: 1, rnn_relu: 1, lstm: 4, gru: 3 };

export interface StackConfig {
  cell: CellName;
  T: number;
  B: number;
  I: number;
  H: number;
  L: number;
  D: number;
  bias: boolean;
}

export interface StackResult {
  y: Float64Array;
  hN: Float64Array;
  cN: Float64Array | null;
}

export interface StackGrads {
  dx: Float64Array;
  dh0: Float64Array;
  dc0: Float64Array | null;
  /** by PyTorch parameter name */
  params: Map<string, Float64Array>;
}

export function paramNames(cfg: StackConfig, layer: number, d: number): string[] {
  const suffix = `_l${layer}${d === 1 ? '_reverse' : ''}`;
  return [`weight_ih${suffix}`, `weight_hh${suffix}`, `bias_ih${suffix}`, `bias_hh${suffix}`];
}

function layerWeights(cfg: StackConfig, params: Map<string, Float64Array>, layer: number): (Float64Array | null)[] {
  const out: (Float64Array | null)[] = [];
  for (let d = 0; d < cfg.D; ++d) {
    const names = paramNames(cfg, layer, d);
    out.push(params.get(names[0])!, params.get(names[1])!, cfg.bias ? params.get(names[2])! : null, cfg.bias ? params.get(names[3])! : null);
  }
  return out;
}

function stateRows(values: Float64Array | null, cfg: StackConfig, layer: number): Float64Array | null {
  if (!values) return null;
  const rows = cfg.D * cfg.B * cfg.H;
  return values.slice(layer * rows, (layer + 1) * rows);
}

/** Stacked layers, composed from the native double reference (no dropout). */
export function referenceStack(
  cfg: StackConfig,
  params: Map<string, Float64Array>,
  x: Float64Array,
  h0: Float64Array | null,
  c0: Float64Array | null,
  lengths: Int32Array | null,
): StackResult & { inputs: Float64Array[] } {
  const code = CELL_CODE[cfg.cell];
  const state = cfg.L * cfg.D * cfg.B * cfg.H;
  const hN = new Float64Array(state);
  const cN = cfg.cell === 'lstm' ? new Float64Array(state) : null;
  const inputs: Float64Array[] = [];
  let input = x;
  for (let layer = 0; layer < cfg.L; ++layer) {
    inputs.push(input);
    const inSize = layer === 0 ? cfg.I : cfg.D * cfg.H;
    const out = native.referenceForward(code, cfg.T, cfg.B, inSize, cfg.H, cfg.D, input, lengths,
      stateRows(h0, cfg, layer), stateRows(c0, cfg, layer), layerWeights(cfg, params, layer));
    hN.set(out.hN, layer * cfg.D * cfg.B * cfg.H);
    if (cN) cN.set(out.cN!, layer * cfg.D * cfg.B * cfg.H);
    input = out.y;
  }
  return { y: input, hN, cN, inputs };
}

/** Gradients of sum(y*dy) + sum(hN*dhN) + sum(cN*dcN) through the reference stack. */
export function referenceStackBackward(
  cfg: StackConfig,
  params: Map<string, Float64Array>,
  x: Float64Array,
  h0: Float64Array | null,
  c0: Float64Array | null,
  lengths: Int32Array | null,
  dy: Float64Array,
  dhN: Float64Array,
  dcN: Float64Array | null,
): StackGrads {
  const code = CELL_CODE[cfg.cell];
  const { inputs } = referenceStack(cfg, params, x, h0, c0, lengths);
  const state = cfg.L * cfg.D * cfg.B * cfg.H;
  const dh0 = new Float64Array(state);
  const dc0 = cfg.cell === 'lstm' ? new Float64Array(state) : null;
  const grads = new Map<string, Float64Array>();
  let upstream = dy;
  for (let layer = cfg.L - 1; layer >= 0; --layer) {
    const inSize = layer === 0 ? cfg.I : cfg.D * cfg.H;
    const out = native.referenceBackward(code, cfg.T, cfg.B, inSize, cfg.H, cfg.D, upstream, stateRows(dhN, cfg, layer),
      stateRows(dcN, cfg, layer), inputs[layer], lengths, stateRows(h0, cfg, layer), stateRows(c0, cfg, layer),
      layerWeights(cfg, params, layer));
    dh0.set(out.dh0, layer * cfg.D * cfg.B * cfg.H);
    if (dc0) dc0.set(out.dc0!, layer * cfg.D * cfg.B * cfg.H);
    for (let d = 0; d < cfg.D; ++d) {
      paramNames(cfg, layer, d).forEach((name, k) => {
        const g = out.grads[4 * d + k];
        if (g) grads.set(name, g);
      });
    }
    upstream = out.dx;
  }
  return { dx: upstream, dh0, dc0, params: grads };
}

/** Chromium for the browser tests (CHROMIUM_PATH, or Debian's), or undefined. */
export function findChromium(): string | undefined {
  return process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => fs.existsSync(p));
}

/**
 * Headless Chromium for the browser tests, with this process's environment minus the sanitizer
 * runtime that npm run test:asan preloads into node.
 */
export function launchChromium(executablePath: string): Promise<Browser> {
  const { LD_PRELOAD: _preloaded, ...env } = process.env;
  return puppeteer.launch({ executablePath, headless: true, env, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
}
