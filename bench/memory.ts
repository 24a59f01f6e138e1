/**
 * Resident memory over a long run: 10,000 training steps of a small LSTM through fit(),
 * sampling the resident set size every 500 steps. Passes when the RSS grows less than 5%
 * between the end of warm-up (step 1,000) and the end.
 *
 *   npm run memcheck            (node --min-semi-space-size=16 --require tsx/cjs bench/memory.ts [steps])
 *
 * V8 starts its young generation small and doubles it once garbage keeps surviving: with
 * default flags that one-time resize (about 8 MB of V8 heap, 14 MB of RSS, near step
 * 4,500 here) lands after any fixed warm-up and reads as growth, though the heap is flat
 * before and after it. `npm run memcheck` therefore starts V8's young generation at its
 * 16 MB maximum; the heap size is printed beside the RSS so either run can be read.
 * Measured here (10,000 steps, 34-43 s): with the flag 126.6 MB at step 1,000 and 125.6 MB
 * at 10,000 (-0.8%); without it 87.2 -> 95.3 MB, all of it one step at step ~6,500 where V8's
 * heap went from 16.5 to 24.5 MB, flat before and after.
 */
import { Adam, SequenceModel, Tensor, fit, memoryStats, seed } from '../lib/index';

const steps = Number(process.argv[2] ?? 10_000);

async function main(): Promise<void> {
  seed(1);
  const model = new SequenceModel({ cell: 'lstm', inputSize: 8, hiddenSize: 64, numLayers: 2, outputSize: 1, outputs: 'last' });
  const data = { inputs: Tensor.randn([512, 20, 8]), targets: Tensor.randn([512, 1]) };
  const batchesPerEpoch = 512 / 16;
  const samples: { step: number; rssMb: number; heapMb: number }[] = [];
  const started = performance.now();
  await fit(model, data, {
    epochs: Math.ceil(steps / batchesPerEpoch), batchSize: 16, optimizer: new Adam(model.parameters(), { lr: 1e-3 }),
    onBatchEnd: ({ step }) => {
      if (step % 500 === 0) {
        const m = process.memoryUsage();
        samples.push({ step, rssMb: m.rss / 2 ** 20, heapMb: m.heapTotal / 2 ** 20 });
      }
    },
  });
  const seconds = (performance.now() - started) / 1000;
  for (const s of samples) console.log(`step ${String(s.step).padStart(6)}: RSS ${s.rssMb.toFixed(1)} MB (V8 heap ${s.heapMb.toFixed(1)} MB)`);
  const warm = samples.find((s) => s.step >= 1000) ?? samples[0];
  const last = samples[samples.length - 1];
  const growth = (last.rssMb - warm.rssMb) / warm.rssMb;
  console.log(`${last.step} steps in ${seconds.toFixed(0)} s; RSS ${warm.rssMb.toFixed(1)} MB at step ${warm.step} -> ${last.rssMb.toFixed(1)} MB: ${(growth * 100).toFixed(1)}% growth (limit 5%)`);
  console.log(`native: ${(memoryStats().cachedBytes / 2 ** 20).toFixed(1)} MB in the tensor cache; V8 flags: ${process.execArgv.join(' ') || '(default)'}`);
  if (growth >= 0.05) process.exitCode = 1;
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
