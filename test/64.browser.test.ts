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
