/**
 * Serves the browser demo on localhost: the page (index.html, app.js), onnxruntime-web's
 * files, the exported character model and its vocabulary (read from the ONNX file's
 * metadata_props).
 *
 *   npm run demo:browser [-- model.onnx] [--port 8080]
 *
 * It stops on Ctrl-C, on SIGTERM or SIGHUP, and when the process that started it (npm) ends.
 *
 * Without a model argument it uses demo-output/sotu-lstm.onnx, exporting it first from the
 * demo's demo-output/sotu-lstm.safetensors (written by `npm run demo`) when needed.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { exportOnnx, loadModel } from '../../lib/index';

const root = path.join(__dirname, '..', '..');
const ortDist = path.dirname(require.resolve('onnxruntime-web')); // its dist/ folder
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm', '.json': 'application/json', '.onnx': 'application/octet-stream',
};

/** What the page needs besides the graph: the vocabulary and the state's shape. */
export function modelInfo(file: string): Record<string, unknown> {
  const proto = onnx.ModelProto.decode(fs.readFileSync(file));
  const meta = Object.fromEntries((proto.metadataProps ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  if (!meta['recurrent.tokenizer'] || !meta['recurrent.model']) {
    throw new Error(`${file} is not a character model exported by recurrent (no vocabulary in its metadata)`);
  }
  const tokenizer = JSON.parse(meta['recurrent.tokenizer']) as { type: string; chars?: string[] };
  if (tokenizer.type !== 'char' || !tokenizer.chars) throw new Error(`${file}: only character models run in this page`);
  const config = (JSON.parse(meta['recurrent.model']) as { config: { cell: string; hiddenSize: number; numLayers: number; bidirectional: boolean } }).config;
  const rows = config.numLayers * (config.bidirectional ? 2 : 1);
  return {
    chars: tokenizer.chars, stateRows: rows, hiddenSize: config.hiddenSize, hasCell: config.cell === 'lstm',
    description: `${config.cell.toUpperCase()}, ${config.numLayers} x ${config.hiddenSize} units, ${tokenizer.chars.length + 1} symbols`,
  };
}

export function startServer(model: string, port = 0): Promise<{ url: string; close(): Promise<void> }> {
  const info = JSON.stringify(modelInfo(model));
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    let file: string | null = null;
    if (url.pathname === '/favicon.ico') {
      response.writeHead(204).end(); // no icon, and no 404 in the browser's console
      return;
    }
    if (url.pathname === '/' || url.pathname === '/index.html') file = path.join(__dirname, 'index.html');
    else if (url.pathname === '/app.js') file = path.join(__dirname, 'app.js');
    else if (url.pathname === '/model.onnx') file = model;
    else if (url.pathname === '/model.json') {
      response.writeHead(200, { 'content-type': TYPES['.json'] }).end(info);
      return;
    } else if (/^\/ort\/[\w.-]+$/.test(url.pathname)) file = path.join(ortDist, path.basename(url.pathname));
    if (!file || !fs.existsSync(file)) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    response.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-cache' });
    fs.createReadStream(file).pipe(response);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const address = server.address() as { port: number };
      resolve({
        url: `http://127.0.0.1:${address.port}/`,
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const portAt = args.indexOf('--port');
  const port = portAt >= 0 ? Number(args.splice(portAt, 2)[1]) : 8080;
  let model = args[0];
  if (!model) {
    model = path.join(root, 'demo-output', 'sotu-lstm.onnx');
    const trained = path.join(root, 'demo-output', 'sotu-lstm.safetensors');
    if (!fs.existsSync(model) || (fs.existsSync(trained) && fs.statSync(trained).mtimeMs > fs.statSync(model).mtimeMs)) {
      if (!fs.existsSync(trained)) {
        console.error('No model yet: run `npm run demo` first (it trains demo-output/sotu-lstm.safetensors), or pass an .onnx file.');
        process.exitCode = 1;
        return;
      }
      const { model: m, metadata } = await loadModel(trained);
      await exportOnnx(m, model, { stateInputs: true, metadata: { 'recurrent.tokenizer': metadata['recurrent.tokenizer'] } });
      console.log(`exported ${path.relative(process.cwd(), trained)} to ${path.relative(process.cwd(), model)}`);
    }
  }
  const server = await startServer(model, port);
  console.log(`serving ${path.relative(process.cwd(), model)} at ${server.url} (Ctrl-C or kill PID stops; PID ${process.pid})`);
  const stop = () => {
    void server.close();
    process.exit(0);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, stop);
  // started in the background (`npm run demo:browser &`), the server outlives npm when npm is
  // killed, and a background job ignores SIGINT: it goes when the process that started it goes
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) stop();
  }, 500);
}

if (require.main === module) {
  main().catch((error) => {
    console.error((error as Error).message);
    process.exitCode = 1;
  });
}
