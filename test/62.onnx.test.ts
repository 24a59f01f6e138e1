/**
 * ONNX: exported graphs run in onnxruntime (onnxruntime-node) with our forward's results,
 * import(export(m)) gives the same weights bit for bit, imported models train on, and graphs
 * shaped like torch.onnx.export's import too.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import * as ort from 'onnxruntime-node';
import { onnx } from 'onnx-proto';
import {
  CharLanguageModel, Embedding, GRU, LSTM, Linear, Module, RNN, Sequential, SequenceModel, Tensor,
  Adam, exportOnnx, exportOnnxBuffer, fit, mseLoss, importOnnx, importOnnxBuffer, noGrad, seed,
} from '../lib/index';
import { expectClose } from './helpers';

// one thread and released after use: onnxruntime's thread pools spin, and later tests time the event loop
const sessionOptions: ort.InferenceSession.SessionOptions = { logSeverityLevel: 3, intraOpNumThreads: 1, interOpNumThreads: 1 };

async function run(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(bytes, sessionOptions);
  try {
    const result = await session.run(feeds);
    return Object.fromEntries(Object.entries(result).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await session.release();
  }
}

function feed(t: Tensor): ort.Tensor {
  return new ort.Tensor('float32', t.toArray(), [...t.shape]);
}

function expectSameWeights(a: Module, b: Module): void {
  const named = new Map(b.namedParameters());
  expect([...named.keys()]).to.deep.equal(a.namedParameters().map(([n]) => n));
  for (const [name, p] of a.namedParameters()) {
    expect(named.get(name)!.shape, name).to.deep.equal(p.shape);
    expect(Buffer.from(named.get(name)!.toArray().buffer).equals(Buffer.from(p.toArray().buffer)), `${name} bit for bit`).to.equal(true);
  }
}

describe('exportOnnx: onnxruntime runs the graph with our results', function () {
  this.timeout(60_000);
  const cells = [
    { name: 'RNN tanh', make: (o: object) => new RNN({ ...o, inputSize: 3, hiddenSize: 5 } as never) },
    { name: 'RNN relu', make: (o: object) => new RNN({ ...o, inputSize: 3, hiddenSize: 5, nonlinearity: 'relu' } as never) },
    { name: 'LSTM', make: (o: object) => new LSTM({ ...o, inputSize: 3, hiddenSize: 5 } as never) },
    { name: 'GRU', make: (o: object) => new GRU({ ...o, inputSize: 3, hiddenSize: 5 } as never) },
  ];
  for (const cell of cells) {
    it(`${cell.name}: every direction x layers x batchFirst x lengths x bias case, output, h_n and c_n within 1e-5`, async () => {
      let cases = 0;
      for (const bidirectional of [false, true]) {
        for (const numLayers of [1, 2]) {
          for (const batchFirst of [false, true]) {
            for (const withLengths of [false, true]) {
              for (const bias of [true, false]) {
                if (!bias && (withLengths || batchFirst)) continue; // bias off once per direction x layers
                seed(100 + cases);
                const m = cell.make({ bidirectional, numLayers, batchFirst, bias }) as RNN | LSTM | GRU;
                const T = 6;
                const B = 3;
                const x = Tensor.randn(batchFirst ? [B, T, 3] : [T, B, 3]);
                const lengths = withLengths ? [6, 4, 1] : null;
                const ours = noGrad(() => m.forward(x, lengths ? { lengths } : {}));
                const bytes = exportOnnxBuffer(m, { lengths: withLengths });
                const feeds: Record<string, ort.Tensor> = { input: feed(x) };
                if (lengths) feeds.sequence_lens = new ort.Tensor('int32', Int32Array.from(lengths), [B]);
                const out = await run(bytes, feeds);
                const what = `${cell.name} D=${bidirectional ? 2 : 1} L=${numLayers} batchFirst=${batchFirst} lengths=${withLengths} bias=${bias}`;
                expectClose(out.output, ours.output.toArray(), `${what}: output`, { rtol: 0, atol: 1e-5 });
                expectClose(out.h_n, ours.h.toArray(), `${what}: h_n`, { rtol: 0, atol: 1e-5 });
                if ('c' in ours && ours.c) expectClose(out.c_n, (ours.c as Tensor).toArray(), `${what}: c_n`, { rtol: 0, atol: 1e-5 });
                else expect(out.c_n).to.equal(undefined);
                cases += 1;
              }
            }
          }
        }
      }
      expect(cases).to.equal(20);
    });
  }

  it('h0 and c0: zeros inside the graph by default, required inputs with stateInputs', async () => {
    seed(5);
    const lstm = new LSTM({ inputSize: 2, hiddenSize: 4, numLayers: 2, bidirectional: true });
    const x = Tensor.randn([5, 3, 2]);
    const h0 = Tensor.randn([4, 3, 4]);
    const c0 = Tensor.randn([4, 3, 4]);
    const ours = noGrad(() => lstm.forward(x, { h0, c0 }));
    const optional = onnx.ModelProto.decode(exportOnnxBuffer(lstm));
    expect(optional.graph!.input!.map((i) => i.name)).to.deep.equal(['input']);
    expect(optional.graph!.initializer!.filter((t) => t.name === 'h0_zeros' || t.name === 'c0_zeros').map((t) => t.dims!.map(Number))).to.deep.equal([[4, 1, 4], [4, 1, 4]]);
    const zeroState = noGrad(() => lstm.forward(x));
    const fromZeros = await run(exportOnnxBuffer(lstm), { input: feed(x) });
    expectClose(fromZeros.h_n, zeroState.h.toArray(), 'h_n from the zero state', { rtol: 0, atol: 1e-5 });
    expect(optional.graph!.output!.map((o) => o.name)).to.deep.equal(['output', 'h_n', 'c_n']);
    expect(optional.opsetImport![0].version).to.satisfy((v: unknown) => Number(v) >= 17);
    const bytes = exportOnnxBuffer(lstm, { stateInputs: true });
    const required = onnx.ModelProto.decode(bytes);
    expect(required.graph!.input!.map((i) => i.name)).to.deep.equal(['input', 'h0', 'c0']);
    expect(required.graph!.initializer!.some((t) => t.name === 'h0')).to.equal(false);
    const out = await run(bytes, { input: feed(x), h0: feed(h0), c0: feed(c0) });
    expectClose(out.output, ours.output.toArray(), 'output with h0, c0', { rtol: 0, atol: 1e-5 });
    expectClose(out.c_n, ours.c!.toArray(), 'c_n with h0, c0', { rtol: 0, atol: 1e-5 });
  });

  it('SequenceModel (features and tokens, every step or the last), Sequential, Dropout as identity', async () => {
    seed(6);
    const x = Tensor.randn([7, 2, 3]);
    const ids = [[1, 2], [3, 0], [4, 4], [2, 1], [0, 3], [1, 1], [2, 2]];
    const models: [Module, Tensor, ort.Tensor][] = [
      [new SequenceModel({ cell: 'gru', inputSize: 3, hiddenSize: 6, numLayers: 2, outputSize: 4, dropout: 0.3 }), x, feed(x)],
      [new SequenceModel({ cell: 'lstm', inputSize: 3, hiddenSize: 6, bidirectional: true, outputSize: 2, outputs: 'last' }), x, feed(x)],
      [new SequenceModel({ cell: 'rnn', vocabSize: 5, embeddingDim: 3, hiddenSize: 6, outputSize: 5 }), Tensor.from(ids), new ort.Tensor('int64', BigInt64Array.from(ids.flat(), BigInt), [7, 2])],
      [new Sequential(new Embedding({ numEmbeddings: 5, embeddingDim: 3 }), new LSTM({ inputSize: 3, hiddenSize: 4, dropout: 0.5, numLayers: 2 }), new Linear({ inFeatures: 4, outFeatures: 2 })),
        Tensor.from(ids), new ort.Tensor('int64', BigInt64Array.from(ids.flat(), BigInt), [7, 2])],
    ];
    for (const [model, input, onnxInput] of models) {
      model.eval();
      const ours = noGrad(() => {
        const result = (model as unknown as { forward(x: Tensor): Tensor | { output: Tensor } }).forward(input);
        return result instanceof Tensor ? result : result.output;
      });
      const out = await run(exportOnnxBuffer(model), { input: onnxInput });
      expectClose(out.output, ours.toArray(), `${model.constructor.name}: output`, { rtol: 0, atol: 1e-5 });
      expectSameWeights(model, importOnnxBuffer(exportOnnxBuffer(model)).model);
    }
  });

  it('a default export loads in onnxruntime without a warning (its default log level, in a fresh process)', async () => {
    seed(8);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-onnx-'));
    const models: [string, Module, ort.Tensor][] = [
      ['lstm', new LSTM({ inputSize: 3, hiddenSize: 4, numLayers: 2, bidirectional: true }), feed(Tensor.randn([5, 2, 3]))],
      ['gru', new GRU({ inputSize: 3, hiddenSize: 4, batchFirst: true }), feed(Tensor.randn([2, 5, 3]))],
      ['tokens', new SequenceModel({ cell: 'lstm', vocabSize: 7, embeddingDim: 3, hiddenSize: 4, outputSize: 7 }),
        new ort.Tensor('int64', BigInt64Array.from([1, 2, 3, 4], BigInt), [2, 2])],
      ['sequential', new Sequential(new LSTM({ inputSize: 3, hiddenSize: 4 })), feed(Tensor.randn([5, 2, 3]))],
    ];
    const feeds: Record<string, { type: string; data: number[]; dims: readonly number[] }> = {};
    for (const [name, model, input] of models) {
      await exportOnnx(model, path.join(dir, `${name}.onnx`));
      feeds[name] = { type: input.type, data: Array.from(input.data as ArrayLike<number | bigint>, Number), dims: input.dims };
    }
    const script = `
      const ort = require('onnxruntime-node');
      const path = require('node:path');
      (async () => {
        for (const [name, f] of Object.entries(${JSON.stringify(feeds)})) {
          const data = f.type === 'int64' ? BigInt64Array.from(f.data, BigInt) : Float32Array.from(f.data);
          const session = await ort.InferenceSession.create(path.join(${JSON.stringify(dir)}, name + '.onnx'), { intraOpNumThreads: 1, interOpNumThreads: 1 });
          const out = await session.run({ input: new ort.Tensor(f.type, data, f.dims) });
          if (!Object.values(out).every((t) => t.data.length > 0)) throw new Error(name + ': empty output');
          await session.release();
        }
        console.log('ran ' + Object.keys(${JSON.stringify(feeds)}).length);
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const { spawnSync } = await import('node:child_process');
    const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
    fs.rmSync(dir, { recursive: true, force: true });
    expect(result.status, result.stderr).to.equal(0);
    expect(result.stdout.trim()).to.equal('ran 4');
    expect(result.stderr).to.equal(''); // onnxruntime's warnings go to stderr ("W:onnxruntime:... Initializer h0 appears in graph inputs")
  });

  it('exportOnnx writes a file atomically; bad arguments give coded errors', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-onnx-'));
    const file = path.join(dir, 'gru.onnx');
    const gru = new GRU({ inputSize: 2, hiddenSize: 3 });
    await exportOnnx(gru, file);
    expect(fs.readdirSync(dir)).to.deep.equal(['gru.onnx']);
    expectSameWeights(gru, await importOnnx(file));
    expect(() => exportOnnxBuffer({} as Module)).to.throw(TypeError, /expected model to be a Module/);
    expect(() => exportOnnxBuffer(gru, { lengths: 1 as never })).to.throw(TypeError, /options.lengths/);
    expect(() => exportOnnxBuffer(gru, { colour: 'red' } as never)).to.throw(/colour/);
    let error: unknown;
    await importOnnx(path.join(dir, 'missing.onnx')).catch((e) => { error = e; });
    expect((error as { code?: string }).code).to.equal('ENOENT');
    expect(() => importOnnxBuffer(new Uint8Array([1, 2, 3, 255, 255]))).to.throw(RangeError).with.property('code', 'ERR_BAD_FILE');
  });
});

describe('importOnnx', function () {
  this.timeout(60_000);

  it('import(export(m)) gives every weight bit for bit, same class and options', () => {
    seed(7);
    const models = [
      new LSTM({ inputSize: 3, hiddenSize: 4, numLayers: 2, bidirectional: true, batchFirst: true }),
      new GRU({ inputSize: 3, hiddenSize: 4, bias: false }),
      new RNN({ inputSize: 3, hiddenSize: 4, nonlinearity: 'relu', numLayers: 3 }),
    ];
    for (const m of models) {
      const back = importOnnxBuffer(exportOnnxBuffer(m)).model;
      expect(back.constructor).to.equal(m.constructor);
      expect(back.config()).to.deep.equal(m.config());
      expectSameWeights(m, back);
    }
  });

  it('an exported, imported model trains further', async () => {
    seed(8);
    const model = new SequenceModel({ cell: 'lstm', inputSize: 2, hiddenSize: 8, outputSize: 1, outputs: 'last' });
    const back = importOnnxBuffer(exportOnnxBuffer(model)).model as SequenceModel;
    const inputs = Tensor.randn([64, 10, 2]);
    const targets = noGrad(() => inputs.select(1, 9).sum(1, true).mul(0.5));
    const before = noGrad(() => mseLoss(back.forward(inputs.transpose(0, 1)).output, targets).item());
    await fit(back, { inputs, targets }, { epochs: 15, batchSize: 16, seed: 1, optimizer: new Adam(back.parameters(), { lr: 0.02 }) });
    const after = noGrad(() => mseLoss(back.forward(inputs.transpose(0, 1)).output, targets).item());
    expect(after).to.be.below(before * 0.5);
  });

  it('a CharLanguageModel keeps its vocabulary in metadata_props and generates the same text after the round trip', async () => {
    seed(9);
    const lm = new CharLanguageModel('hello world, hello recurrent', { hiddenSize: 8 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-onnx-'));
    const file = path.join(dir, 'lm.onnx');
    await exportOnnx(lm, file);
    const meta = onnx.ModelProto.decode(fs.readFileSync(file)).metadataProps!;
    expect(JSON.parse(meta.find((e) => e.key === 'recurrent.tokenizer')!.value!).chars).to.include('h');
    const back = await CharLanguageModel.fromOnnx(file);
    expect(back.generate({ prime: 'hel', length: 20, temperature: 0 })).to.equal(lm.generate({ prime: 'hel', length: 20, temperature: 0 }));
  });

  it('reads a graph written the way torch.onnx.export writes nn.LSTM (initializers, Squeeze of Y)', () => {
    seed(10);
    const reference = new LSTM({ inputSize: 3, hiddenSize: 4 });
    const ours = onnx.ModelProto.decode(exportOnnxBuffer(reference));
    const init = (name: string) => ours.graph!.initializer!.find((t) => t.name === name)!;
    // torch's layout: W, R, B as unnamed initializers, h0/c0 as graph inputs, Y squeezed over the direction axis
    const torchLike = onnx.ModelProto.create({
      irVersion: 8, producerName: 'pytorch', opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'main_graph',
        node: [
          { opType: 'LSTM', name: '/lstm/LSTM', input: ['input', 'onnx::LSTM_71', 'onnx::LSTM_72', 'onnx::LSTM_73', '', 'h0', 'c0'], output: ['/lstm/LSTM_output_0', 'hn', 'cn'],
            attribute: [{ name: 'hidden_size', type: onnx.AttributeProto.AttributeType.INT, i: 4 }] },
          { opType: 'Squeeze', name: '/lstm/Squeeze', input: ['/lstm/LSTM_output_0', 'onnx::Squeeze_74'], output: ['output'] },
        ],
        initializer: [
          { ...init('W_l0'), name: 'onnx::LSTM_71' }, { ...init('R_l0'), name: 'onnx::LSTM_72' }, { ...init('B_l0'), name: 'onnx::LSTM_73' },
          { name: 'onnx::Squeeze_74', dims: [1], dataType: onnx.TensorProto.DataType.INT64, int64Data: [1] },
        ],
        input: ['input', 'h0', 'c0'].map((name) => ({ name, type: { tensorType: { elemType: 1 } } })),
        output: ['output', 'hn', 'cn'].map((name) => ({ name, type: { tensorType: { elemType: 1 } } })),
      },
    });
    const imported = importOnnxBuffer(onnx.ModelProto.encode(torchLike).finish()).model;
    expect(imported).to.be.instanceOf(LSTM);
    expect(imported.config()).to.deep.include({ inputSize: 3, hiddenSize: 4, numLayers: 1, bidirectional: false });
    expectSameWeights(reference, imported);
  });

  it('names the first unsupported node', () => {
    const model = onnx.ModelProto.decode(exportOnnxBuffer(new GRU({ inputSize: 2, hiddenSize: 3 })));
    model.graph!.node!.splice(1, 0, onnx.NodeProto.create({ opType: 'Softmax', name: 'probabilities', input: ['x'], output: ['y'] }));
    expect(() => importOnnxBuffer(onnx.ModelProto.encode(model).finish())).to.throw(RangeError, /unsupported Softmax node "probabilities"/)
      .with.property('code', 'ERR_UNSUPPORTED');
  });
});
