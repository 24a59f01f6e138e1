/**
 * The `recurrent` command line: train a character-level model on a text file, sample
 * from it, and describe a saved model.
 *
 *   recurrent train --text FILE [--cell lstm|gru|rnn] [--hidden 256] [--layers 2] ... --out model.safetensors
 *   recurrent sample MODEL --prime "..." --length 500 --temperature 0.8
 *   recurrent info MODEL
 *   recurrent export MODEL --onnx model.onnx [--state-inputs] [--lengths]
 *   recurrent diagnose MODEL --text FILE [--out DIR]
 *   recurrent launch -n 4 script.js [args]     (N ranks of a data-parallel script, through mpirun)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { Command, InvalidArgumentError, Option } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import { lossChartSvg } from '../diagnostics/chart';
import { forgetTimeChartSvg, gradientFlowChartSvg } from '../diagnostics/chart';
import { gateStatistics, gradientFlow } from '../diagnostics/diagnostics';
import { noGrad } from '../core/autograd';
import { exportOnnx } from '../io/onnx/export';
import { SequenceModel } from '../nn/sequence-model';
import { LSTM, Recurrent, isRecurrent } from '../nn/recurrent';
import { Tensor } from '../core/tensor';
import { MODEL_KEY, loadCheckpoint, loadModel, parseJson } from '../io/serialize';
import { CharLanguageModel, CharTokenizer, tokenizerFromJSON } from './text';
import { native } from '../core/native';

function integer(name: string, min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

function integerIn(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}]`);
    return n;
  };
}

function number(name: string, min: number, max = Infinity) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a number in [${min}, ${max}]`);
    return n;
  };
}

function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--';
  const s = Math.round(seconds);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function readableFile(file: string, what: string): void {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    throw new Error(`${what} ${file} does not exist`);
  }
  if (!stat.isFile()) throw new Error(`${what} ${file} is not a file`);
}

interface TrainFlags {
  text: string;
  out: string;
  cell: 'lstm' | 'gru' | 'rnn';
  hidden: number;
  layers: number;
  embedding: number;
  dropout: number;
  epochs: number;
  batchSize: number;
  bptt: number;
  lr: number;
  valSplit: number;
  chart?: string;
  checkpoint?: string;
  resume?: string | boolean;
  seed: number;
  maxMinutes?: number;
  sample: number;
  temperature: number;
  dashboard?: number | boolean;
}

/** The architecture flags a checkpoint fixes, with the config key each one sets. */
const ARCHITECTURE_FLAGS = [
  ['cell', 'cell', '--cell'], ['hidden', 'hiddenSize', '--hidden'], ['layers', 'numLayers', '--layers'],
  ['embedding', 'embeddingDim', '--embedding'], ['dropout', 'dropout', '--dropout'],
] as const;

/**
 * Where the model goes: `--out` as given, or `<dir>/model.safetensors` when it names a directory
 * (or ends with a slash). Checked before training, so that a run is never lost at its end.
 */
function resolveOut(out: string): string {
  let file = out;
  const isDir = out.endsWith('/') || out.endsWith(path.sep) || (fs.existsSync(out) && fs.statSync(out).isDirectory());
  if (isDir) {
    file = path.join(out, 'model.safetensors');
    console.log(`--out ${out} is a directory: the model goes to ${file}`);
  }
  const dir = path.dirname(path.resolve(file));
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (error) {
    throw new Error(`--out ${out}: cannot create the directory ${dir} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new Error(`--out ${out}: the directory ${dir} is not writable`);
  }
  if (fs.existsSync(file) && !fs.statSync(file).isFile()) throw new Error(`--out ${out}: ${file} exists and is not a file`);
  return file;
}

/** Share of characters that no text has: control characters (but tab and newlines) and U+FFFD from invalid UTF-8. */
function binaryShare(text: string): number {
  let odd = 0;
  let seen = 0;
  for (const c of text.slice(0, 100_000)) {
    const code = c.codePointAt(0)!;
    if (code === 0xfffd || (code < 32 && code !== 9 && code !== 10 && code !== 13) || code === 127) odd += 1;
    seen += 1;
  }
  return odd / Math.max(seen, 1);
}

/**
 * What `--resume` continues: the checkpoint's architecture (flags given on the command line
 * must match it) and vocabulary (the text must have the same characters), and where it stands.
 */
async function resumePlan(file: string, text: string, flags: TrainFlags, given: (flag: string) => boolean): Promise<{ tokenizer: CharTokenizer; position: { epoch: number; step: number; batch: number } }> {
  readableFile(file, 'checkpoint');
  let checkpoint;
  try {
    checkpoint = await loadCheckpoint(file);
  } catch (error) {
    throw new Error(`--resume ${file}: ${(error as Error).message}`);
  }
  const spec = checkpoint.modelSpec;
  if (!spec || spec.class !== 'SequenceModel' || !checkpoint.metadata?.['recurrent.tokenizer']) {
    throw new Error(`--resume ${file}: not a checkpoint of \`recurrent train\` (no character model and vocabulary in it)`);
  }
  const config = spec.config as Record<string, unknown>;
  for (const [flag, key, name] of ARCHITECTURE_FLAGS) {
    const saved = key === 'cell' ? String(config.cell) : Number(config[key]);
    if (given(flag) && flags[flag] !== saved) {
      throw new Error(`${name} ${flags[flag]} does not match the checkpoint ${file}, trained with ${name} ${saved}: drop ${name} to resume it, or start a new run without --resume`);
    }
    (flags as unknown as Record<string, unknown>)[flag] = saved;
  }
  const tokenizer = tokenizerFromJSON(parseJson(checkpoint.metadata['recurrent.tokenizer'], 'recurrent.tokenizer', file));
  if (!(tokenizer instanceof CharTokenizer)) throw new Error(`--resume ${file}: a word-level checkpoint`);
  const own = CharTokenizer.fromText(text);
  const missing = own.chars.filter((c) => !tokenizer.chars.includes(c));
  if (missing.length > 0 || own.vocabSize !== tokenizer.vocabSize) {
    const shown = missing.slice(0, 8).map((c) => JSON.stringify(c)).join(', ');
    throw new Error(`--text ${flags.text} has another vocabulary than the checkpoint ${file} (${own.vocabSize} symbols against ${tokenizer.vocabSize}` +
      (missing.length ? `; not in the checkpoint: ${shown}${missing.length > 8 ? ', ...' : ''}` : '') + '): resume on the text it was trained on');
  }
  const position = (checkpoint.state as { position?: { epoch: number; step: number; batch: number } }).position ?? { epoch: 0, step: 0, batch: 0 };
  if (position.epoch >= flags.epochs) {
    throw new Error(`the run in ${file} already finished epoch ${position.epoch} of --epochs ${flags.epochs} (${position.step} steps): pass a larger --epochs to train it further`);
  }
  return { tokenizer, position };
}

async function train(flags: TrainFlags, given: (flag: string) => boolean): Promise<void> {
  readableFile(flags.text, 'text file');
  const text = fs.readFileSync(flags.text, 'utf8');
  if (text.length < 100) throw new Error(`${flags.text} has only ${text.length} characters; give it at least a few thousand`);
  const odd = binaryShare(text);
  if (odd > 0.01) console.warn(`warning: ${flags.text} does not look like text: ${(odd * 100).toFixed(1)}% of its characters are control characters or invalid UTF-8 (training on it anyway)`);
  const out = resolveOut(flags.out);
  const base = out.replace(/\.safetensors$/, '');
  const chartPath = flags.chart ?? base + '.loss.svg';
  const checkpointPath = flags.checkpoint ?? base + '.ckpt.safetensors';
  const resumeFrom = flags.resume === true ? checkpointPath : typeof flags.resume === 'string' ? flags.resume : undefined;
  const resumed = resumeFrom ? await resumePlan(resumeFrom, text, flags, given) : null;

  const lm = new CharLanguageModel(resumed ? resumed.tokenizer : { text }, { cell: flags.cell, hiddenSize: flags.hidden, numLayers: flags.layers, embeddingDim: flags.embedding, dropout: flags.dropout });
  const cpu = native.backends().cpu; // not backends(): that would load libmpi to report on it
  console.log(`recurrent: ${flags.cell.toUpperCase()} ${flags.layers}x${flags.hidden} on ${flags.text} (${text.length.toLocaleString('en-US')} characters, ` +
    `${lm.tokenizer.vocabSize} symbols), ${lm.model.numParameters().toLocaleString('en-US')} parameters, CPU ${cpu.isa}`);
  if (resumed) {
    const { epoch, batch, step } = resumed.position;
    console.log(`resuming ${resumeFrom}: epoch ${epoch + 1} of ${flags.epochs}${batch > 0 ? `, from its step ${batch + 1}` : ''} (${step} steps done)`);
  }
  const unigram = unigramBits(text);
  console.log(`unigram entropy of the text: ${unigram.toFixed(3)} bits/char (what a model without context can do)`);

  const controller = new AbortController();
  let stopCause: 'interrupted' | 'time limit' | null = null;
  const stop = (cause: 'interrupted' | 'time limit') => {
    stopCause ??= cause;
    controller.abort();
  };
  const onSignal = () => stop('interrupted');
  process.once('SIGINT', onSignal);
  const deadline = flags.maxMinutes !== undefined ? Date.now() + flags.maxMinutes * 60_000 : Infinity;
  const bar = new SingleBar({
    format: ' {bar} {percentage}% | epoch {epoch}/{epochs} | loss {loss} | {speed} timestep-samples/s | ETA {eta_text}',
    hideCursor: true, noTTYOutput: true, notTTYSchedule: 5000, etaBuffer: 50,
  }, Presets.shades_classic);
  let barEpoch = -1;
  const history = await lm.train({ text }, {
    epochs: flags.epochs, batchSize: flags.batchSize, bpttSteps: flags.bptt, lr: flags.lr, validationSplit: flags.valSplit,
    seed: flags.seed, signal: controller.signal, checkpoint: { path: checkpointPath, everySteps: 100 }, resumeFrom,
    ...(flags.dashboard !== undefined ? {
      dashboard: {
        port: typeof flags.dashboard === 'number' ? flags.dashboard : 8090, lossTitle: 'bits per character', lossScale: 1 / Math.LN2,
        onReady: (url: string) => console.log(`dashboard: ${url}`),
      },
    } : {}),
    onProgress: (p) => {
      if (p.epoch !== barEpoch) {
        bar.start(p.batches, 0, { epoch: p.epoch + 1, epochs: p.epochs, loss: '-', speed: '-', eta_text: '--' });
        barEpoch = p.epoch;
      }
      bar.update(p.batch, { epoch: p.epoch + 1, epochs: p.epochs, loss: (p.loss / Math.LN2).toFixed(3) + ' bits', speed: Math.round(p.timestepSamplesPerSecond).toLocaleString('en-US'), eta_text: formatSeconds(p.etaSeconds) });
      if (Date.now() > deadline) stop('time limit');
    },
    onEpochEnd: ({ epoch, loss, valBitsPerChar }) => {
      bar.stop();
      barEpoch = -1;
      console.log(`epoch ${epoch + 1}: train ${(loss / Math.LN2).toFixed(3)} bits/char` + (valBitsPerChar !== undefined ? `, validation ${valBitsPerChar.toFixed(3)} bits/char` : ''));
    },
  }).finally(() => {
    bar.stop();
    process.removeListener('SIGINT', onSignal);
  });
  if (history.stopReason === 'aborted') {
    const why = stopCause === 'time limit' ? `--max-minutes ${flags.maxMinutes} reached` : 'interrupted';
    console.log(`stopped after ${history.steps} steps (${why}); the checkpoint ${checkpointPath} resumes it (--resume)`);
  }
  if (stopCause === 'interrupted') process.exitCode = 130; // 128 + SIGINT, as a shell reports it

  try {
    await lm.save(out);
  } catch (error) {
    // the weights are not lost: they go to a file that can be written, and the checkpoint still resumes the run
    const rescue = path.join(os.tmpdir(), `recurrent-rescued-${process.pid}-${Date.now()}.safetensors`);
    await lm.save(rescue);
    throw new Error(`could not save the model to ${out} (${(error as Error).message}); the trained model is in ${rescue}, and ${checkpointPath} resumes the run`);
  }
  console.log(`saved the model to ${out}`);
  if (history.batchLoss.length > 0) {
    fs.writeFileSync(chartPath, await lossChartSvg(history, { title: `${path.basename(flags.text)}: loss`, yTitle: 'bits per character', scale: 1 / Math.LN2 }));
    console.log(`saved the loss chart to ${chartPath}`);
  }
  const finalVal = history.valLoss.at(-1);
  if (finalVal !== undefined) console.log(`validation: ${(finalVal / Math.LN2).toFixed(3)} bits/char (unigram entropy ${unigram.toFixed(3)})`);
  if (flags.sample > 0 && stopCause !== 'interrupted') {
    console.log(`\nsample (temperature ${flags.temperature}):\n`);
    console.log(lm.generate({ prime: text.slice(0, 1).toUpperCase() === text.slice(0, 1) ? 'The ' : '', length: flags.sample, temperature: flags.temperature }));
  }
}

function unigramBits(text: string): number {
  const counts = new Map<string, number>();
  for (const c of text) counts.set(c, (counts.get(c) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) bits -= (n / text.length) * Math.log2(n / text.length);
  return bits;
}

async function sample(model: string, flags: { prime: string; length: number; temperature: number; topK?: number; seed?: number }): Promise<void> {
  readableFile(model, 'model');
  const lm = await CharLanguageModel.load(model);
  process.stdout.write(lm.generate({ prime: flags.prime, length: flags.length, temperature: flags.temperature, topK: flags.topK, seed: flags.seed }) + '\n');
}

async function info(model: string): Promise<void> {
  readableFile(model, 'model');
  const { model: m, metadata } = await loadModel(model);
  const spec = parseJson(metadata[MODEL_KEY], MODEL_KEY, model) as { class: string; config: Record<string, unknown> };
  console.log(`file:        ${model} (${fs.statSync(model).size.toLocaleString('en-US')} bytes)`);
  console.log(`model:       ${spec.class}`);
  for (const [key, value] of Object.entries(spec.config as Record<string, unknown>)) console.log(`  ${key.padEnd(12)} ${value}`);
  console.log(`parameters:  ${m.numParameters().toLocaleString('en-US')}`);
  for (const [name, p] of m.namedParameters()) console.log(`  ${name.padEnd(28)} [${p.shape.join(', ')}]`);
  if (metadata['recurrent.tokenizer']) {
    const tokenizer = parseJson(metadata['recurrent.tokenizer'], 'recurrent.tokenizer', model) as { type: string; chars?: string[]; tokens?: string[] };
    console.log(`tokenizer:   ${tokenizer.type}, ${(tokenizer.chars ?? tokenizer.tokens ?? []).length + 1} symbols`);
  }
  if (metadata['recurrent.history']) {
    const h = parseJson(metadata['recurrent.history'], 'recurrent.history', model) as { epochs: number; steps: number; stopReason: string; loss: number[]; valLoss: number[] };
    const bits = (v: number | undefined) => (v === undefined ? '-' : (v / Math.LN2).toFixed(3));
    console.log(`training:    ${h.epochs} epochs, ${h.steps} steps (${h.stopReason})`);
    h.loss.forEach((loss: number, i: number) => console.log(`  epoch ${i + 1}: train ${bits(loss)} bits/char, validation ${bits(h.valLoss[i])} bits/char`));
  }
}

async function exportModel(model: string, flags: { onnx: string; stateInputs?: boolean; lengths?: boolean }): Promise<void> {
  readableFile(model, 'model');
  const { model: m, metadata } = await loadModel(model);
  // a character model keeps its vocabulary, so the ONNX file can be used on its own
  const kept = Object.fromEntries(Object.entries(metadata).filter(([key]) => key === 'recurrent.tokenizer'));
  fs.mkdirSync(path.dirname(path.resolve(flags.onnx)), { recursive: true });
  await exportOnnx(m, flags.onnx, { metadata: kept, stateInputs: flags.stateInputs ?? false, lengths: flags.lengths ?? false });
  console.log(`wrote ${flags.onnx} (${fs.statSync(flags.onnx).size.toLocaleString('en-US')} bytes, ONNX opset 17): ${m.constructor.name}, ${m.numParameters().toLocaleString('en-US')} parameters`);
}

async function diagnose(model: string, flags: { text?: string; out: string; steps: number; batch: number }): Promise<void> {
  readableFile(model, 'model');
  const { model: m } = await loadModel(model);
  let rnn: Recurrent;
  let input: Tensor;
  if (m instanceof SequenceModel && m.embedding) {
    if (!flags.text) throw new Error('--text <file> is needed: the model reads characters');
    readableFile(flags.text, 'text file');
    const lm = await CharLanguageModel.load(model);
    const ids = lm.tokenizer.encode(fs.readFileSync(flags.text, 'utf8'));
    const T = flags.steps;
    const B = Math.max(1, Math.min(flags.batch, Math.floor(ids.length / T)));
    if (ids.length < T) throw new Error(`${flags.text} has fewer than --steps ${T} characters`);
    // B windows spread over the text, time-major [T, B]
    const windows = new Float32Array(T * B);
    const stride = B > 1 ? Math.floor((ids.length - T) / (B - 1)) : 0;
    for (let b = 0; b < B; ++b) for (let t = 0; t < T; ++t) windows[t * B + b] = ids[b * stride + t];
    input = noGrad(() => lm.model.embedding!.forward(Tensor.from(windows, [T, B])));
    rnn = lm.model.rnn;
  } else {
    const recurrent = m instanceof SequenceModel ? m.rnn : m;
    if (!isRecurrent(recurrent)) throw new Error(`${model} holds a ${m.constructor.name}; diagnose reads RNN, LSTM, GRU or SequenceModel files`);
    rnn = recurrent;
    input = Tensor.randn(rnn.batchFirst ? [flags.batch, flags.steps, rnn.inputSize] : [flags.steps, flags.batch, rnn.inputSize]);
    console.log('(no token input: the probe batch is standard normal noise)');
  }
  rnn.eval();
  const flow = gradientFlow(rnn, input);
  const stats = gateStatistics(rnn, input);
  console.log(`${rnn.constructor.name}, ${rnn.numLayers} layer(s) x ${rnn.hiddenSize} units${rnn.bidirectional ? ', bidirectional' : ''}; probe batch [${input.shape.join(', ')}]`);
  console.log('gradient flow (loss: sum of the last step\'s output):');
  for (const l of flow.layers) {
    console.log(`  layer ${l.layer}${l.direction ? ' reverse' : ''}: ||dL/dh_0|| / ||dL/dh_${l.norms.length - 1}|| = ${l.ratio.toExponential(2)}; ` +
      `largest singular value of W_hh ${l.largestSingularValue.map((v) => v.toFixed(2)).join(', ')}`);
  }
  console.log('gates (mean, share saturated below 0.05 or above 0.95):');
  for (const l of stats.layers) {
    const gates = Object.entries(l.gates).map(([name, g]) => `${name} ${g.mean.toFixed(3)} (${(g.saturated * 100).toFixed(0)}%)`).join(', ');
    let line = `  layer ${l.layer}${l.direction ? ' reverse' : ''}: ${gates || '(no gates: a plain RNN)'}`;
    if (l.forgetTimeConstants) {
      const taus = [...l.forgetTimeConstants].sort((a, b) => a - b);
      line += `; forget time constant median ${taus[taus.length >> 1].toFixed(1)} steps, max ${taus[taus.length - 1].toFixed(1)}`;
    }
    console.log(line);
  }
  fs.mkdirSync(flags.out, { recursive: true });
  const base = path.basename(model).replace(/\.safetensors$/, '');
  const flowChart = path.join(flags.out, `${base}.gradient-flow.svg`);
  fs.writeFileSync(flowChart, await gradientFlowChartSvg([{ name: rnn.constructor.name, flow }]));
  console.log(`wrote ${flowChart}`);
  if (rnn instanceof LSTM) {
    const tauChart = path.join(flags.out, `${base}.forget-time-constants.svg`);
    fs.writeFileSync(tauChart, await forgetTimeChartSvg(stats));
    console.log(`wrote ${tauChart}`);
  }
}

interface LaunchFlags {
  np: number;
  hostfile?: string;
  mpirun: string;
  threads?: number;
  require: string[];
  mca: string[];
}

/**
 * `recurrent launch -n N script.js [args]`: N ranks of `node script.js args` through Open MPI's
 * mpirun, on this machine (oversubscribed when N exceeds the cores: each rank then gets a
 * share of them) or on the hosts of --hostfile. Resolves with mpirun's exit code.
 */
export function launch(script: string, args: string[], flags: LaunchFlags): Promise<number> {
  readableFile(script, 'script');
  const mpiArgs = ['-n', String(flags.np), '--bind-to', 'none'];
  if (flags.hostfile) {
    readableFile(flags.hostfile, 'hostfile');
    mpiArgs.push('--hostfile', flags.hostfile);
  } else {
    mpiArgs.push('--oversubscribe');
  }
  if (process.getuid?.() === 0) mpiArgs.push('--allow-run-as-root'); // containers and CI run as root
  for (const setting of flags.mca) {
    const [key, ...value] = setting.split('=');
    if (!key || value.length === 0) throw new Error(`--mca expects KEY=VALUE, received ${setting}`);
    mpiArgs.push('--mca', key, value.join('='));
  }
  const env = { ...process.env };
  if (flags.threads !== undefined) env.RECURRENT_NUM_THREADS = String(flags.threads);
  // environment the ranks need on other hosts too
  for (const name of ['RECURRENT_NUM_THREADS', 'RECURRENT_ISA', 'RECURRENT_ADDON', 'NODE_PATH', 'NODE_OPTIONS']) {
    if (env[name] !== undefined) mpiArgs.push('-x', name);
  }
  const nodeArgs = flags.require.flatMap((module) => ['-r', module]);
  const child = spawn(flags.mpirun, [...mpiArgs, process.execPath, ...nodeArgs, script, ...args], { stdio: 'inherit', env });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  return new Promise((resolve, reject) => {
    child.on('error', (error: NodeJS.ErrnoException) => {
      reject(error.code === 'ENOENT'
        ? new Error(`${flags.mpirun} was not found: install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev) or pass --mpirun PATH`)
        : error);
    });
    child.on('exit', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      resolve(code ?? (signal ? 128 + 15 : 1));
    });
  });
}

export async function main(argv: string[]): Promise<void> {
  const { version } = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
  const program = new Command('recurrent')
    .description('Train recurrent networks (RNN, LSTM, GRU) at native speed')
    .version(version, '-V, --version', 'print the version')
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (text, write) => write(text) });
  program.command('train')
    .description('train a character-level language model on a text file')
    .requiredOption('--text <file>', 'UTF-8 text to learn from')
    .option('--out <file>', 'where to save the model', 'model.safetensors')
    .addOption(new Option('--cell <type>', 'recurrent cell').choices(['lstm', 'gru', 'rnn']).default('lstm'))
    .option('--hidden <n>', 'hidden units per layer', integer('--hidden', 1), 256)
    .option('--layers <n>', 'stacked layers', integer('--layers', 1), 2)
    .option('--embedding <n>', 'character embedding width', integer('--embedding', 1), 64)
    .option('--dropout <p>', 'dropout between layers', number('--dropout', 0, 0.99), 0)
    .option('--epochs <n>', 'passes over the text', integer('--epochs', 1), 3)
    .option('--batch-size <n>', 'parallel streams', integer('--batch-size', 1), 32)
    .option('--bptt <n>', 'truncated BPTT window (characters)', integer('--bptt', 1), 64)
    .option('--lr <x>', 'Adam learning rate', number('--lr', 0, 10), 4e-3)
    .option('--val-split <x>', 'share of the text held out for validation', number('--val-split', 0, 0.49), 0.1)
    .option('--chart <file>', 'loss chart (SVG); default: next to --out')
    .option('--checkpoint <file>', 'checkpoint written every 100 steps and each epoch; default: next to --out')
    .option('--resume [file]', 'continue from a checkpoint (default: the --checkpoint file)')
    .option('--seed <n>', 'random seed', integer('--seed', 0), 1)
    .option('--max-minutes <x>', 'stop (and save) after this much time', number('--max-minutes', 0))
    .option('--sample <n>', 'characters to generate at the end', integer('--sample', 0), 300)
    .option('--temperature <x>', 'sampling temperature', number('--temperature', 0, 10), 0.8)
    .option('--dashboard [port]', 'serve a live training dashboard on 127.0.0.1 (default port 8090; 0: any free port)', integerIn('--dashboard', 0, 65535))
    .action((flags: TrainFlags, command: Command) => train(flags, (flag) => command.getOptionValueSource(flag) === 'cli'));
  program.command('sample')
    .description('generate text from a trained model')
    .argument('<model>', 'a model saved by `recurrent train`')
    .option('--prime <text>', 'text to start from', '')
    .option('--length <n>', 'characters to generate', integer('--length', 0), 500)
    .option('--temperature <x>', 'sampling temperature (0: most likely)', number('--temperature', 0, 10), 0.8)
    .option('--top-k <n>', 'sample among the k likeliest characters', integer('--top-k', 1))
    .option('--seed <n>', 'random seed', integer('--seed', 0))
    .action((model: string, flags) => sample(model, flags));
  program.command('info')
    .description('describe a saved model: architecture, parameters, training history')
    .argument('<model>', 'a .safetensors file written by recurrent')
    .action((model: string) => info(model));
  program.command('export')
    .description('write a saved model as ONNX (onnxruntime in Python, C++, C#, Java, the browser...)')
    .argument('<model>', 'a .safetensors file written by recurrent')
    .requiredOption('--onnx <file>', 'the ONNX file to write')
    .option('--state-inputs', 'h0/c0 as required inputs (for onnxruntime-node/-web, which cannot feed optional ones)')
    .option('--lengths', 'add a sequence_lens input for variable-length batches')
    .action((model: string, flags) => exportModel(model, flags));
  program.command('diagnose')
    .description('gradient flow over time and gate statistics of a saved model, printed and drawn as SVG charts')
    .argument('<model>', 'a .safetensors file written by recurrent')
    .option('--text <file>', 'text to probe a character model with')
    .option('--out <dir>', 'where to write the charts', '.')
    .option('--steps <n>', 'time steps of the probe batch', integer('--steps', 2), 100)
    .option('--batch <n>', 'sequences in the probe batch', integer('--batch', 1), 16)
    .action((model: string, flags) => diagnose(model, flags));
  program.command('launch')
    .description('run N ranks of a data-parallel training script (initDistributed, fit with distributed: true) through mpirun')
    .requiredOption('-n, --np <n>', 'number of ranks (processes)', integer('-n', 1))
    .option('--hostfile <file>', 'Open MPI hostfile: ranks on several machines (default: all on this one)')
    .option('--mpirun <path>', 'the MPI launcher', 'mpirun')
    .option('--threads <n>', 'CPU threads per rank (default: the cores of a host shared among its ranks)', integer('--threads', 1))
    .option('-r, --require <module>', 'preload a module in every rank (node -r), e.g. ts-node/register', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--mca <key=value>', 'an Open MPI MCA parameter (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
    .argument('<script>', 'the script every rank runs')
    .argument('[args...]', "the script's own arguments")
    .passThroughOptions()
    .action(async (script: string, args: string[], flags: LaunchFlags) => {
      const code = await launch(script, args, flags);
      if (code !== 0) process.exitCode = code;
    });
  program.exitOverride((error) => {
    process.exitCode = error.exitCode;
    throw Object.assign(new Error(''), { silent: true, exitCode: error.exitCode });
  });
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if ((error as { silent?: boolean }).silent) return; // commander already printed the message
    throw error;
  }
}
