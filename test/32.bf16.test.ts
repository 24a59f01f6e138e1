/**
 * BF16 matrix products on the CPU (setFloat32MatmulPrecision('medium')): on AMX tiles where the
 * CPU has AMX-BF16, on AVX512_BF16 where that beats FP32 (AMD), products round their operands to
 * bfloat16 and accumulate in FP32, close to FP32 and not equal to it; elsewhere (RECURRENT_ISA=
 * baseline, other CPUs) a clear fallback to FP32.
 */
import * as fs from 'fs';
import { expect } from 'chai';
import { Adam, LSTM, GRU, SequenceModel, Tensor, backends, fit, getFloat32MatmulPrecision, manualSeed, setFloat32MatmulPrecision } from '../lib/index';

/** float -> bfloat16 -> float, rounded to nearest even. */
function bf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  u[0] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) & 0xffff0000;
  return f[0];
}

function withPrecision<T>(precision: 'highest' | 'medium', fn: () => T): T {
  setFloat32MatmulPrecision(precision);
  try {
    return fn();
  } finally {
    setFloat32MatmulPrecision('highest');
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  a.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - b[i]))));
  return worst;
}

/** Whether this CPU has AMX-BF16 (and Linux lists it) and RECURRENT_ISA leaves the AVX-512 kernels on. */
function amxExpected(): boolean {
  let flags = '';
  try {
    flags = fs.readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((line) => line.startsWith('flags')) ?? '';
  } catch {
    return false;
  }
  const isa = process.env.RECURRENT_ISA;
  return process.arch === 'x64' && / amx_bf16( |$)/.test(flags) && / amx_tile( |$)/.test(flags) && (isa === undefined || isa === '' || isa === 'amx');
}

describe('BF16 matrix products on the CPU', () => {
  const cpu = backends().cpu;

  it('backends().cpu says whether BF16 is available, and which precision products use', () => {
    expect(cpu.bf16).to.be.a('boolean');
    expect(cpu.matmul).to.equal('fp32');
    if (!cpu.bf16) expect(cpu.bf16Reason).to.match(/AVX512_BF16|AVX-512|AMX/);
    withPrecision('medium', () => {
      expect(getFloat32MatmulPrecision()).to.equal('medium');
      // AMX wherever the CPU has it; AVX512_BF16 only where it beats FP32
      expect(backends().cpu.matmul).to.equal(amxExpected() ? 'bf16-amx' : cpu.bf16 ? 'bf16-avx512' : 'fp32');
    });
    expect(backends().cpu.matmul).to.equal('fp32');
  });

  it("matmul at 'medium' is the product of the BF16-rounded operands (FP32 accumulation), or FP32 where unavailable", () => {
    manualSeed(11);
    const [m, k, n] = [13, 301, 37];
    const a = Tensor.randn([m, k]);
    const b = Tensor.randn([k, n]);
    const fp32 = a.matmul(b).toArray();
    const medium = withPrecision('medium', () => a.matmul(b).toArray());
    if (!cpu.bf16) {
      expect(Array.from(medium)).to.deep.equal(Array.from(fp32));
      return;
    }
    const av = a.toArray();
    const bv = b.toArray();
    let worstRounded = 0;
    let worstFp32 = 0;
    for (let i = 0; i < m; ++i) {
      for (let j = 0; j < n; ++j) {
        let rounded = 0;
        let scale = 0;
        for (let q = 0; q < k; ++q) {
          const p = bf16(av[i * k + q]) * bf16(bv[q * n + j]);
          rounded += p;
          scale += Math.abs(p);
        }
        worstRounded = Math.max(worstRounded, Math.abs(medium[i * n + j] - rounded) / scale);
        worstFp32 = Math.max(worstFp32, Math.abs(medium[i * n + j] - fp32[i * n + j]) / scale);
      }
    }
    expect(worstRounded).to.be.below(1e-6);
    expect(worstFp32).to.be.above(1e-5).and.below(1e-2);
  });

  for (const Cell of [LSTM, GRU]) {
    it(`${Cell.name} forward and backward at 'medium' stay within BF16's error of FP32 (ragged, bidirectional)`, () => {
      manualSeed(3);
      const layer = new Cell({ inputSize: 40, hiddenSize: 48, numLayers: 2, bidirectional: true });
      const x = Tensor.randn([9, 5, 40]);
      const lengths = [9, 7, 7, 3, 1];
      const run = () => {
        layer.zeroGrad();
        const { output } = layer.forward(x, { lengths });
        output.square().mean().backward();
        return { y: output.toArray(), g: layer.parameters().map((p) => p.grad!.toArray()) };
      };
      const fp32 = run();
      const medium = withPrecision('medium', run);
      const yDiff = maxAbsDiff(medium.y, fp32.y);
      if (!cpu.bf16) {
        expect(yDiff).to.equal(0);
        return;
      }
      expect(yDiff).to.be.above(0).and.below(2e-2);
      medium.g.forEach((g, i) => {
        const scale = Math.max(...Array.from(fp32.g[i], Math.abs));
        expect(maxAbsDiff(g, fp32.g[i]) / scale, `gradient ${i}`).to.be.below(5e-2);
      });
    });
  }

  it("a model trained at 'medium' learns as at FP32 (losses within 2%)", async function () {
    this.timeout(60_000);
    const train = async () => {
      manualSeed(5);
      const model = new SequenceModel({ inputSize: 4, hiddenSize: 64, outputSize: 2 });
      manualSeed(6);
      const inputs = Tensor.randn([64, 12, 4]);
      const targets = Tensor.from(Array.from(inputs.toArray()).filter((_, i) => i % 4 < 2).map((v) => Math.tanh(v * 2)), [64, 12, 2]);
      return fit(model, { inputs, targets }, { epochs: 8, batchSize: 16, seed: 1, optimizer: new Adam(model.parameters(), { lr: 1e-2 }) });
    };
    const fp32 = await train();
    setFloat32MatmulPrecision('medium');
    let medium;
    try {
      medium = await train();
    } finally {
      setFloat32MatmulPrecision('highest');
    }
    const first = fp32.loss[0];
    const last = fp32.loss[fp32.loss.length - 1];
    expect(last).to.be.below(first * 0.5);
    expect(medium.loss[medium.loss.length - 1]).to.be.closeTo(last, 0.02 * last);
  });
});
