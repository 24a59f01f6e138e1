/**
 * A character-level LSTM on the State of the Union corpus shipped in examples/data,
 * with the library API rather than the CLI: train for a time budget, report validation
 * bits per character after each epoch, sample at several temperatures, save, reload.
 *
 *   npx tsx examples/char-model.ts [minutes]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CharLanguageModel, lossChartSvg, seed } from '../lib/index';

const minutes = Number(process.argv[2] ?? 5);

async function main(): Promise<void> {
  const text = fs.readFileSync(path.join(__dirname, 'data', 'sotu.txt'), 'utf8');
  seed(1);
  const lm = new CharLanguageModel(text, { cell: 'lstm', hiddenSize: 256, numLayers: 2, embeddingDim: 64 });
  console.log(`${text.length.toLocaleString('en-US')} characters, ${lm.tokenizer.vocabSize} symbols, ${lm.model.numParameters().toLocaleString('en-US')} parameters; training for up to ${minutes} min`);
  const controller = new AbortController();
  const deadline = Date.now() + minutes * 60_000;
  const started = performance.now();
  let speed = 0;
  const history = await lm.train(text, {
    epochs: 50, batchSize: 32, bpttSteps: 64, lr: 3e-3, signal: controller.signal,
    onProgress: (p) => {
      speed = p.timestepSamplesPerSecond;
      if (Date.now() > deadline) controller.abort();
    },
    onEpochEnd: ({ epoch, valBitsPerChar }) => {
      const elapsed = (performance.now() - started) / 1000;
      console.log(`epoch ${epoch + 1}: validation ${valBitsPerChar!.toFixed(3)} bits/char (${elapsed.toFixed(0)} s, ${Math.round(speed).toLocaleString('en-US')} timestep-samples/s)`);
    },
  });
  const out = path.join(__dirname, 'output');
  fs.mkdirSync(out, { recursive: true });
  await lm.save(path.join(out, 'sotu-char-lstm.safetensors'));
  fs.writeFileSync(path.join(out, 'sotu-char-lstm.loss.svg'), await lossChartSvg(history, { title: 'SOTU character LSTM', yTitle: 'bits per character', scale: 1 / Math.LN2 }));
  const again = await CharLanguageModel.load(path.join(out, 'sotu-char-lstm.safetensors'));
  for (const temperature of [0.5, 0.8, 1.0]) {
    console.log(`\n--- temperature ${temperature}\n${again.generate({ prime: 'The American people ', length: 300, temperature, seed: 1 })}`);
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
