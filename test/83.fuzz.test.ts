/**
 * Hostile files: a short run of the structured fuzzer (npm run fuzz runs a million inputs),
 * and the cases it found, kept as regression tests.
 */
import { expect } from 'chai';
import { LSTM, Tensor } from '../lib/index';
import { parseSafetensors, serializeSafetensors } from '../lib/io/safetensors';
import { describeModel, modelFromContent } from '../lib/io/serialize';
import { runFuzz } from '../fuzz/safetensors';

function file(header: unknown, data = Buffer.alloc(0)): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([size, json, data]);
}

function expectBadFile(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(RangeError);
    expect((error as { code: string }).code).to.equal('ERR_BAD_FILE');
    expect((error as Error).message).to.match(pattern);
    return;
  }
  expect.fail('expected an ERR_BAD_FILE error');
}

describe('hostile safetensors files', () => {
  it('survives 20,000 fuzzed inputs (fixed seed and a fresh one): only coded errors, no hang', function () {
    this.timeout(120_000);
    const fresh = Date.now() % 0x7fffffff;
    for (const seed of [20261125, fresh]) {
      let report;
      try {
        report = runFuzz({ runs: 10_000, seed });
      } catch (error) {
        throw new Error(`fuzz seed ${seed} failed (rerun: npx tsx fuzz/safetensors.ts --runs 10000 --seed ${seed}): ${(error as Error).message}\n${(error as Error).cause ?? ''}`);
      }
      expect(report.inputs).to.equal(10_000);
      expect(report.accepted + report.rejected).to.equal(10_000);
      expect(report.accepted).to.be.greaterThan(100); // the inputs are not all rejected up front
      expect(report.modelsBuilt).to.be.greaterThan(50);
    }
  });

  it('dtype names are looked up as own keys ("__proto__", "toString" are not dtypes)', () => {
    for (const dtype of ['__proto__', 'toString', 'constructor', 'hasOwnProperty']) {
      expectBadFile(() => parseSafetensors(file({ a: { dtype, shape: [], data_offsets: [0, 0] } })), /unsupported dtype/);
    }
  });

  it('a tensor named "__proto__" is an ordinary entry, not a prototype', () => {
    const content = parseSafetensors(serializeSafetensors({ __proto__: Tensor.from([1, 2], [2]) } as unknown as Record<string, Tensor>));
    // (an object literal's __proto__ sets the prototype: nothing was written)
    expect(Object.keys(content.tensors)).to.deep.equal([]);
    const bytes = file({ ['__proto__']: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, Buffer.from(new Float32Array([5]).buffer));
    const parsed = parseSafetensors(bytes);
    expect(Object.keys(parsed.tensors)).to.deep.equal(['__proto__']);
    expect(Object.getPrototypeOf(parsed.tensors)).to.equal(Object.prototype);
    expect(Array.from(Object.getOwnPropertyDescriptor(parsed.tensors, '__proto__')!.value.toArray())).to.deep.equal([5]);
  });

  it('a model description cannot make the loader allocate more than the file holds', () => {
    const small = new LSTM({ inputSize: 2, hiddenSize: 3 });
    const spec = describeModel(small);
    const huge = JSON.stringify({ ...spec, config: { ...spec.config, hiddenSize: 200_000 } }); // 4 x 200k x 200k floats
    const bytes = serializeSafetensors(small.stateDict(), { format: 'pt', 'recurrent.model': huge });
    const rss = process.memoryUsage().rss;
    expectBadFile(() => modelFromContent(parseSafetensors(bytes)), /asks for more parameters than the file's \d+ values/);
    expect(process.memoryUsage().rss - rss).to.be.lessThan(64 << 20); // 640 GB were asked for
    // the honest description loads
    const ok = serializeSafetensors(small.stateDict(), { format: 'pt', 'recurrent.model': JSON.stringify(spec) });
    expect(modelFromContent(parseSafetensors(ok)).model.numParameters()).to.equal(small.numParameters());
  });

  it('invalid model descriptions and metadata JSON are ERR_BAD_FILE errors', () => {
    const small = new LSTM({ inputSize: 2, hiddenSize: 3 });
    for (const [description, pattern] of [
      ['{not json', /not valid JSON/],
      [JSON.stringify({ class: 'LSTM', config: { inputSize: -1, hiddenSize: 3 } }), /inputSize/],
      [JSON.stringify({ class: 'Nope', config: {} }), /Unknown model class/],
      [JSON.stringify({ class: 'constructor', config: {} }), /Unknown model class/],
    ] as const) {
      const bytes = serializeSafetensors(small.stateDict(), { format: 'pt', 'recurrent.model': description });
      expectBadFile(() => modelFromContent(parseSafetensors(bytes)), pattern);
    }
  });
});
