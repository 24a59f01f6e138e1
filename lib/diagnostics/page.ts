/** The dashboard's page (see dashboard.ts): one HTML document, Vega-Lite charts fed by server-sent events. */
export const DASHBOARD_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>recurrent: training</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
  h1 { font-size: 1.3rem; margin: 0 0 0.5rem; }
  #status { color: #555; margin-bottom: 1rem; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 1rem; }
  .card { border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem; min-height: 120px; }
  .card h2 { font-size: 0.95rem; margin: 0 0 0.3rem; color: #444; }
  button { font: inherit; margin-right: 0.5rem; }
</style>
<script src="/vega.min.js"></script>
<script src="/vega-lite.min.js"></script>
</head>
<body data-steps="0" data-flows="0" data-state="waiting">
<h1>recurrent: training dashboard</h1>
<div><button id="pause">Pause</button><button id="resume" disabled>Resume</button></div>
<div id="status">Waiting for the first step...</div>
<div class="grid">
  <div class="card"><h2>Loss</h2><div id="loss"></div></div>
  <div class="card"><h2>Throughput (timestep-samples / s)</h2><div id="speed"></div></div>
  <div class="card"><h2>Gradient norm (before clipping)</h2><div id="gradnorm"></div></div>
  <div class="card"><h2>Learning rate</h2><div id="lr"></div></div>
  <div class="card"><h2 id="flow-title">Gradient flow ||dL/dh_t||</h2><div id="flow"></div></div>
  <div class="card"><h2>Gates: mean activation, share saturated</h2><div id="gates"></div></div>
  <div class="card"><h2>LSTM forget-gate time constants (steps)</h2><div id="taus"></div></div>
</div>
<script>
'use strict';
const steps = [], epochs = [], state = { flow: null, gates: null, dirty: new Set() };
// how losses are shown (a 'config' event from the server): the unit, and the factor that gives it
let lossView = { title: 'loss', scale: 1 };
const $ = (id) => document.getElementById(id);
async function draw(id, spec) {
  const compiled = vegaLite.compile(Object.assign({ $schema: 'https://vega.github.io/schema/vega-lite/v5.json', width: 'container', height: 180, autosize: { type: 'fit', contains: 'padding' } }, spec)).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'svg', container: '#' + id, hover: true });
  await view.runAsync();
}
// few ticks, and labels that never run into each other (step numbers like "380400" did)
const stepAxis = { field: 'x', type: 'quantitative', title: 'step', axis: { tickCount: 6, labelOverlap: 'greedy', labelFlush: true } };
function line(values, y, title) {
  return { data: { values }, mark: { type: 'line', point: values.length < 60 },
    encoding: { x: stepAxis, y: { field: y, type: 'quantitative', scale: { zero: false }, title, axis: { tickCount: 5, labelOverlap: 'greedy', format: '~s' } } } };
}
function lossChart() {
  const k = lossView.scale;
  const values = steps.map((s) => ({ x: s.step, value: s.loss * k, series: 'train (step)' }))
    .concat(epochs.map((e) => ({ x: e.step, value: e.loss * k, series: 'train (epoch mean)' })))
    .concat(epochs.filter((e) => e.valLoss != null).map((e) => ({ x: e.step, value: e.valLoss * k, series: 'validation' })));
  const color = { field: 'series', type: 'nominal', title: null,
    scale: { domain: ['train (step)', 'train (epoch mean)', 'validation'], range: ['#9ecae1', '#08519c', '#e6550d'] } };
  const y = { field: 'value', type: 'quantitative', scale: { zero: false }, title: lossView.title, axis: { tickCount: 5, labelOverlap: 'greedy' } };
  // the per-step loss as a thin line; the epoch means and validation (one point an epoch) always
  // with their markers, however many steps the chart holds
  return { data: { values }, encoding: { x: stepAxis, y, color }, layer: [
    { transform: [{ filter: "datum.series === 'train (step)'" }], mark: { type: 'line', strokeWidth: 1 } },
    { transform: [{ filter: "datum.series !== 'train (step)'" }], mark: { type: 'line', point: { size: 50, filled: true }, strokeWidth: 2 } },
  ] };
}
function render() {
  const dirty = state.dirty; state.dirty = new Set();
  if (dirty.has('steps')) {
    draw('loss', lossChart());
    draw('speed', line(steps.map((s) => ({ x: s.step, value: s.samplesPerSecond })), 'value', 'timestep-samples / s'));
    draw('gradnorm', line(steps.filter((s) => s.gradNorm != null).map((s) => ({ x: s.step, value: s.gradNorm })), 'value', '||g||'));
    draw('lr', line(steps.map((s) => ({ x: s.step, value: s.lr })), 'value', 'learning rate'));
  }
  if (dirty.has('flow') && state.flow) {
    $('flow-title').textContent = 'Gradient flow ||dL/dh_t|| at step ' + state.flow.step + ' (log scale)';
    const values = [];
    for (const l of state.flow.layers) l.norms.forEach((n, t) => { if (n > 0) values.push({ t, norm: n, series: 'layer ' + l.layer + (l.direction ? ' reverse' : '') }); });
    draw('flow', { data: { values }, mark: 'line', encoding: { x: { field: 't', type: 'quantitative', title: 'time step t' },
      y: { field: 'norm', type: 'quantitative', scale: { type: 'log' }, title: '||dL/dh_t||' }, color: { field: 'series', type: 'nominal', title: null } } });
  }
  if (dirty.has('gates') && state.gates) {
    const values = [];
    for (const l of state.gates.layers) for (const [gate, g] of Object.entries(l.gates)) {
      values.push({ gate: gate + ' (layer ' + l.layer + (l.direction ? 'r' : '') + ')', what: 'mean', value: g.mean });
      values.push({ gate: gate + ' (layer ' + l.layer + (l.direction ? 'r' : '') + ')', what: 'saturated', value: g.saturated });
    }
    draw('gates', { data: { values }, mark: 'bar', encoding: { y: { field: 'gate', type: 'nominal', title: null }, yOffset: { field: 'what' },
      x: { field: 'value', type: 'quantitative', scale: { domain: [0, 1] } }, color: { field: 'what', type: 'nominal', title: null } } });
    const taus = [];
    for (const l of state.gates.layers) for (const tau of (l.forgetTimeConstants || [])) taus.push({ tau: Math.min(tau, 1000), layer: 'layer ' + l.layer });
    if (taus.length) draw('taus', { data: { values: taus }, mark: 'bar', encoding: { x: { field: 'tau', type: 'quantitative', bin: { maxbins: 30 }, title: 'tau = -1 / ln(f)' },
      y: { aggregate: 'count', type: 'quantitative', title: 'units' }, color: { field: 'layer', type: 'nominal', title: null } } });
    else $('taus').textContent = '(LSTM only)';
  }
}
setInterval(() => { if (state.dirty.size) render(); }, 500);
const events = new EventSource('/events');
events.addEventListener('config', (e) => {
  const c = JSON.parse(e.data);
  lossView = { title: c.lossTitle || 'loss', scale: c.lossScale || 1 };
  document.body.dataset.lossTitle = lossView.title; state.dirty.add('steps');
});
events.addEventListener('step', (e) => {
  const s = JSON.parse(e.data); steps.push(s); state.dirty.add('steps');
  document.body.dataset.steps = String(steps.length);
  if (document.body.dataset.state === 'waiting') document.body.dataset.state = 'running';
  $('status').textContent = 'epoch ' + (s.epoch + 1) + ', step ' + s.step + ': loss ' + s.loss.toFixed(4) + ', ' + Math.round(s.samplesPerSecond).toLocaleString() + ' timestep-samples/s';
});
events.addEventListener('epoch', (e) => { epochs.push(JSON.parse(e.data)); state.dirty.add('steps'); });
events.addEventListener('flow', (e) => { state.flow = JSON.parse(e.data); state.dirty.add('flow'); document.body.dataset.flows = String(Number(document.body.dataset.flows) + 1); });
events.addEventListener('gates', (e) => { state.gates = JSON.parse(e.data); state.dirty.add('gates'); });
events.addEventListener('control', (e) => {
  const { paused, held } = JSON.parse(e.data);
  document.body.dataset.state = paused ? 'paused' : 'running';
  document.body.dataset.held = String(Boolean(held)); // paused and the training loop waits between steps
  $('pause').disabled = paused; $('resume').disabled = !paused;
  if (paused && !held) $('status').textContent += ' (paused)';
});
events.addEventListener('done', (e) => {
  const d = JSON.parse(e.data); document.body.dataset.state = 'done';
  $('status').textContent = 'Finished: ' + d.steps + ' steps, ' + d.stopReason + '.'; $('pause').disabled = true; $('resume').disabled = true;
  events.close();
});
$('pause').onclick = () => fetch('/pause', { method: 'POST' });
$('resume').onclick = () => fetch('/resume', { method: 'POST' });
</script>
</body>
</html>
`;
