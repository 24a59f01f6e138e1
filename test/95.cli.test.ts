/**
 * The `recurrent` CLI end to end on a text file a user brings: train (with progress,
 * checkpoint and chart), resume, sample, info; bad flags and files give a clear message
 * and a non-zero exit, never a stack trace.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { lossChartSvg } from '../lib/diagnostics/chart';
import { CharLanguageModel } from '../lib/index';

const root = path.join(__dirname, '..');
const bin = path.join(root, 'bin', 'recurrent.js');
let dir: string;

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectCleanFailure(r: { status: number | null; stdout: string; stderr: string }, pattern: RegExp): void {
  expect(r.status, r.stdout + r.stderr).to.equal(1);
  expect(r.stderr).to.match(pattern);
  expect(r.stderr).to.not.match(/^\s+at /m); // no stack trace
}

describe('recurrent CLI', function () {
  this.timeout(180_000);

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-cli-'));
    const sentences = ['the cat sat on the mat. ', 'a dog ran in the fog. ', 'we like to train models. ', 'time flies like an arrow. '];
    let text = '';
    for (let i = 0; text.length < 12000; ++i) text += sentences[(i * 7) % sentences.length];
    fs.writeFileSync(path.join(dir, 'my-text.txt'), text);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const small = ['--hidden', '24', '--layers', '1', '--embedding', '8', '--bptt', '16', '--batch-size', '8', '--epochs', '2', '--lr', '0.01'];

  it('train: learns the text, saves model, checkpoint and loss chart', () => {
    const r = cli('train', '--text', 'my-text.txt', '--out', 'out/model.safetensors', ...small, '--sample', '40');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/epoch 2: train [0-9.]+ bits\/char, validation [0-9.]+ bits\/char/);
    expect(r.stdout + r.stderr).to.match(/timestep-samples\/s/); // the progress bar
    const val = Number(/validation: ([0-9.]+) bits\/char \(unigram entropy ([0-9.]+)\)/.exec(r.stdout)![1]);
    const unigram = Number(/unigram entropy ([0-9.]+)\)/.exec(r.stdout)![1]);
    expect(val).to.be.below(unigram);
    for (const file of ['out/model.safetensors', 'out/model.ckpt.safetensors', 'out/model.loss.svg']) {
      expect(fs.existsSync(path.join(dir, file)), file).to.equal(true);
    }
    expect(fs.readFileSync(path.join(dir, 'out/model.loss.svg'), 'utf8')).to.match(/^<svg/);
  });

  it('train --resume continues from the checkpoint', () => {
    const r = cli('train', '--text', 'my-text.txt', '--out', 'out/model.safetensors', ...small.slice(0, -4), '--epochs', '3', '--lr', '0.01', '--resume', '--sample', '0');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/epoch 3: /);
    expect(r.stdout).to.not.match(/epoch 1: /); // epochs 1 and 2 came from the checkpoint
  });

  it('sample: generates from a prime', () => {
    const r = cli('sample', 'out/model.safetensors', '--prime', 'the ', '--length', '60', '--temperature', '0.5', '--seed', '3');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout.startsWith('the ')).to.equal(true);
    expect(r.stdout.trimEnd().length).to.equal(64);
    expect(cli('sample', 'out/model.safetensors', '--prime', 'the ', '--length', '60', '--temperature', '0.5', '--seed', '3').stdout).to.equal(r.stdout);
  });

  it('info: architecture, parameter count and training history', () => {
    const r = cli('info', 'out/model.safetensors');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/model:\s+SequenceModel/);
    expect(r.stdout).to.match(/parameters:\s+[0-9,]+/);
    expect(r.stdout).to.match(/rnn\.weight_ih_l0\s+\[96, 8\]/);
    expect(r.stdout).to.match(/epoch 3: train [0-9.]+ bits\/char/);
  });

  it('export --onnx: an ONNX file with the vocabulary that generates what the model generates', async () => {
    const r = cli('export', 'out/model.safetensors', '--onnx', 'out/model.onnx', '--state-inputs');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/wrote out\/model\.onnx \([0-9,]+ bytes, ONNX opset 17\): SequenceModel/);
    const fromOnnx = await CharLanguageModel.fromOnnx(path.join(dir, 'out', 'model.onnx'));
    const original = await CharLanguageModel.load(path.join(dir, 'out', 'model.safetensors'));
    expect(fromOnnx.generate({ prime: 'the ', length: 40, temperature: 0 })).to.equal(original.generate({ prime: 'the ', length: 40, temperature: 0 }));
    expectCleanFailure(cli('export', 'out/model.safetensors'), /required option '--onnx <file>'/);
    expectCleanFailure(cli('export', 'nope.safetensors', '--onnx', 'x.onnx'), /model nope\.safetensors does not exist/);
  });

  it('diagnose: gradient flow and gate statistics printed, charts written', () => {
    const r = cli('diagnose', 'out/model.safetensors', '--text', 'my-text.txt', '--out', 'charts', '--steps', '40', '--batch', '4');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/LSTM, 1 layer\(s\) x 24 units; probe batch \[40, 4, 8\]/);
    expect(r.stdout).to.match(/layer 0: \|\|dL\/dh_0\|\| \/ \|\|dL\/dh_39\|\| = [0-9.e+-]+; largest singular value of W_hh [0-9.]+, [0-9.]+, [0-9.]+, [0-9.]+/);
    expect(r.stdout).to.match(/layer 0: i 0\.[0-9]+ \([0-9]+%\), f 0\.[0-9]+ \([0-9]+%\), o 0\.[0-9]+ \([0-9]+%\); forget time constant median [0-9.]+ steps/);
    for (const chart of ['model.gradient-flow.svg', 'model.forget-time-constants.svg']) {
      expect(fs.readFileSync(path.join(dir, 'charts', chart), 'utf8')).to.match(/^<svg[\s\S]*<\/svg>$/);
    }
    expectCleanFailure(cli('diagnose', 'out/model.safetensors'), /--text <file> is needed/);
  });

  it('bad flags, missing or broken files: a clear message and exit code 1', () => {
    expectCleanFailure(cli('train', '--text', 'my-text.txt', '--hidden', 'abc'), /--hidden must be an integer/);
    expectCleanFailure(cli('train', '--text', 'nope.txt'), /text file nope\.txt does not exist/);
    expectCleanFailure(cli('train'), /required option '--text <file>'/);
    expectCleanFailure(cli('train', '--text', 'my-text.txt', '--cell', 'transformer'), /Allowed choices are lstm, gru, rnn/);
    expectCleanFailure(cli('sample', 'missing.safetensors'), /model missing\.safetensors does not exist/);
    fs.writeFileSync(path.join(dir, 'junk.safetensors'), 'not a model at all');
    expectCleanFailure(cli('info', 'junk.safetensors'), /junk\.safetensors is not a safetensors model file .*it looks like a text file/);
    expectCleanFailure(cli('frobnicate'), /unknown command 'frobnicate'/);
  });

  it('--out naming a directory: the model goes inside it, checked before training; a failed save keeps the weights', () => {
    fs.mkdirSync(path.join(dir, 'existing'), { recursive: true });
    const r = cli('train', '--text', 'my-text.txt', '--out', 'existing', ...small.slice(0, -4), '--epochs', '1', '--sample', '0');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.contain(`--out existing is a directory: the model goes to ${path.join('existing', 'model.safetensors')}`);
    for (const file of ['model.safetensors', 'model.ckpt.safetensors', 'model.loss.svg']) expect(fs.existsSync(path.join(dir, 'existing', file)), file).to.equal(true);
    // a parent that is a file: refused at once, before any training
    expectCleanFailure(cli('train', '--text', 'my-text.txt', '--out', 'my-text.txt/model.safetensors', ...small), /--out my-text\.txt\/model\.safetensors: cannot create the directory/);
  });

  it('--max-minutes and Ctrl-C: the real reason, and exit 130 after SIGINT', async () => {
    const timed = cli('train', '--text', 'my-text.txt', '--out', 'timed/model.safetensors', ...small.slice(0, -4), '--epochs', '50', '--max-minutes', '0', '--sample', '0');
    expect(timed.status, timed.stderr).to.equal(0);
    expect(timed.stdout).to.match(/stopped after \d+ steps \(--max-minutes 0 reached\)/);
    // SIGINT once the first epoch has ended: the model is saved, the exit code says it was interrupted
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, [bin, 'train', '--text', 'my-text.txt', '--out', 'interrupted/model.safetensors', ...small.slice(0, -4), '--epochs', '1000', '--sample', '0'], { cwd: dir });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (/epoch 1: /.test(stdout) && !child.killed) child.kill('SIGINT');
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    expect(code, stdout).to.equal(130);
    expect(stdout).to.match(/stopped after \d+ steps \(interrupted\)/);
    expect(stdout).to.not.match(/time limit/);
    expect(fs.existsSync(path.join(dir, 'interrupted', 'model.safetensors'))).to.equal(true);
  });

  it('--resume says what it resumes, and refuses a finished run, a mismatched flag or another vocabulary', () => {
    const args = ['--text', 'my-text.txt', '--out', 'resumable/model.safetensors', ...small.slice(0, -4)];
    expect(cli('train', ...args, '--epochs', '1', '--sample', '0').status).to.equal(0);
    const r = cli('train', ...args, '--epochs', '2', '--resume', '--sample', '0');
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/resuming resumable\/model\.ckpt\.safetensors: epoch 2 of 2 \(\d+ steps done\)/);
    expectCleanFailure(cli('train', ...args, '--epochs', '2', '--resume'), /already finished epoch 2 of --epochs 2 \(\d+ steps\): pass a larger --epochs/);
    expectCleanFailure(cli('train', '--text', 'my-text.txt', '--out', 'resumable/model.safetensors', '--hidden', '32', '--epochs', '3', '--resume'),
      /--hidden 32 does not match the checkpoint .*trained with --hidden 24: drop --hidden to resume it/);
    // the flags not given come from the checkpoint (--hidden defaults to 256; it was 24)
    const defaults = cli('train', '--text', 'my-text.txt', '--out', 'resumable/model.safetensors', '--epochs', '3', '--resume', '--sample', '0');
    expect(defaults.status, defaults.stderr).to.equal(0);
    expect(defaults.stdout).to.match(/LSTM 1x24 on my-text\.txt/);
    fs.writeFileSync(path.join(dir, 'other-text.txt'), 'quite another text, with QUITE other letters: xyz! '.repeat(300));
    expectCleanFailure(cli('train', '--text', 'other-text.txt', '--out', 'resumable/model.safetensors', '--epochs', '9', '--resume'),
      /--text other-text\.txt has another vocabulary than the checkpoint .* not in the checkpoint: .*resume on the text it was trained on/);
  });

  it('wrong kinds of files, bad flags and busy ports: plain messages; a checkpoint samples and describes itself', async () => {
    expectCleanFailure(cli('sample', 'my-text.txt'), /my-text\.txt is not a safetensors model file .*it looks like a text file/);
    fs.writeFileSync(path.join(dir, 'model.onnx'), Buffer.from([0x08, 0x08, 0x12, 0x08, 0x72, 0x65, 0x63, 0x75, 0x72, 0x72]));
    expectCleanFailure(cli('info', 'model.onnx'), /model\.onnx is not a safetensors model file .*it looks like an ONNX model: load it with importOnnx\(\)/);
    const sampled = cli('sample', 'out/model.ckpt.safetensors', '--prime', 'the ', '--length', '20', '--seed', '1');
    expect(sampled.status, sampled.stderr).to.equal(0);
    expect(sampled.stdout.replace(/\n$/, '')).to.have.length(24);
    expect(cli('info', 'out/model.ckpt.safetensors').stdout).to.match(/model:\s+SequenceModel/);
    expectCleanFailure(cli('train', '--text', 'my-text.txt', '--dashboard', 'abc'), /--dashboard must be an integer in \[0, 65535\]/);
    const http = await import('node:http');
    const blocker = http.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    try {
      const port = String((blocker.address() as { port: number }).port);
      expectCleanFailure(cli('train', '--text', 'my-text.txt', '--out', 'busy/model.safetensors', ...small, '--sample', '0', '--dashboard', port),
        new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: the port is in use`));
    } finally {
      blocker.close();
    }
    fs.writeFileSync(path.join(dir, 'binary.dat'), Buffer.from(Array.from({ length: 4000 }, (_, i) => (i * 37) % 256)));
    const binary = cli('train', '--text', 'binary.dat', '--out', 'binary/model.safetensors', ...small.slice(0, -4), '--epochs', '1', '--max-minutes', '0', '--sample', '0');
    expect(binary.stderr).to.match(/warning: binary\.dat does not look like text: [0-9.]+% of its characters are control characters or invalid UTF-8/);
  });

  it('the loss chart places a run stopped mid-epoch part of the way along the epoch axis', async () => {
    const history = { loss: [], valLoss: [], valAccuracy: [], batchLoss: Array.from({ length: 95 }, (_, i) => 3 - i / 100), batchesPerEpoch: 214, epochs: 0, steps: 95, skippedSteps: 0, stopReason: 'aborted' as const };
    const svg = await lossChartSvg(history);
    // 95 of 214 steps is 0.44 of an epoch (dividing by the finished epochs made it 0 to 1.00)
    const axis = /aria-label="X-axis titled 'epoch' for a linear scale with values from ([0-9.]+) to ([0-9.]+)"/.exec(svg);
    expect(axis, 'the epoch axis').to.not.equal(null);
    expect(Number(axis![2])).to.be.within(0.44, 0.5);
  });

  it('--version prints the package version', () => {
    const r = cli('--version');
    expect(r.status).to.equal(0);
    expect(r.stdout.trim()).to.equal(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version);
  });

  it('--help describes the commands and exits 0', () => {
    const r = cli('train', '--help');
    expect(r.status).to.equal(0);
    expect(r.stdout).to.match(/--cell <type>/);
    expect(r.stdout).to.match(/--resume \[file\]/);
  });
});
