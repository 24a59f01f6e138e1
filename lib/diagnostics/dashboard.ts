/**
 * A live training dashboard: a page on localhost that shows, while fit() runs, the loss and
 * validation curves, throughput, learning rate and gradient norm, and (refreshed every N
 * steps) the gradient flow over time and the gate statistics. Charts are Vega-Lite, rendered
 * in the page by Vega (browser builds the package ships in dist/assets/, no network); updates come
 * as server-sent events; Pause and Resume buttons hold training between steps.
 *
 *   await fit(model, data, { dashboard: 8090 });      // or { dashboard: { port, every, onReady } }
 *   npx recurrent train --text corpus.txt --dashboard
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { noGrad } from '../core/autograd';
import type { Tensor } from '../core/tensor';
import type { Module } from '../nn/module';
import { isRecurrent } from '../nn/recurrent';
import { SequenceModel } from '../nn/sequence-model';
import { gateStatistics, gradientFlow } from './diagnostics';
import { DASHBOARD_PAGE } from './page';

export interface DashboardOptions {
  /** Port on 127.0.0.1 (0: any free port). Default 8090. */
  port?: number;
  /** Steps between gradient-flow and gate-statistics refreshes. Default 50. */
  every?: number;
  /** Called with the page's address once the server listens. */
  onReady?: (url: string) => void;
  /** The loss axis' title, e.g. 'bits per character'. Default: fit names its loss and unit ('cross entropy (nats)'). */
  lossTitle?: string;
  /** Factor from the loss as computed to the shown unit (1 / Math.LN2: nats to bits). Default 1. */
  lossScale?: number;
}

export interface Dashboard {
  readonly url: string;
  readonly every: number;
  /** Sends one event to every open page (and to pages opened later). */
  send(type: string, data: unknown): void;
  /**
   * Resolves at once, or when the page's Resume button is pressed after Pause. Training calls it
   * between steps; the first call of a pause tells the pages that training is held there.
   */
  waitIfPaused(): Promise<void>;
  close(): Promise<void>;
}

/**
 * A browser build the page loads: from dist/assets/ (the published package ships them there,
 * scripts/copy-assets.js), or in a checkout from the dev dependency itself.
 */
function asset(module: string, file: string): string {
  const shipped = path.join(__dirname, '..', 'assets', file);
  if (fs.existsSync(shipped)) return shipped;
  let dir = path.dirname(require.resolve(module));
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return path.join(dir, 'build', file);
}

export async function startDashboard(options: DashboardOptions = {}): Promise<Dashboard> {
  const scripts: Record<string, string> = {
    '/vega.min.js': asset('vega', 'vega.min.js'),
    '/vega-lite.min.js': asset('vega-lite', 'vega-lite.min.js'),
  };
  const clients = new Set<http.ServerResponse>();
  // every event so far, replayed to a page opened late; first how the page shows losses
  const history: string[] = [`event: config\ndata: ${JSON.stringify({ lossTitle: options.lossTitle ?? 'loss', lossScale: options.lossScale ?? 1 })}\n\n`];
  let paused = false;
  let resume: (() => void) | null = null;
  let resumed: Promise<void> | null = null;
  let held = false; // training has reached the pause and waits (told to the pages once)
  const broadcast = (line: string) => {
    for (const client of clients) client.write(line);
  };
  const setPaused = (value: boolean) => {
    if (value && !paused) {
      paused = true;
      resumed = new Promise<void>((done) => { resume = done; });
    } else if (!value && paused) {
      paused = false;
      held = false;
      resume?.();
      resume = null;
      resumed = null;
    }
    const line = `event: control\ndata: ${JSON.stringify({ paused })}\n\n`;
    history.push(line);
    broadcast(line);
  };
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    if (request.method === 'POST' && (url.pathname === '/pause' || url.pathname === '/resume')) {
      setPaused(url.pathname === '/pause');
      response.writeHead(204).end();
    } else if (url.pathname === '/events') {
      response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      for (const line of history) response.write(line);
      clients.add(response);
      request.on('close', () => clients.delete(response));
    } else if (url.pathname === '/') {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(DASHBOARD_PAGE);
    } else if (scripts[url.pathname]) {
      response.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
      fs.createReadStream(scripts[url.pathname]).pipe(response);
    } else {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
  });
  const port = options.port ?? 8090;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(error.code === 'EADDRINUSE'
      ? Object.assign(new Error(`the dashboard cannot listen on 127.0.0.1:${port}: the port is in use (another dashboard or server?); choose another port, or 0 for any free one`), { code: 'EADDRINUSE' })
      : error));
    server.listen(port, '127.0.0.1', () => resolve());
  });
  server.unref(); // never keeps the process alive on its own
  const address = server.address() as { port: number };
  const url = `http://127.0.0.1:${address.port}/`;
  options.onReady?.(url);
  return {
    url,
    every: options.every ?? 50,
    send(type, data) {
      const line = `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
      history.push(line);
      broadcast(line);
    },
    waitIfPaused() {
      if (!resumed) return Promise.resolve();
      if (!held) {
        held = true;
        const line = `event: control\ndata: ${JSON.stringify({ paused: true, held: true })}\n\n`;
        history.push(line);
        broadcast(line);
      }
      return resumed;
    },
    close: () => new Promise<void>((done) => {
      for (const client of clients) client.end();
      clients.clear();
      resume?.();
      server.close(() => done());
    }),
  };
}

// ---------------------------------------------------------------------------
// The dashboard as fit() sees it: an observer told of each step and epoch

/** What the training loop tells an observer, and when (fit calls each at its point). */
export interface TrainingObserver {
  /** Before each step; training waits for the promise (the dashboard's Pause holds it here). */
  beforeStep?(): Promise<void>;
  /** After each optimizer step, with the batch's input (time-major, on the host). */
  afterStep?(step: { step: number; epoch: number; loss: number; lr: number; gradNorm: number; samplesPerSecond: number; input: Tensor }): void;
  afterEpoch?(epoch: { epoch: number; step: number; loss: number; valLoss: number | null }): void;
  /** Once, however training ended. */
  close?(outcome: { steps: number; stopReason: string }): Promise<void>;
}

/**
 * A dashboard for one fit() run: steps and epochs go to the page, and every `every` steps the
 * gradient flow and gate statistics of the model's recurrent layer on the current batch (in
 * evaluation mode, so that no dropout mask draws from fit's generator; `local` runs their
 * backward outside data-parallel gradient reduction). A failing diagnostic never stops training.
 */
export async function startDashboardObserver(options: DashboardOptions, model: Module, local: <T>(fn: () => T) => T): Promise<TrainingObserver> {
  const dashboard = await startDashboard(options);
  const diagnose = (input: Tensor, step: number) => {
    const rnn = model instanceof SequenceModel ? model.rnn : isRecurrent(model) ? model : null;
    if (!rnn || rnn.device !== 'cpu') return;
    const wasTraining = model.training;
    model.eval();
    try {
      const x = model instanceof SequenceModel && model.embedding ? noGrad(() => model.embedding!.forward(input)) : input;
      local(() => {
        dashboard.send('flow', { step, ...gradientFlow(rnn, x) });
        dashboard.send('gates', { step, ...gateStatistics(rnn, x) });
      });
    } catch (error) {
      dashboard.send('diagnostics-error', { step, message: (error as Error).message });
    } finally {
      model.train(wasTraining);
    }
  };
  return {
    beforeStep: () => dashboard.waitIfPaused(),
    afterStep({ input, ...report }) {
      dashboard.send('step', report);
      if (report.step % dashboard.every === 0 || report.step === 1) diagnose(input, report.step);
    },
    afterEpoch: (epoch) => dashboard.send('epoch', epoch),
    async close(outcome) {
      dashboard.send('done', outcome);
      await dashboard.close();
    },
  };
}
