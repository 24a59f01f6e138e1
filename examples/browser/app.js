// Generates text with the exported character model: the prime in one run, then one run per
// character, carrying the LSTM state (h0/c0 in, h_n/c_n out) as CharLanguageModel.generate does.
/* global ort */
'use strict';

const $ = (id) => document.getElementById(id);
let session;
let info; // { chars, stateRows, hiddenSize, hasCell }
let index;
let generation = 0; // a newer request cancels an older one

function encode(text) {
  return Array.from(text, (c) => index.get(c) ?? 0);
}

function sample(logits, temperature) {
  let best = 0;
  for (let i = 1; i < logits.length; ++i) if (logits[i] > logits[best]) best = i;
  if (temperature <= 0) return best;
  const weights = Array.from(logits, (l) => Math.exp((l - logits[best]) / temperature));
  let r = Math.random() * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < weights.length; ++i) if ((r -= weights[i]) <= 0) return i;
  return weights.length - 1;
}

function zeros() {
  return new ort.Tensor('float32', new Float32Array(info.stateRows * info.hiddenSize), [info.stateRows, 1, info.hiddenSize]);
}

async function run(ids, state) {
  const feeds = { input: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [ids.length, 1]) };
  if (info.stateInputs) {
    feeds.h0 = state ? state.h : zeros();
    if (info.hasCell) feeds.c0 = state ? state.c : zeros();
  }
  const out = await session.run(feeds);
  const V = info.chars.length + 1;
  const logits = out.output.data.subarray((ids.length - 1) * V, ids.length * V);
  return { logits, state: info.stateInputs ? { h: out.h_n, c: out.c_n } : null };
}

async function generate() {
  const id = ++generation;
  const prime = $('prime').value;
  const temperature = Number($('temperature').value);
  const length = Math.max(1, Math.min(2000, Number($('length').value) || 300));
  const output = $('output');
  output.dataset.done = 'false';
  output.innerHTML = '';
  const primeSpan = document.createElement('span');
  primeSpan.className = 'prime';
  primeSpan.textContent = prime;
  const generated = document.createElement('span');
  generated.id = 'generated';
  output.append(primeSpan, generated);
  const started = performance.now();
  // without state inputs (an export without --state-inputs) the whole text is run again each step
  let ids = prime.length > 0 ? encode(prime) : encode('\n');
  let { logits, state } = await run(ids, null);
  let text = '';
  for (let i = 0; i < length; ++i) {
    if (id !== generation) return;
    const next = sample(logits, temperature);
    text += info.chars[next - 1] ?? '';
    if (i % 10 === 9 || i === length - 1) generated.textContent = text;
    ids = info.stateInputs ? [next] : [...ids, next];
    ({ logits, state } = await run(ids, state));
  }
  generated.textContent = text;
  output.dataset.done = 'true';
  $('status').textContent = `${length} characters in ${((performance.now() - started) / 1000).toFixed(2)} s (onnxruntime-web ${ort.env.versions?.web ?? ''}, WebAssembly)`;
}

let timer = null;
function schedule() {
  clearTimeout(timer);
  timer = setTimeout(() => generate().catch(showError), 300);
}

function showError(error) {
  $('status').textContent = `Error: ${error.message ?? error}`;
  $('output').dataset.done = 'error';
}

async function main() {
  ort.env.wasm.wasmPaths = '/ort/';
  ort.env.wasm.numThreads = 1;
  info = await (await fetch('/model.json')).json();
  index = new Map(info.chars.map((c, i) => [c, i + 1]));
  session = await ort.InferenceSession.create('/model.onnx', { executionProviders: ['wasm'] });
  info.stateInputs = session.inputNames.includes('h0');
  $('status').textContent = `Model loaded: ${info.description}. Type a prime.`;
  $('generate').disabled = false;
  $('generate').addEventListener('click', () => generate().catch(showError));
  $('prime').addEventListener('input', schedule);
  $('temperature').addEventListener('input', () => {
    $('temperature-value').textContent = $('temperature').value;
    schedule();
  });
  document.body.dataset.ready = 'true';
  await generate();
}

main().catch(showError);
