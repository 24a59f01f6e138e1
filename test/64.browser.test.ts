/**
 * The browser demo in a real headless Chromium (Debian's `chromium`, driven by puppeteer-core):
 * the page loads an exported character model with onnxruntime-web, generates from a prime, and
 * its greedy characters equal the same model's in Node. Screenshots go to test-output/.
 * Without Chromium (not installed: .ci/run installs it) the suite is pending, saying why.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expect } from 'chai';
import type { Browser } from 'puppeteer-core';
import { startServer } from '../examples/browser/serve';
import { CharLanguageModel, exportOnnx, seed } from '../lib/index';
import { findChromium, launchChromium } from './helpers';

const CHROMIUM = findChromium();
const outputDir = path.join(__dirname, '..', 'test-output');

describe('browser demo (onnxruntime-web in headless Chromium)', function () {
  this.timeout(120_000);
  let browser: Browser;
  let server: { url: string; close(): Promise<void> };
  let lm: CharLanguageModel;

  before(async function () {
    if (!CHROMIUM) {
      console.log('      (browser tests pending: no chromium found; .ci/run installs Debian\'s chromium, or set CHROMIUM_PATH)');
      this.skip();
    }
    seed(21);
    const text = 'the quick brown fox jumps over the lazy dog. '.repeat(100);
    lm = new CharLanguageModel(text, { hiddenSize: 32, numLayers: 2, embeddingDim: 16 });
    await lm.train(text, { epochs: 8, batchSize: 8, bpttSteps: 32, lr: 0.02, seed: 1 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-browser-'));
    const file = path.join(dir, 'lm.onnx');
    await exportOnnx(lm, file, { stateInputs: true });
    server = await startServer(file);
    browser = await launchChromium(CHROMIUM);
    fs.mkdirSync(outputDir, { recursive: true });
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  it('loads the model, generates from a typed prime, and matches Node greedy output', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(server.url);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 60_000 });
    await page.waitForSelector('#output[data-done="true"]', { timeout: 60_000 }); // the first, default generation
    // greedy: temperature 0, then type a prime as a user would
    await page.$eval('#temperature', (el) => { (el as unknown as { value: string }).value = '0'; el.dispatchEvent(new Event('input')); });
    await page.$eval('#length', (el) => { (el as unknown as { value: string }).value = '60'; });
    await page.$eval('#prime', (el) => { (el as unknown as { value: string }).value = ''; });
    await page.type('#prime', 'the lazy ');
    await page.waitForFunction(
      "document.querySelector('#output').dataset.done === 'true' && document.querySelector('#output .prime').textContent === 'the lazy '",
      { timeout: 60_000 });
    const generated = await page.$eval('#generated', (el) => el.textContent ?? '');
    await page.screenshot({ path: path.join(outputDir, 'browser-demo.png') });
    const expected = lm.generate({ prime: 'the lazy ', length: 60, temperature: 0 }).slice('the lazy '.length);
    console.log(`      browser: ${JSON.stringify(generated.slice(0, 40))}...`);
    expect(errors).to.deep.equal([]);
    expect(generated).to.have.length(60);
    expect(new Set(generated).size, 'a model that learned something').to.be.above(5);
    expect(generated).to.equal(expected);
    expect(await page.$eval('#status', (el) => el.textContent)).to.match(/60 characters in [0-9.]+ s/);
  });
});

describe('npm run demo:browser (the server process)', function () {
  this.timeout(120_000);

  it('started in the background, it goes when npm is killed (SIGTERM), and answers /favicon.ico without a 404', async () => {
    const { spawn } = await import('node:child_process');
    const http = await import('node:http');
    seed(22);
    const lm = new CharLanguageModel('a small text to serve. '.repeat(20), { hiddenSize: 8, numLayers: 1, embeddingDim: 4 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recurrent-serve-'));
    const file = path.join(dir, 'lm.onnx');
    await exportOnnx(lm, file, { stateInputs: true });
    // as a shell starts `npm run demo:browser &`: SIGINT ignored, npm's PID the one known
    const npm = spawn('npm', ['run', 'demo:browser', '--', file, '--port', '0'], { cwd: path.join(__dirname, '..'), stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let output = '';
      const url = await new Promise<string>((resolve, reject) => {
        npm.stdout.on('data', (d: Buffer) => {
          output += d.toString();
          const match = /at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(output);
          if (match) resolve(match[1]);
        });
        npm.stderr.on('data', (d: Buffer) => (output += d.toString()));
        npm.on('exit', () => reject(new Error(`the server did not start:\n${output}`)));
      });
      const status = (pathname: string) => new Promise<number | string>((resolve) => {
        http.get(new URL(pathname, url), (r) => { r.resume(); resolve(r.statusCode ?? 0); }).on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      });
      expect(await status('/')).to.equal(200);
      expect(await status('/favicon.ico')).to.equal(204);
      npm.kill('SIGTERM');
      // the server checks for its parent twice a second; a server left behind would answer forever.
      // A connection made while it exits is reset (ECONNRESET): ask again until none is accepted
      let after: number | string = 200;
      for (let i = 0; i < 300 && (after === 200 || after === 'ECONNRESET'); ++i) {
        await new Promise((r) => setTimeout(r, 100));
        after = await status('/');
      }
      expect(after).to.equal('ECONNREFUSED');
    } finally {
      npm.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
