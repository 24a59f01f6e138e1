/**
 * The live dashboard in headless Chromium: the page loads while fit() runs, its curves and the
 * gradient-flow chart update, Pause holds training and Resume continues it. Screenshot in
 * test-output/. Pending (with the reason) where Chromium is missing.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { expect } from 'chai';
import type { Browser } from 'puppeteer-core';
import { SequenceModel, Tensor, fit, seed } from '../lib/index';
import { findChromium, launchChromium } from './helpers';

const CHROMIUM = findChromium();
const outputDir = path.join(__dirname, '..', 'test-output');

describe('fit(..., { dashboard }) in headless Chromium', function () {
  this.timeout(180_000);
  let browser: Browser;

  before(async function () {
    if (!CHROMIUM) {
      console.log('      (dashboard tests pending: no chromium found; .ci/run installs Debian\'s chromium, or set CHROMIUM_PATH)');
      this.skip();
    }
    browser = await launchChromium(CHROMIUM);
    fs.mkdirSync(outputDir, { recursive: true });
  });
  after(async () => browser?.close());

  it('shows curves and gradient flow while training, and Pause / Resume hold and continue it', async () => {
    seed(41);
    const model = new SequenceModel({ cell: 'lstm', inputSize: 2, hiddenSize: 16, numLayers: 2, outputSize: 1, outputs: 'last' });
    const data = { inputs: Tensor.randn([256, 30, 2]), targets: Tensor.randn([256, 1]) };
    let ready!: (url: string) => void;
    const address = new Promise<string>((resolve) => { ready = resolve; });
    let steps = 0;
    // long enough never to end on its own, however slow the browser (it is stopped below)
    const controller = new AbortController();
    const training = fit(model, data, {
      epochs: 1000, batchSize: 16, signal: controller.signal, validationData: { inputs: data.inputs.slice(0, 0, 32), targets: data.targets.slice(0, 0, 32) },
      dashboard: { port: 0, every: 10, onReady: ready },
      onBatchEnd: async () => { steps += 1; await new Promise((r) => setTimeout(r, 5)); }, // slow enough to watch
    });
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(await address);
    await page.waitForFunction("Number(document.body.dataset.steps) >= 30 && Number(document.body.dataset.flows) >= 2", { timeout: 60_000 });
    await page.waitForSelector('#loss svg', { timeout: 30_000 });
    await page.waitForSelector('#flow svg', { timeout: 30_000 });
    await page.waitForSelector('#taus svg', { timeout: 30_000 });
    expect(await page.$eval('#flow-title', (el) => el.textContent)).to.match(/at step \d+ \(log scale\)/);
    expect(await page.$$eval('#loss svg path', (paths) => paths.length)).to.be.above(0);
    // past 60 steps (4 epochs of 16), the epoch means and validation losses keep their markers,
    // and the loss axis names the loss
    await page.waitForFunction("Number(document.body.dataset.steps) >= 70", { timeout: 60_000 });
    await page.waitForFunction("document.querySelectorAll('#loss g.mark-symbol path').length >= 8", { timeout: 30_000 });
    expect(await page.$eval('#loss svg', (svg) => svg.innerHTML)).to.match(/Y-axis titled 'mean squared error'/);
    // no two labels of an axis overlap (the gradient-norm chart's ran together, "380400")
    const overlaps = await page.$$eval('#gradnorm g.role-axis', (axes) => axes.map((axis) => {
      const boxes = [...axis.querySelectorAll('g.role-axis-label text')].map((t) => t.getBoundingClientRect()).filter((b) => b.width > 0);
      let count = 0;
      for (let i = 0; i < boxes.length; ++i) for (let j = i + 1; j < boxes.length; ++j) {
        const [a, b] = [boxes[i], boxes[j]];
        if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) count += 1;
      }
      return count;
    }));
    expect(overlaps.length, 'axes of the gradient-norm chart').to.be.at.least(2);
    expect(overlaps.every((count) => count === 0), `overlapping axis labels: ${overlaps}`).to.equal(true);

    await page.click('#pause');
    await page.waitForFunction("document.body.dataset.state === 'paused'", { timeout: 30_000 });
    // held: the step under way when Pause was pressed has finished and the loop waits, so the
    // count can no longer move, however fast or slow this machine is
    await page.waitForFunction("document.body.dataset.held === 'true'", { timeout: 30_000 });
    const heldAt = steps;
    await new Promise((r) => setTimeout(r, 500));
    expect(steps, 'no steps while paused').to.equal(heldAt);
    await page.screenshot({ path: path.join(outputDir, 'dashboard.png'), fullPage: true });

    await page.click('#resume');
    await page.waitForFunction(`Number(document.body.dataset.steps) > ${heldAt + 5}`, { timeout: 60_000 });
    controller.abort();
    const history = await training;
    await page.waitForFunction("document.body.dataset.state === 'done'", { timeout: 30_000 });
    expect(history.stopReason).to.equal('aborted');
    expect(history.steps).to.be.above(heldAt + 5);
    expect(errors).to.deep.equal([]);
  });
});
