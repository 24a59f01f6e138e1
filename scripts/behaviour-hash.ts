/**
 * Hashes of what the library computes, to prove a refactor changed nothing: forward outputs and
 * final states, every gradient, three optimizer steps of each optimizer, a short fit() (with
 * dropout and clipping), a saved file and an ONNX export, for every cell, stacked, bidirectional
 * and ragged. Run it before and after, on each instruction set:
 *
 *   for isa in baseline avx2 avx512; do RECURRENT_ISA=$isa npx tsx scripts/behaviour-hash.ts; done
 *
 * Prints one line per section and the total; equal lines mean bit-identical behaviour.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  Adam, AdamW, GRU, LSTM, RMSprop, RNN, SGD, SequenceModel, Tensor, backends, clipGradNorm, exportOnnxBuffer, fit, manualSeed, save,
} from '../lib/index';

const sections: [string, string][] = [];
function digest(name: string, parts: (Float32Array | Uint8Array | string)[]): void {
  const hash = createHash('sha256');
  for (const p of parts) hash.update(typeof p === 'string' ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength));
  sections.push([name, hash.digest('hex').slice(0, 16)]);
}

async function main(): Promise<void> {
  const cells = [
    ['lstm', (o: object) => new LSTM(o as never)], ['gru', (o: object) => new GRU(o as never)],
    ['rnn_tanh', (o: object) => new RNN(o as never)], ['rnn_relu', (o: object) => new RNN({ ...o, nonlinearity: 'relu' } as never)],
  ] as const;
  for (const [name, make] of cells) {
    for (const batchFirst of [false, true]) {
      manualSeed(1);
      const layer = make({ inputSize: 6, hiddenSize: 9, numLayers: 2, bidirectional: true, batchFirst });
      const x = Tensor.randn(batchFirst ? [5, 7, 6] : [7, 5, 6], { requiresGrad: true });
      const h0 = Tensor.randn([4, 5, 9], { requiresGrad: true });
      const state = name === 'lstm' ? { h0, c0: Tensor.randn([4, 5, 9], { requiresGrad: true }) } : { h0 };
      const r = layer.forward(x, { ...state, lengths: [7, 6, 6, 3, 1] }) as { output: Tensor; h: Tensor; c?: Tensor };
      const loss = r.output.tanh().sum().add(r.h.square().mean()).add(r.c ? r.c.mean() : Tensor.zeros([]));
      loss.backward();
      digest(`${name}${batchFirst ? ' batchFirst' : ''} forward`, [r.output.toArray(), r.h.toArray(), ...(r.c ? [r.c.toArray()] : [])]);
      digest(`${name}${batchFirst ? ' batchFirst' : ''} gradients`, [x.grad!.toArray(), h0.grad!.toArray(), ...layer.parameters().map((p) => p.grad!.toArray())]);
    }
  }
  const optimizers = [
    ['SGD momentum nesterov', (p: Tensor[]) => new SGD(p, { lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-3 })],
    ['Adam', (p: Tensor[]) => new Adam(p, { lr: 1e-2 })],
    ['AdamW', (p: Tensor[]) => new AdamW(p, { lr: 1e-2, weightDecay: 0.1 })],
    ['RMSprop centered', (p: Tensor[]) => new RMSprop(p, { lr: 1e-2, centered: true, momentum: 0.5 })],
  ] as const;
  for (const [name, make] of optimizers) {
    manualSeed(2);
    const lstm = new LSTM({ inputSize: 4, hiddenSize: 8, numLayers: 2 });
    const optimizer = make(lstm.parameters());
    const x = Tensor.randn([6, 3, 4]);
    for (let step = 0; step < 3; ++step) {
      optimizer.zeroGrad();
      lstm.forward(x).output.square().mean().backward();
      clipGradNorm(lstm.parameters(), 0.5);
      optimizer.step();
    }
    digest(`${name}: 3 steps`, lstm.parameters().map((p) => p.toArray()));
  }
  manualSeed(3);
  const model = new SequenceModel({ cell: 'lstm', vocabSize: 11, embeddingDim: 5, hiddenSize: 12, numLayers: 2, dropout: 0.2, outputSize: 11 });
  const stream = Tensor.from(Float32Array.from({ length: 400 }, (_, i) => (i * 7) % 11));
  const history = await fit(model, { stream, targets: Tensor.from(Float32Array.from({ length: 400 }, (_, i) => (i * 7 + 7) % 11)) },
    { loss: 'crossEntropy', epochs: 2, batchSize: 4, bpttSteps: 10, clipGradNorm: 1, seed: 4 });
  digest('fit: token stream, dropout, truncated BPTT', [Float32Array.from(history.batchLoss), ...model.parameters().map((p) => p.toArray())]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-hash-'));
  await save(model, path.join(dir, 'm.safetensors'));
  digest('save: safetensors bytes', [fs.readFileSync(path.join(dir, 'm.safetensors'))]);
  fs.rmSync(dir, { recursive: true, force: true });
  digest('exportOnnx: bytes', [exportOnnxBuffer(model)]);
  const total = createHash('sha256').update(sections.map(([n, h]) => `${n}=${h}`).join('\n')).digest('hex').slice(0, 16);
  console.log(`ISA ${backends().cpu.isa}`);
  for (const [name, hash] of sections) console.log(`${hash}  ${name}`);
  console.log(`${total}  total`);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
