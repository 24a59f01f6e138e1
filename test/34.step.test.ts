/**
 * step(): one time step of a stacked model for inference, in one native call (cpp/step.h), with
 * the state updated in place. Its values must be forward()'s, bit for bit: one step against
 * forward at T = 1, T steps against forward over the whole sequence, for every cell, stacked,
 * without bias, batched, with an embedding and a head (SequenceModel). forward() at T = 1 for
 * inference runs through the same kernel, so it is checked in turn against the stack's own path
 * (lengths given, or a longer sequence's first step).
 */
import { expect } from 'chai';
import { GRU, LSTM, RNN, SGD, SequenceModel, Tensor, backends, backward, emptyCache, getRngState, memoryStats, noGrad, runAsync, sampleLogits, seed, setFloat32MatmulPrecision, setNumThreads, synchronize } from '../lib/index';
import { native } from '../lib/core/native';
import { normal_, uniform_ } from '../lib/nn/init';

type Layer = LSTM | GRU | RNN;

const layers = (): [string, Layer][] => [
  ['LSTM 2 layers', new LSTM({ inputSize: 6, hiddenSize: 20, numLayers: 2 })],
  ['GRU', new GRU({ inputSize: 6, hiddenSize: 17 })],
  ['tanh RNN without bias', new RNN({ inputSize: 6, hiddenSize: 33, bias: false })],
  ['relu RNN 3 layers', new RNN({ inputSize: 6, hiddenSize: 9, numLayers: 3, nonlinearity: 'relu' })],
];

const values = (t: Tensor): number[] => Array.from(t.toArray());

describe('step()', () => {
  it('equals forward() at T = 1 and over a whole sequence, bit for bit, with the state updated in place', () => {
    for (const [name, layer] of layers()) {
      for (const B of [1, 3]) {
        const T = 5;
        const x = Tensor.randn([T, B, 6]);
        const init = layer.initialState(B);
        noGrad(() => init.h.storage.write(Tensor.randn(init.h.shape).mul(0.5).toArray(), 0));
        const h0 = Tensor.from(init.h.toArray(), init.h.shape);
        const c0 = init.c ? Tensor.from(init.c.toArray(), init.c.shape) : undefined;
        const full = noGrad(() => layer.forward(x, { h0, ...(c0 ? { c0 } : {}) }));
        const state = init;
        const outputs: number[] = [];
        for (let t = 0; t < T; ++t) {
          const y = layer.step(x.select(0, t), state);
          expect(y.shape).to.deep.equal([B, layer.hiddenSize]);
          if (t === 0) {
            const one = noGrad(() => layer.forward(x.slice(0, 0, 1), { h0, ...(c0 ? { c0 } : {}) }));
            expect(values(y), `${name} B=${B}: step 1`).to.deep.equal(values(one.output));
          }
          outputs.push(...values(y));
        }
        expect(outputs, `${name} B=${B}: ${T} steps`).to.deep.equal(values(full.output));
        expect(values(state.h), `${name} B=${B}: h`).to.deep.equal(values(full.h));
        if (layer instanceof LSTM) expect(values(state.c!), `${name} B=${B}: c`).to.deep.equal(values((full as unknown as { c: Tensor }).c));
      }
    }
  });

  it("forward() at T = 1 for inference runs as step() does, with the values of the stack's own path, bit for bit", () => {
    // The stack's own path is the one forward() takes at T > 1 and wherever lengths are given: at
    // T = 1, forward(x, { lengths: all 1 }) and the first step of a longer forward() are checked
    // against forward(x). Which path ran is counted at the native call.
    const calls = { stepRun: 0 };
    const stepRun = native.stepRun;
    (native as { stepRun: typeof stepRun }).stepRun = (...args: Parameters<typeof stepRun>) => {
      calls.stepRun += 1;
      return stepRun(...args);
    };
    const before = backends().cpu.threads;
    try {
      for (const threads of [1, 2]) {
        setNumThreads(threads);
        for (const [name, layer] of layers()) {
          for (const B of [1, 3, 40]) {
            const at = `${name}, B = ${B}, ${threads} thread${threads > 1 ? 's' : ''}`;
            const L = layer.numLayers;
            const x = Tensor.randn([3, B, 6]);
            const h0 = Tensor.randn([L, B, layer.hiddenSize]).mul(0.5);
            const c0 = layer instanceof LSTM ? Tensor.randn([L, B, layer.hiddenSize]).mul(0.5) : null;
            const given = [values(h0), c0 ? values(c0) : []];
            for (const initial of [{}, { h0 }, { h0, ...(c0 ? { c0 } : {}) }]) {
              const what = `${at}, ${Object.keys(initial).join(' and ') || 'zero state'}`;
              const first = x.slice(0, 0, 1);
              const counted = calls.stepRun;
              const stepped = noGrad(() => layer.forward(first, initial)) as { output: Tensor; h: Tensor; c?: Tensor };
              expect(calls.stepRun - counted, `${what}: one step call`).to.equal(1);
              const own = noGrad(() => layer.forward(first, { ...initial, lengths: new Array(B).fill(1) })) as { output: Tensor; h: Tensor; c?: Tensor };
              expect(calls.stepRun - counted, `${what}: lengths take the stack's path`).to.equal(1);
              expect(stepped.output.shape).to.deep.equal([1, B, layer.hiddenSize]);
              expect(values(stepped.output), `${what}: output`).to.deep.equal(values(own.output));
              expect(values(stepped.h), `${what}: h`).to.deep.equal(values(own.h));
              if (c0) expect(values(stepped.c!), `${what}: c`).to.deep.equal(values(own.c!));
              const longer = noGrad(() => layer.forward(x, initial));
              expect(values(stepped.output), `${what}: the first step of T = 3`).to.deep.equal(values(longer.output.slice(0, 0, 1)));
            }
            // h and c are new tensors: h0 and c0 keep their values
            expect([values(h0), c0 ? values(c0) : []], `${at}: h0 and c0 unchanged`).to.deep.equal(given);
          }
        }
      }
      // batch first and unbatched inputs; with a graph to record (training), the stack's path
      const gru = new GRU({ inputSize: 6, hiddenSize: 12, numLayers: 2, batchFirst: true });
      const x = Tensor.randn([4, 1, 6]);
      const counted = calls.stepRun;
      const batchFirst = noGrad(() => gru.forward(x));
      expect(batchFirst.output.shape).to.deep.equal([4, 1, 12]);
      expect(values(batchFirst.output)).to.deep.equal(values(noGrad(() => gru.forward(x, { lengths: [1, 1, 1, 1] })).output));
      const single = noGrad(() => gru.forward(x.select(0, 2)));
      expect(single.output.shape).to.deep.equal([1, 12]);
      expect(single.h.shape).to.deep.equal([2, 12]);
      expect(values(single.output)).to.deep.equal(values(batchFirst.output.select(0, 2)));
      expect(calls.stepRun - counted).to.equal(2);
      const trained = gru.forward(x);
      expect(calls.stepRun - counted, 'a graph to record').to.equal(2);
      expect(values(trained.output)).to.deep.equal(values(batchFirst.output));
      const dropped = new LSTM({ inputSize: 6, hiddenSize: 12, numLayers: 2, dropout: 0.5 });
      const step = Tensor.randn([1, 4, 6]);
      noGrad(() => dropped.forward(step));
      expect(calls.stepRun - counted, 'dropout between layers in training mode').to.equal(2);
      dropped.eval();
      noGrad(() => dropped.forward(step));
      expect(calls.stepRun - counted, 'the same model in eval mode').to.equal(3);
    } finally {
      (native as { stepRun: typeof stepRun }).stepRun = stepRun;
      setNumThreads(before);
    }
  });

  it('SequenceModel: tokens through the embedding, the layers and the head in one call; options.out is reused', () => {
    const lm = new SequenceModel({ cell: 'lstm', vocabSize: 30, embeddingDim: 8, hiddenSize: 24, numLayers: 2, outputSize: 30 });
    lm.eval();
    const ids = [3, 29, 0, 7];
    const state = lm.initialState(2);
    const out = Tensor.empty([2, 30]);
    const reference = noGrad(() => lm.forward(Tensor.from(Float32Array.from(ids), [2, 2])).output); // [T = 2, B = 2, 30]
    const first = lm.step(Int32Array.of(ids[0], ids[1]), state, { out });
    expect(first).to.equal(out);
    expect(values(first)).to.deep.equal(values(reference.select(0, 0)));
    expect(values(lm.step(Tensor.from([ids[2], ids[3]], [2]), state, { out }))).to.deep.equal(values(reference.select(0, 1)));

    const regressor = new SequenceModel({ cell: 'gru', inputSize: 3, hiddenSize: 10, outputSize: 2, outputs: 'last' });
    const x = Tensor.randn([1, 4, 3]);
    const expected = noGrad(() => regressor.forward(x).output);
    expect(values(regressor.step(x.select(0, 0), regressor.initialState(4)))).to.deep.equal(values(expected));
  });

  it('sees every change of the weights, in sync and async mode', async () => {
    const lstm = new LSTM({ inputSize: 6, hiddenSize: 12 });
    const x = Tensor.randn([1, 2, 6]);
    const stepped = () => values(lstm.step(x.select(0, 0), lstm.initialState(2)));
    const forward = () => values(noGrad(() => lstm.forward(x).output));
    expect(stepped()).to.deep.equal(forward());
    const { output } = lstm.forward(Tensor.randn([3, 2, 6]));
    backward([output], [Tensor.ones(output.shape)]);
    new SGD(lstm.parameters(), { lr: 0.5 }).step();
    expect(stepped()).to.deep.equal(forward());
    const [before, after] = await runAsync(() => {
      const a = lstm.step(x.select(0, 0), lstm.initialState(2));
      new SGD(lstm.parameters(), { lr: 0.5 }).step(); // the same gradients again, queued
      const b = lstm.step(x.select(0, 0), lstm.initialState(2));
      return [a, b];
    });
    await synchronize();
    expect(values(after)).to.deep.equal(forward());
    expect(values(before)).to.not.deep.equal(values(after));
  });

  it('its plan (the weights checked once) follows a weight moved to new memory, and never keeps disposed weights', () => {
    // A device move gives a parameter new memory (Tensor.moveTo_); on a CPU-only machine the same
    // swap is made by hand: new storage, other values. The next step must use them.
    const lstm = new LSTM({ inputSize: 6, hiddenSize: 12, numLayers: 2 });
    const x = Tensor.randn([1, 3, 6]);
    const stepped = () => values(lstm.step(x.select(0, 0), lstm.initialState(3)));
    const forward = () => values(noGrad(() => lstm.forward(x).output));
    expect(stepped()).to.deep.equal(forward());
    const weight = new Map(lstm.namedParameters()).get('weight_hh_l1')!;
    const moved = new native.Storage(weight.size);
    moved.write(new Float32Array(Array.from(weight.toArray(), (v) => -2 * v)), 0);
    const old = weight.storage;
    (weight as unknown as { storage: unknown }).storage = moved;
    old.dispose();
    const after = stepped();
    expect(after).to.deep.equal(forward());
    expect(after).to.not.deep.equal(values(noGrad(() => new LSTM({ inputSize: 6, hiddenSize: 12, numLayers: 2 }).forward(x).output)));

    // disposed weights: a clear error, and their memory is not held by the plan
    const big = new SequenceModel({ vocabSize: 50, hiddenSize: 256, numLayers: 2, outputSize: 50 });
    big.step([1], big.initialState(1));
    const held = memoryStats().allocatedBytes;
    const bytes = big.parameters().reduce((sum, p) => sum + 4 * p.size, 0);
    for (const p of big.parameters()) p.dispose();
    expect(held - memoryStats().allocatedBytes).to.be.at.least(bytes);
    try {
      big.step([1], big.initialState(1));
      expect.fail('expected an error');
    } catch (error) {
      expect(error).to.be.instanceOf(TypeError);
      expect((error as Error).message).to.match(/disposed/);
    }
  });

  it("SequenceModel's token table (the first layer's projected embedding) follows every write to the embedding or w_ih", async () => {
    // The step looks up embedding * w_ih^T instead of multiplying (cpp/step.h), kept in the
    // embedding's cache and keyed by both weights' versions: stale rows would be a silent wrong answer.
    emptyCache();
    const lm = new SequenceModel({ cell: 'lstm', vocabSize: 30, embeddingDim: 16, hiddenSize: 24, numLayers: 2, outputSize: 30 });
    lm.eval();
    const ids = [3, 29, 0, 7, 11, 3];
    const h0 = Tensor.randn([2, 3, 24]).mul(0.5);
    const c0 = Tensor.randn([2, 3, 24]).mul(0.5);
    const stepped = (model = lm) => {
      const state = { h: Tensor.from(h0.toArray(), h0.shape), c: Tensor.from(c0.toArray(), c0.shape) };
      return [model.step(ids.slice(0, 3), state), model.step(ids.slice(3), state)].flatMap(values);
    };
    const forward = (model = lm) => values(noGrad(() => model.forward(Tensor.from(Float32Array.from(ids), [2, 3]), { state: { h: h0, c: c0 } }).output));
    expect(stepped(), 'first').to.deep.equal(forward());
    const kept = memoryStats().packedWeightBytes;
    emptyCache();
    noGrad(() => lm.forward(Tensor.from(Float32Array.from(ids), [2, 3]), { state: { h: h0, c: c0 } }));
    expect(kept - memoryStats().packedWeightBytes, 'the table: 30 ids x 4 gates x 24 units').to.be.at.least(30 * 96 * 4);

    const named = new Map(lm.namedParameters());
    const embedding = named.get('embedding.weight')!;
    // reading a weight is not writing it: a forward leaves every version as it was (else each
    // forward would throw away the table and the packed copies)
    const versions = () => lm.parameters().map((p) => p.version);
    const unread = versions();
    forward();
    stepped();
    expect(versions()).to.deep.equal(unread);
    const trainOnly = (params: Tensor[]) => {
      const { output } = lm.forward(Tensor.from(Float32Array.from(ids), [2, 3]));
      backward([output], [Tensor.randn(output.shape)]);
      new SGD(params, { lr: 0.5 }).step();
      for (const p of lm.parameters()) p.grad = null;
    };
    const writes: [string, () => void][] = [
      ['embedding.storage.write', () => embedding.storage.write(Float32Array.from({ length: 16 }, (_, i) => Math.cos(i)), 3 * 16)],
      ['an optimizer step on the embedding alone', () => trainOnly([embedding])],
      ['an optimizer step on w_ih alone', () => trainOnly([named.get('rnn.weight_ih_l0')!])],
      ['w_ih.storage.write', () => named.get('rnn.weight_ih_l0')!.storage.write(new Float32Array(16).fill(-0.5), 5 * 16)],
      ['loadStateDict', () => lm.loadStateDict(new SequenceModel({ cell: 'lstm', vocabSize: 30, embeddingDim: 16, hiddenSize: 24, numLayers: 2, outputSize: 30 }).stateDict())],
    ];
    for (const [what, write] of writes) {
      const before = stepped();
      write();
      const after = stepped();
      expect(after, what).to.not.deep.equal(before);
      expect(after, what).to.deep.equal(forward());
    }
    // a write queued between two steps in async mode (row 11: read by the second step only)
    const unchanged = stepped();
    const [first, second] = await runAsync(() => {
      const state = { h: Tensor.from(h0.toArray(), h0.shape), c: Tensor.from(c0.toArray(), c0.shape) };
      const a = lm.step(ids.slice(0, 3), state);
      embedding.storage.write(new Float32Array(16).fill(0.25), 11 * 16);
      return [a, lm.step(ids.slice(3), state)];
    });
    await synchronize();
    expect([...values(first), ...values(second)]).to.deep.equal(forward());
    expect(values(second)).to.not.deep.equal(unchanged.slice(3 * 30));

    // two models sharing one embedding storage, each with its own w_ih (written as often: the same
    // versions), alternating: each step uses its own
    const [a, b] = [0, 1].map(() => new SequenceModel({ cell: 'lstm', vocabSize: 30, embeddingDim: 16, hiddenSize: 24, numLayers: 2, outputSize: 30 }));
    (new Map(b.namedParameters()).get('embedding.weight') as unknown as { storage: unknown }).storage = new Map(a.namedParameters()).get('embedding.weight')!.storage;
    for (const model of [a, b]) model.eval();
    for (let round = 0; round < 2; ++round) {
      expect(stepped(a), `model a, round ${round}`).to.deep.equal(forward(a));
      expect(stepped(b), `model b, round ${round}`).to.deep.equal(forward(b));
    }
    expect(stepped(a)).to.not.deep.equal(stepped(b));
  });

  it('bad input: a clear error naming the argument', () => {
    const lstm = new LSTM({ inputSize: 4, hiddenSize: 5, numLayers: 2 });
    const state = lstm.initialState(2);
    const x = Tensor.randn([2, 4]);
    const expectError = (fn: () => unknown, type: ErrorConstructor, code: string | undefined, text: RegExp) => {
      try {
        fn();
      } catch (error) {
        expect(error).to.be.instanceOf(type);
        if (code) expect((error as { code?: string }).code).to.equal(code);
        expect((error as Error).message).to.match(text);
        return;
      }
      expect.fail(`expected ${text}`);
    };
    expectError(() => new LSTM({ inputSize: 4, hiddenSize: 5, bidirectional: true }).step(x, state), TypeError, 'ERR_INVALID_ARG_VALUE', /one direction/);
    expectError(() => lstm.step(Tensor.randn([2, 3]), state), RangeError, 'ERR_SHAPE_MISMATCH', /input of shape \[B, 4\]/);
    expectError(() => lstm.step(Tensor.randn([1, 2, 4]), state), RangeError, 'ERR_SHAPE_MISMATCH', /input of shape/);
    expectError(() => lstm.step(x, lstm.initialState(3)), RangeError, 'ERR_SHAPE_MISMATCH', /state\.h of shape \[2, 2, 5\]/);
    expectError(() => lstm.step(x, { h: state.h }), TypeError, undefined, /state\.c/);
    expectError(() => lstm.step(x, null as never), TypeError, undefined, /expected state/);
    expectError(() => lstm.step(x, state, { out: Tensor.empty([2, 4]) }), RangeError, 'ERR_SHAPE_MISMATCH', /options\.out of shape \[2, 5\]/);
    expectError(() => lstm.step(x, state, { bogus: 1 } as never), TypeError, undefined, /bogus/);
    const lm = new SequenceModel({ vocabSize: 10, hiddenSize: 5, outputSize: 10 });
    expectError(() => lm.step([3, 10], lm.initialState(2)), RangeError, undefined, /input\[1\] to be a token id in \[0, 10\)/);
    expectError(() => lm.step([1.5], lm.initialState(1)), RangeError, undefined, /input\[0\] to be a token id/);
    expectError(() => lm.step('ab' as never, lm.initialState(1)), TypeError, undefined, /token ids/);
    const regressor = new SequenceModel({ inputSize: 3, hiddenSize: 5, outputSize: 1 });
    expectError(() => regressor.step([1, 2, 3], regressor.initialState(1)), TypeError, undefined, /Tensor \[B, 3\]/);
  });
});

describe('step() calls that follow each other: the first recurrent product made ahead', () => {
  // On one thread, a step() call given the state the last call left takes the first layer's
  // recurrent product that call made ahead from it (cpp/step.cc, StepAhead, kept with w_hh_l0's
  // packed copies), and the calls alternate their order of weight reads. A stale product would be
  // a silent wrong answer, so every step here is checked against the stack's own path (forward()
  // with lengths), which never takes one, from a copy of the state the step is given.
  let threads = 1;
  before(() => {
    threads = backends().cpu.threads;
    setNumThreads(1);
  });
  after(() => setNumThreads(threads));

  const copy = (t: Tensor) => Tensor.from(t.toArray(), t.shape);
  const checkedStep = (layer: Layer, x: Tensor, state: { h: Tensor; c?: Tensor }, what: string) => {
    const B = x.shape[0];
    const own = noGrad(() => layer.forward(x.reshape([1, ...x.shape]), { h0: copy(state.h), ...(state.c ? { c0: copy(state.c) } : {}), lengths: new Array(B).fill(1) })) as
      { output: Tensor; h: Tensor; c?: Tensor };
    const y = layer.step(x, state);
    expect(values(y), `${what}: output`).to.deep.equal(values(own.output.select(0, 0)));
    expect(values(state.h), `${what}: h`).to.deep.equal(values(own.h));
    if (state.c) expect(values(state.c), `${what}: c`).to.deep.equal(values(own.c!));
    return values(y);
  };

  // layers large enough that two threads split their units (a team: each thread makes its own
  // columns of the product at the end of the first layer)
  const teamLayers = (): [string, Layer][] => [
    ['LSTM 2 x 128', new LSTM({ inputSize: 6, hiddenSize: 128, numLayers: 2 })],
    ['GRU 3 x 160', new GRU({ inputSize: 6, hiddenSize: 160, numLayers: 3 })],
    ['tanh RNN 2 x 272', new RNN({ inputSize: 6, hiddenSize: 272, numLayers: 2 })],
  ];

  it("a chain of calls equals the stack's path step by step, for every cell, at batches up to the limits and past them, on one and two threads", () => {
    try {
      for (const threads of [1, 2]) {
        setNumThreads(threads);
        for (const [name, layer] of [...layers(), ...teamLayers()]) {
          for (const B of [1, 3, 7, 8, 16, 17]) {
            const state = layer.initialState(B);
            noGrad(() => state.h.storage.write(Tensor.randn(state.h.shape).mul(0.5).toArray(), 0));
            for (let t = 0; t < 7; ++t) checkedStep(layer, Tensor.randn([B, 6]), state, `${name}, B = ${B}, ${threads} thread(s), step ${t + 1}`);
          }
        }
      }
    } finally {
      setNumThreads(1);
    }
  });

  it('sees every write between two calls: to the weights, to the state, the precision, emptyCache(), another model on the same w_hh', async () => {
    for (const [cell, H, threads] of [['lstm', 20, 1], ['gru', 20, 1], ['lstm', 128, 2], ['gru', 160, 2]] as const) {
      setNumThreads(threads);
      const make = () => (cell === 'lstm' ? new LSTM({ inputSize: 6, hiddenSize: H, numLayers: 2 }) : new GRU({ inputSize: 6, hiddenSize: H, numLayers: 2 }));
      const layer = make();
      const named = new Map(layer.namedParameters());
      const w_hh = named.get('weight_hh_l0')!;
      const state = layer.initialState(2);
      const other = make();
      (new Map(other.namedParameters()).get('weight_hh_l0') as unknown as { storage: unknown }).storage = w_hh.storage;
      const writes: [string, () => void][] = [
        ['w_hh_l0.storage.write', () => w_hh.storage.write(Float32Array.from({ length: H }, (_, i) => Math.sin(i)), 7 * H)],
        ['uniform_(w_hh_l0)', () => { uniform_(w_hh, -0.3, 0.3); }],
        ['an SGD step', () => {
          const { output } = layer.forward(Tensor.randn([3, 2, 6]));
          backward([output], [Tensor.ones(output.shape)]);
          new SGD(layer.parameters(), { lr: 0.2 }).step();
          for (const p of layer.parameters()) p.grad = null;
        }],
        ['loadStateDict', () => layer.loadStateDict(make().stateDict())],
        ['a write to w_hh_l0 through a stateDict() view', () => { normal_(layer.stateDict().weight_hh_l0, 0, 0.2); }],
        ['state.h written in place (layer 0)', () => state.h.storage.write(new Float32Array([0.75]), 3)],
        ['state.h replaced by a tensor of other values', () => { (state as { h: Tensor }).h = state.h.mul(-1); }],
        ["setFloat32MatmulPrecision('medium')", () => setFloat32MatmulPrecision('medium')],
        ["setFloat32MatmulPrecision('highest')", () => setFloat32MatmulPrecision('highest')],
        ['emptyCache()', () => { emptyCache(); }],
        ['the other model (sharing w_hh_l0) steps from its own state', () => { other.step(Tensor.randn([2, 6]), other.initialState(2)); }],
        ['the other model steps from a copy of this state', () => {
          const given = { h: copy(state.h), ...(state.c ? { c: copy(state.c) } : {}) };
          checkedStep(other, Tensor.randn([2, 6]), given, `${cell} ${H}, ${threads} thread(s): the other model`);
        }],
      ];
      try {
        for (let t = 0; t < 3; ++t) checkedStep(layer, Tensor.randn([2, 6]), state, `${cell} ${H}, ${threads} thread(s): step ${t + 1}`);
        for (const [what, write] of writes) {
          write();
          for (let t = 0; t < 3; ++t) checkedStep(layer, Tensor.randn([2, 6]), state, `${cell} ${H}, ${threads} thread(s): ${what}, then step ${t + 1}`);
        }
      } finally {
        setFloat32MatmulPrecision('highest');
      }
      // async mode: a write queued between two calls is seen by the second only
      const x = [Tensor.randn([1, 2, 6]), Tensor.randn([1, 2, 6])];
      const own = (input: Tensor, from: { h: Tensor; c?: Tensor }) =>
        noGrad(() => layer.forward(input, { h0: from.h, ...(from.c ? { c0: from.c } : {}), lengths: [1, 1] })) as { output: Tensor; h: Tensor; c?: Tensor };
      const one = own(x[0], { h: copy(state.h), ...(state.c ? { c: copy(state.c) } : {}) });
      const stale = own(x[1], one);
      const [first, second] = await runAsync(() => {
        const a = layer.step(x[0].select(0, 0), state);
        w_hh.storage.write(new Float32Array(H).fill(0.5), 2 * H);
        return [a, layer.step(x[1].select(0, 0), state)];
      });
      await synchronize();
      expect(values(first), `${cell} ${H}, ${threads} thread(s): async, the first step`).to.deep.equal(values(one.output.select(0, 0)));
      expect(values(second), `${cell} ${H}, ${threads} thread(s): async, the second step`).to.deep.equal(values(own(x[1], one).output.select(0, 0)));
      expect(values(second), `${cell} ${H}, ${threads} thread(s): async, the second step saw the write`).to.not.deep.equal(values(stale.output.select(0, 0)));
    }
    setNumThreads(1);
  });

  it('what a call leaves for the next counts in packedWeightBytes, and emptyCache() drops it', () => {
    const lstm = new LSTM({ inputSize: 6, hiddenSize: 64 });
    const state = lstm.initialState(4);
    const x = Tensor.randn([4, 6]);
    lstm.step(x, state);
    emptyCache();
    lstm.step(x, state); // packs again; leaves its state
    const packed = memoryStats().packedWeightBytes;
    lstm.step(x, state); // follows: leaves the next product as well
    expect(memoryStats().packedWeightBytes - packed, 'the product: 4 rows of 4 x 64 floats').to.be.at.least(4 * 4 * 64 * 4);
    emptyCache();
    expect(memoryStats().packedWeightBytes).to.equal(0);
  });
});

describe('SequenceModel#sample(): the sampling loop in one native call', () => {
  // the same draws one step() at a time, as generation ran before: sampleLogits on each row, the
  // excluded tokens at -Infinity
  const loop = (model: SequenceModel, logits: Tensor, state: { h: Tensor; c?: Tensor }, length: number, temperature: number,
    topK: number | undefined, exclude: number[]): number[] => {
    const [B, V] = logits.shape;
    const tokens: number[] = [];
    for (let i = 0; i < length; ++i) {
      const rows = logits.toArray();
      const drawn = new Int32Array(B);
      for (let b = 0; b < B; ++b) {
        const row = Float32Array.from(rows.subarray(b * V, (b + 1) * V));
        for (const id of exclude) row[id] = -Infinity;
        drawn[b] = sampleLogits(row, temperature, topK);
      }
      tokens.push(...drawn);
      model.step(drawn, state, { out: logits });
    }
    return tokens;
  };
  const copyState = (state: { h: Tensor; c?: Tensor }) => ({ h: Tensor.from(state.h.toArray(), state.h.shape), ...(state.c ? { c: Tensor.from(state.c.toArray(), state.c.shape) } : {}) });

  it('draws what step() and sampleLogits draw, token for token, and leaves the logits, the state and the generator where they leave them', () => {
    // On one thread the loop reads the weights in an order of its own (layer 0's recurrent product
    // a step early, every other step backwards): 1 to 3 layers, and a vocabulary too large for the
    // first layer's token table (4,000 ids: the step multiplies the embedded tokens), and at
    // 'medium' (BF16 products where this CPU runs them, else FP32 again)
    const before = backends().cpu.threads;
    try {
      for (const [threads, cell, L, vocab, precision] of [[1, 'lstm', 2, 23, 'highest'], [1, 'gru', 2, 23, 'highest'], [1, 'rnn', 2, 23, 'highest'],
        [1, 'lstm', 1, 23, 'highest'], [1, 'gru', 3, 23, 'highest'], [1, 'lstm', 2, 4000, 'highest'], [1, 'lstm', 2, 23, 'medium'],
        [2, 'lstm', 2, 23, 'highest'], [2, 'gru', 2, 23, 'highest'], [2, 'rnn', 2, 23, 'highest']] as const) {
        setNumThreads(threads);
        setFloat32MatmulPrecision(precision);
        sampleCase(cell, L, vocab, `${threads} thread(s), ${L} layer(s), vocabulary ${vocab}, precision ${precision}`);
      }
    } finally {
      setNumThreads(before);
      setFloat32MatmulPrecision('highest');
    }
  });
  function sampleCase(cell: 'lstm' | 'gru' | 'rnn', L: number, vocab: number, where: string): void {
    seed(11);
    const model = new SequenceModel({ cell, vocabSize: vocab, embeddingDim: 6, hiddenSize: 19, numLayers: L, outputSize: vocab });
    for (const [B, temperature, topK, exclude] of [[1, 1, undefined, [0]], [3, 0.6, 5, [2, 4]], [2, 0, undefined, []], [2, 1.3, 1, [0]]] as const) {
      const state = model.initialState(B);
      noGrad(() => state.h.storage.write(Tensor.randn(state.h.shape).mul(0.5).toArray(), 0));
      const logits = model.step(Int32Array.from({ length: B }, (_, b) => 3 + b), state);
      const twinState = copyState(state);
      const twinLogits = Tensor.from(logits.toArray(), logits.shape);
      seed(5);
      const tokens = model.sample(logits, state, { length: 40, temperature, topK, exclude: [...exclude] });
      const after = getRngState();
      seed(5);
      const expected = loop(model, twinLogits, twinState, 40, temperature, topK, [...exclude]);
      const what = `${cell} B=${B} temperature ${temperature} topK ${topK}, ${where}`;
      expect(Array.from(tokens), what).to.deep.equal(expected);
      expect(tokens.some((t) => exclude.includes(t as never)), what).to.equal(false);
      expect(new Set(tokens).size, what).to.be.above(temperature === 0 || topK === 1 ? 0 : 3);
      expect(values(logits), what).to.deep.equal(values(twinLogits));
      expect(values(state.h), what).to.deep.equal(values(twinState.h));
      if (state.c) expect(values(state.c), what).to.deep.equal(values(twinState.c!));
      expect(after, what).to.deep.equal(getRngState());
    }
  }

  it('follows the weights as they change, and goes on from where the last call left off', () => {
    seed(2);
    const model = new SequenceModel({ cell: 'lstm', vocabSize: 12, embeddingDim: 4, hiddenSize: 8, outputSize: 12 });
    const run = (calls: number[]) => {
      seed(9);
      const state = model.initialState();
      const logits = model.step([1], state);
      return calls.flatMap((length) => Array.from(model.sample(logits, state, { length })));
    };
    const whole = run([30]);
    expect(run([10, 20])).to.deep.equal(whole);
    expect(run([0, 30, 0])).to.deep.equal(whole);
    model.loadStateDict(new Map([['head.bias', Tensor.from(Float32Array.from({ length: 12 }, (_, i) => (i === 7 ? 50 : 0)), [12])]]), { strict: false });
    expect(run([30])).to.deep.equal(Array(30).fill(7));
  });

  it('bad input: a clear error naming the argument', () => {
    const model = new SequenceModel({ vocabSize: 10, hiddenSize: 5, outputSize: 10 });
    const state = model.initialState(2);
    const logits = Tensor.zeros([2, 10]);
    expect(() => model.sample(Tensor.zeros([2, 9]), state, { length: 3 })).to.throw(RangeError, /logits of shape \[B, 10\]/);
    expect(() => model.sample(logits, model.initialState(3), { length: 3 })).to.throw(RangeError, /state\.h of shape \[1, 2, 5\]/);
    expect(() => model.sample(logits, state, { length: -1 })).to.throw(RangeError, /options\.length/);
    expect(() => model.sample(logits, state, {} as never)).to.throw(TypeError, /options\.length/);
    expect(() => model.sample(logits, state, { length: 3, temperature: -1 })).to.throw(RangeError, /options\.temperature/);
    expect(() => model.sample(logits, state, { length: 3, topK: 0 })).to.throw(RangeError, /options\.topK/);
    expect(() => model.sample(logits, state, { length: 3, exclude: [10] })).to.throw(RangeError, /options\.exclude\[0\]/);
    expect(() => model.sample(logits, state, { length: 3, exclude: 'a' as never })).to.throw(TypeError, /options\.exclude/);
    expect(() => model.sample(logits, state, { length: 3, bogus: 1 } as never)).to.throw(TypeError, /bogus/);
    expect(() => model.sample('x' as never, state, { length: 3 })).to.throw(TypeError, /logits/);
    const regressor = new SequenceModel({ inputSize: 3, hiddenSize: 5, outputSize: 3 });
    expect(() => regressor.sample(Tensor.zeros([1, 3]), regressor.initialState(), { length: 3 })).to.throw(TypeError, /vocabSize/);
    const wide = new SequenceModel({ vocabSize: 4, hiddenSize: 5, outputSize: 6 });
    expect(() => wide.sample(Tensor.zeros([1, 6]), wide.initialState(), { length: 3 })).to.throw(RangeError, /6 outputs must be tokens/);
    expect(() => new SequenceModel({ vocabSize: 4, hiddenSize: 5, outputSize: 4, bidirectional: true }).sample(Tensor.zeros([1, 4]), { h: Tensor.zeros([2, 1, 5]), c: Tensor.zeros([2, 1, 5]) }, { length: 1 }))
      .to.throw(TypeError, /one direction/);
  });
});
