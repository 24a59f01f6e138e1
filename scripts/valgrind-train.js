// A short training run for valgrind (npm run test:valgrind): an LSTM and a GRU model trained
// with fit() (async stream, thread pool, caching allocator), saved, loaded and run again.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const r = require('..');

async function main() {
  r.seed(1);
  console.log(`cpu kernels: ${r.backends().cpu.isa}, ${r.backends().cpu.threads} threads`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-valgrind-'));
  try {
    for (const cell of ['lstm', 'gru', 'rnn']) {
      const model = new r.SequenceModel({ cell, inputSize: 4, hiddenSize: 16, numLayers: 2, bidirectional: cell === 'gru', outputSize: 1, outputs: 'last' });
      const data = { inputs: r.Tensor.randn([32, 10, 4]), targets: r.Tensor.randn([32, 1]) };
      const history = await r.fit(model, data, { epochs: 2, batchSize: 8, optimizer: new r.Adam(model.parameters(), { lr: 1e-2 }), checkpoint: { path: path.join(dir, 'ckpt.safetensors') } });
      const file = path.join(dir, `${cell}.safetensors`);
      await r.save(model, file);
      const loaded = await r.load(file);
      loaded.eval();
      const out = loaded.forward(data.inputs.slice(0, 0, 4)).output.toArray();
      console.log(`${cell}: loss ${history.loss.map((l) => l.toFixed(4)).join(' -> ')}, output[0] ${out[0].toFixed(4)}`);
    }
    // ragged lengths through the layer API, with gradients
    const lstm = new r.LSTM({ inputSize: 3, hiddenSize: 5, bidirectional: true });
    const x = r.Tensor.randn([6, 4, 3], { requiresGrad: true });
    lstm.forward(x, { lengths: [6, 2, 5, 1] }).output.sum().backward();
    console.log(`ragged bidirectional LSTM: |dx| sum ${x.grad.abs().sum().item().toFixed(4)}`);
    r.emptyCache();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
