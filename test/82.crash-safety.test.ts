/**
 * A crash in the middle of saving never costs the previous checkpoint: a child process
 * that saves checkpoints in a loop is killed with SIGKILL at random moments, and every
 * time the file on disk still loads.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadCheckpoint } from '../lib/index';

const child = (file: string) => `
  const { LSTM, Adam, Tensor, saveCheckpoint } = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'index.js'))});
  const lstm = new LSTM({ inputSize: 64, hiddenSize: 256, numLayers: 2 }); // ~1.3 M parameters, ~5 MB per file
  (async () => {
    for (let step = 1; ; ++step) {
      await saveCheckpoint(${JSON.stringify(file)}, { model: lstm.stateDict(), optimizerBuffers: {}, tensors: { marker: Tensor.full([1024], step) }, state: { step } });
      process.stdout.write(step + '\\n');
    }
  })();
`;

describe('crash safety of checkpoints', function () {
  this.timeout(120_000);

  it('SIGKILL at random moments during saves leaves a loadable checkpoint every time', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-crash-'));
    const file = path.join(dir, 'run.ckpt.safetensors');
    let seed = 12345;
    const random = () => ((seed = (seed * 48271) % 0x7fffffff) / 0x7fffffff);
    try {
      for (let round = 0; round < 12; ++round) {
        const proc = spawn(process.execPath, ['-e', child(file)], { stdio: ['ignore', 'pipe', 'inherit'] });
        let saved = 0;
        await new Promise<void>((resolve) => {
          proc.stdout.on('data', (chunk: Buffer) => {
            const steps = chunk.toString().trim().split('\n').map(Number);
            saved = Math.max(saved, ...steps);
            // once a few saves landed, kill it at a random moment within the next saves
            if (saved >= 2 && !proc.killed) setTimeout(() => proc.kill('SIGKILL'), Math.floor(random() * 60));
          });
          proc.on('close', () => resolve()); // after its stdout is read to the end ('exit' can come first)
        });
        const checkpoint = await loadCheckpoint(file); // must parse: never a torn file
        const step = checkpoint.state.step as number;
        // the last save the child reported finished, or the one after it if the kill came
        // between its rename and its report
        expect(step).to.be.oneOf([saved, saved + 1]);
        expect(Array.from(checkpoint.tensors.marker.toArray().slice(0, 3))).to.deep.equal([step, step, step]);
        expect(Object.keys(checkpoint.model)).to.include('weight_hh_l1');
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
