#!/usr/bin/env node
// Prints one JSON line of a fixed computation's results, for scripts/test-arm64.sh to compare the
// arm64 build (under qemu-aarch64) with the x64 one: an LSTM and a GRU stack (bidirectional,
// ragged lengths) forward and backward, a few Adam steps of fit() on a SequenceModel, and a
// Seq2Seq's loss and gradients. Inputs and weights come from a seeded generator written here, so
// both builds start from the same numbers.
//   node scripts/arm64-compare.js <lib/index.js of a build>
'use strict';
const path = require('node:path');
const lib = require(path.resolve(process.argv[2]));
const { LSTM, GRU, Tensor, SequenceModel, Seq2Seq, Adam, backends, fit } = lib;

let state = 12345;
const rand = () => {
  state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
  return state / 4294967296 - 0.5;
};
const fill = (module) => {
  for (const p of module.parameters()) p.storage.write(Float32Array.from({ length: p.size }, () => rand() * 0.6), 0);
};
const out = { isa: backends().cpu.isa, arch: process.arch };

for (const [name, Cell] of [['lstm', LSTM], ['gru', GRU]]) {
  const layer = new Cell({ inputSize: 5, hiddenSize: 7, numLayers: 2, bidirectional: true });
  fill(layer);
  const x = Tensor.from(Float32Array.from({ length: 6 * 3 * 5 }, rand), [6, 3, 5], { requiresGrad: true });
  const r = layer.forward(x, { lengths: [6, 4, 1] });
  r.output.mul(Tensor.from(Float32Array.from({ length: r.output.size }, rand), r.output.shape)).sum().backward();
  out[name] = { output: Array.from(r.output.toArray()), h: Array.from(r.h.toArray()), dx: Array.from(x.grad.toArray()),
    grads: layer.parameters().map((p) => Array.from(p.grad.toArray())) };
}

(async () => {
  const model = new SequenceModel({ cell: 'lstm', inputSize: 3, hiddenSize: 8, outputSize: 2, outputs: 'last' });
  fill(model);
  const inputs = Tensor.from(Float32Array.from({ length: 16 * 5 * 3 }, rand), [16, 5, 3]);
  const targets = Tensor.from(Float32Array.from({ length: 16 * 2 }, rand), [16, 2]);
  const history = await fit(model, { inputs, targets }, { epochs: 3, batchSize: 4, shuffle: false, optimizer: new Adam(model.parameters(), { lr: 1e-2 }) });
  out.fit = { loss: history.loss, weights: model.parameters().map((p) => Array.from(p.toArray())) };

  const s2s = new Seq2Seq({ sourceVocabSize: 6, targetVocabSize: 5, embeddingDim: 4, hiddenSize: 8, numLayers: 2 });
  fill(s2s);
  const loss = s2s.loss([[1, 2, 3], [4, 5]], [[0, 1], [2, 3, 4]]);
  loss.backward();
  out.seq2seq = { loss: loss.item(), grads: s2s.parameters().map((p) => Array.from(p.grad.toArray())),
    translation: s2s.translate([[1, 2, 3], [4, 5]], { beamWidth: 3, maxLength: 6 }) };
  process.stdout.write(JSON.stringify(out) + '\n');
})();
