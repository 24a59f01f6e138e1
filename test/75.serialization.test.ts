/**
 * safetensors files: the exact byte layout the format specifies (and PyTorch's names),
 * every dtype read, hostile files rejected with clear errors, and save/load of models.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  GRU, LSTM, Linear, SequenceModel, Sequential, Embedding, Tensor, load, loadModel, loadSafetensors, parseSafetensors, save, saveSafetensors,
} from '../lib/index';
import { expectClose } from './helpers';

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-test-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Bytes of a safetensors file built by hand from the spec. */
function specFile(header: object, data: Buffer): Buffer {
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([size, Buffer.from(json), data]);
}

function f32(values: number[]): Buffer {
  const b = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => b.writeFloatLE(v, 4 * i));
  return b;
}

describe('safetensors', () => {
  it('save() writes the layout of the spec with PyTorch names and shapes, byte by byte', async () => {
    const lstm = new LSTM({ inputSize: 1, hiddenSize: 1 });
    const values: Record<string, number[]> = {
      weight_ih_l0: [0.5, -0.25, 1, 2], weight_hh_l0: [-1, 0.125, 3, -4], bias_ih_l0: [0.1, 0.2, 0.3, 0.4], bias_hh_l0: [1.5, -1.5, 2.5, -2.5],
    };
    lstm.loadStateDict(Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Tensor.from(v, [4, ...(k.startsWith('weight') ? [1] : [])])])));
    const file = path.join(dir, 'tiny.safetensors');
    await save(lstm, file);
    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).to.equal(0); // data starts 8-byte aligned
    const headerText = bytes.toString('utf8', 8, 8 + n);
    expect(headerText.trimEnd().length).to.be.greaterThan(0);
    expect(headerText.slice(headerText.trimEnd().length)).to.match(/^ *$/); // padding is spaces
    const header = JSON.parse(headerText);
    expect(header.__metadata__.format).to.equal('pt');
    expect(JSON.parse(header.__metadata__['recurrent.model'])).to.deep.equal({ class: 'LSTM', config: lstm.config() });
    // tensors sorted by name, packed back to back, little-endian float32, row-major
    const names = ['bias_hh_l0', 'bias_ih_l0', 'weight_hh_l0', 'weight_ih_l0'];
    expect(Object.keys(header).filter((k) => k !== '__metadata__').sort()).to.deep.equal(names);
    let offset = 0;
    for (const name of names) {
      expect(header[name]).to.deep.equal({ dtype: 'F32', shape: name.startsWith('weight') ? [4, 1] : [4], data_offsets: [offset, offset + 16] });
      expect(bytes.subarray(8 + n + offset, 8 + n + offset + 16).equals(f32(values[name])), name).to.equal(true);
      offset += 16;
    }
    expect(bytes.length).to.equal(8 + n + offset);
  });

  it('reads a file laid out as safetensors.torch.save_file writes it, into a state dict', async () => {
    const weights = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]];
    const bias = [1, 2, 3];
    const file = path.join(dir, 'torch.safetensors');
    fs.writeFileSync(file, specFile({
      __metadata__: { format: 'pt' },
      bias: { dtype: 'F32', shape: [3], data_offsets: [0, 12] },
      weight: { dtype: 'F32', shape: [3, 2], data_offsets: [12, 36] },
    }, Buffer.concat([f32(bias), f32(weights.flat())])));
    const { tensors, metadata } = await loadSafetensors(file);
    expect(metadata).to.deep.equal({ format: 'pt' });
    const lin = new Linear({ inFeatures: 2, outFeatures: 3 });
    lin.loadStateDict(tensors);
    expectClose(lin.forward(Tensor.from([[1, 1]])).toArray(), [1.3, 2.7, 4.1], 'output', { rtol: 1e-6 });
  });

  it('reads F64, F16, BF16 and integer tensors into float32', () => {
    const f64 = Buffer.alloc(16);
    f64.writeDoubleLE(1.5, 0);
    f64.writeDoubleLE(-2.25, 8);
    const f16 = Buffer.from([0x00, 0x3c, 0x00, 0xc0, 0x00, 0x7c]); // 1, -2, inf
    const bf16 = Buffer.from([0x80, 0x3f, 0x40, 0xc0]); // 1, -3
    const i64 = Buffer.alloc(16);
    i64.writeBigInt64LE(-7n, 0);
    i64.writeBigInt64LE(123456n, 8);
    const i32 = Buffer.alloc(4);
    i32.writeInt32LE(-9, 0);
    const u8 = Buffer.from([0, 255]);
    const data = Buffer.concat([f64, f16, bf16, i64, i32, u8]);
    let o = 0;
    const at = (n: number) => [o, (o += n)];
    const { tensors } = parseSafetensors(specFile({
      a: { dtype: 'F64', shape: [2], data_offsets: at(16) },
      b: { dtype: 'F16', shape: [3], data_offsets: at(6) },
      c: { dtype: 'BF16', shape: [2], data_offsets: at(4) },
      d: { dtype: 'I64', shape: [2], data_offsets: at(16) },
      e: { dtype: 'I32', shape: [1, 1], data_offsets: at(4) },
      f: { dtype: 'U8', shape: [2], data_offsets: at(2) },
    }, data));
    expect(Array.from(tensors.a.toArray())).to.deep.equal([1.5, -2.25]);
    expect(Array.from(tensors.b.toArray())).to.deep.equal([1, -2, Infinity]);
    expect(Array.from(tensors.c.toArray())).to.deep.equal([1, -3]);
    expect(Array.from(tensors.d.toArray())).to.deep.equal([-7, 123456]);
    expect(tensors.e.shape).to.deep.equal([1, 1]);
    expect(Array.from(tensors.f.toArray())).to.deep.equal([0, 255]);
  });

  const hostile: [string, () => Buffer, RegExp][] = [
    ['an empty file', () => Buffer.alloc(0), /fewer than the 8-byte/],
    ['a header size beyond the file', () => { const b = Buffer.alloc(16); b.writeBigUInt64LE(1000n); return b; }, /claims 1000 bytes/],
    ['a header size of 2^63', () => { const b = Buffer.alloc(16); b.writeBigUInt64LE(2n ** 63n); return b; }, /limit/],
    ['a header that is not JSON', () => specFile({}, Buffer.alloc(0)).fill(0x7b, 8), /not valid JSON/],
    ['a JSON array header', () => { const b = specFile({}, Buffer.alloc(0)); b.write('[]      ', 8); return b; }, /not a JSON object/],
    ['an unknown dtype', () => specFile({ x: { dtype: 'F8', shape: [1], data_offsets: [0, 1] } }, Buffer.alloc(1)), /unsupported dtype/],
    ['offsets past the data', () => specFile({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, Buffer.alloc(8)), /spans bytes \[0, 16\)/],
    ['a size that does not match the shape', () => specFile({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, Buffer.alloc(8)), /needs 12 bytes/],
    ['overlapping tensors', () => specFile({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, y: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, Buffer.alloc(12)), /overlap/],
    ['a negative shape', () => specFile({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, Buffer.alloc(0)), /invalid shape/],
    ['a huge claimed shape', () => specFile({ x: { dtype: 'F32', shape: [1e9, 1e9], data_offsets: [0, 4] } }, Buffer.alloc(4)), /needs/],
    ['reversed offsets', () => specFile({ x: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, Buffer.alloc(8)), /spans bytes/],
    ['non-string metadata', () => specFile({ __metadata__: { a: 1 } }, Buffer.alloc(0)), /not a string/],
  ];
  for (const [label, make, pattern] of hostile) {
    it(`rejects ${label}`, async () => {
      const bytes = make();
      expect(() => parseSafetensors(bytes)).to.throw(RangeError, pattern);
      const file = path.join(dir, 'hostile.safetensors');
      fs.writeFileSync(file, bytes);
      let error: unknown;
      await loadSafetensors(file).catch((e) => (error = e));
      expect(error).to.be.instanceOf(RangeError);
      expect((error as Error).message).to.match(pattern);
    });
  }

  it('rejects a truncated copy of a valid file at every length', async () => {
    const full = fs.readFileSync(path.join(dir, 'tiny.safetensors'));
    for (let length = 0; length < full.length; length += 7) {
      expect(() => parseSafetensors(full.subarray(0, length)), `length ${length}`).to.throw(RangeError);
    }
  });

  it('a failed save leaves the previous file intact and no temp file behind', async () => {
    const file = path.join(dir, 'keep.safetensors');
    await saveSafetensors(file, { a: Tensor.from([1, 2, 3]) });
    const before = fs.readFileSync(file);
    const gone = Tensor.from([4]);
    gone.dispose();
    await saveSafetensors(file, { a: gone }).then(() => expect.fail('should throw'), (e) => expect(e).to.be.instanceOf(TypeError));
    await saveSafetensors(path.join(dir, 'missing-dir', 'x.safetensors'), { a: Tensor.from([1]) }).then(() => expect.fail('should throw'), (e) => expect((e as NodeJS.ErrnoException).code).to.equal('ENOENT'));
    expect(fs.readFileSync(file).equals(before)).to.equal(true);
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).to.deep.equal([]);
  });
});

describe('save() / load()', () => {
  const cases: [string, () => { forward(x: Tensor): unknown; config(): unknown } & Parameters<typeof save>[0], () => Tensor][] = [
    ['GRU (2 layers, bidirectional)', () => new GRU({ inputSize: 3, hiddenSize: 4, numLayers: 2, bidirectional: true }), () => Tensor.randn([5, 2, 3])],
    ['SequenceModel over tokens', () => new SequenceModel({ cell: 'lstm', vocabSize: 7, hiddenSize: 6, numLayers: 2, outputSize: 7 }), () => Tensor.from([[1, 2], [3, 4], [6, 0]])],
    ['Sequential(Embedding, LSTM, Linear)', () => new Sequential(new Embedding({ numEmbeddings: 5, embeddingDim: 3 }), new LSTM({ inputSize: 3, hiddenSize: 4 }), new Linear({ inFeatures: 4, outFeatures: 2 })), () => Tensor.from([[1], [4]])],
  ];
  for (const [label, make, input] of cases) {
    it(`rebuilds ${label} with identical outputs`, async () => {
      const model = make();
      model.eval();
      const file = path.join(dir, 'model.safetensors');
      await save(model, file);
      const again = await load(file);
      expect(again.constructor).to.equal(model.constructor);
      expect(again.config()).to.deep.equal(model.config());
      again.eval();
      const x = input();
      const out = (m: { forward(x: Tensor): unknown }) => {
        const r = m.forward(x);
        return (r instanceof Tensor ? r : (r as { output: Tensor }).output).toArray();
      };
      expectClose(out(again as never), out(model), 'output', { rtol: 0, atol: 0 });
    });
  }

  it('keeps extra metadata and refuses files without a model description', async () => {
    const file = path.join(dir, 'meta.safetensors');
    await save(new Linear({ inFeatures: 2, outFeatures: 2 }), file, { vocabulary: '["a","b"]' });
    expect((await loadModel(file)).metadata.vocabulary).to.equal('["a","b"]');
    await saveSafetensors(file, { weight: Tensor.zeros([2, 2]) });
    await load(file).then(() => expect.fail('should throw'), (e) => expect((e as Error).message).to.match(/no model description/));
  });
});
