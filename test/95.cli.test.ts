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
    expectCleanFailure(cli('info', 'junk.safetensors'), /Invalid safetensors file/);
    expectCleanFailure(cli('frobnicate'), /unknown command 'frobnicate'/);
  });

  it('--help describes the commands and exits 0', () => {
    const r = cli('train', '--help');
    expect(r.status).to.equal(0);
    expect(r.stdout).to.match(/--cell <type>/);
    expect(r.stdout).to.match(/--resume \[file\]/);
  });
});
