'use strict';
/**
 * Run by install-from-tarball.sh in the project that installed the packed tarball: the charts
 * and the dashboard work from a production install (no vega packages in node_modules). The SVG
 * loss chart is drawn; fit's dashboard page loads its shipped Vega builds in headless Chromium
 * (puppeteer-core from the checkout, CHECKOUT) and draws the loss curve. Prints one line per check.
 */
const fs = require('node:fs');
const path = require('node:path');
const { SequenceModel, Tensor, fit, lossChartSvg, seed } = require('recurrent');

async function main() {
  for (const name of ['vega', 'vega-lite']) {
    if (fs.existsSync(path.join('node_modules', name))) throw new Error(`${name} is in the production install`);
  }
  const svg = await lossChartSvg({ loss: [2, 1.5], valLoss: [2.1, 1.7], batchLoss: [2.4, 2, 1.8, 1.5], batchesPerEpoch: 2 });
  if (!/^<svg[\s\S]*<\/svg>$/.test(svg) || !svg.includes("X-axis titled 'epoch'")) throw new Error('the loss chart is not an SVG with its epoch axis');
  console.log(`loss chart: an SVG of ${svg.length} characters`);

  const chromium = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));
  if (!chromium) {
    console.log('dashboard: skipped (no chromium; .ci/run installs it)');
    return;
  }
  const puppeteer = require(require.resolve('puppeteer-core', { paths: [process.env.CHECKOUT] }));
  seed(3);
  const model = new SequenceModel({ cell: 'gru', inputSize: 2, hiddenSize: 8, outputSize: 1, outputs: 'last' });
  const data = { inputs: Tensor.randn([64, 10, 2]), targets: Tensor.randn([64, 1]) };
  const controller = new AbortController();
  let ready;
  const address = new Promise((resolve) => { ready = resolve; });
  const training = fit(model, data, {
    epochs: 1000, batchSize: 8, signal: controller.signal, dashboard: { port: 0, every: 5, onReady: ready },
    onBatchEnd: () => new Promise((r) => setTimeout(r, 5)),
  });
  const browser = await puppeteer.launch({ executablePath: chromium, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(await address);
    await page.waitForSelector('#loss svg', { timeout: 60_000 });
    if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
    console.log('dashboard: the page drew the loss curve with the shipped Vega builds');
  } finally {
    controller.abort();
    await training;
    await browser.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
