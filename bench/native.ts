/**
 * The layer alone, in C++: recurrent's CPU kernels against oneDNN's LSTM and GRU
 * primitives (Debian's libdnnl-dev) and recurrent's GEMM against OpenBLAS sgemm
 * (libopenblas-dev), on the same machine in the same run. The harnesses live in
 * bench/native/ and build with CMake (RECURRENT_BENCH=ON) into build/bench; a library
 * that is not installed is reported as skipped, with the package to install.
 *
 * Rounds alternate between the libraries (this kind of machine drifts by 10-30% over
 * minutes) and the tables show medians over rounds. Also measured: 2-thread scaling,
 * and throughput as T grows from 32 to 4,096 (linear cost in T). On one thread the two
 * libraries also run paired: both at once, each pinned to its own core (taskset), the cores
 * swapped every round, so that whatever slows the machine slows both alike; the median of
 * the rounds' ratios then moves by a few percent where alternating runs move by 30%.
 *
 *   npm run bench:native                 (about 4 minutes on 2 cores)
 *   npx tsx bench/native.ts --rounds 3
 * Writes bench/native-results.json and bench/native-results.md.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { describeMachine } from './harness';

const root = path.join(__dirname, '..');
const buildDir = path.join(root, 'build', 'bench');

interface LayerResult {
  library: string;
  cell: string;
  hidden: number;
  mode: string;
  threads: number;
  steps: number;
  batch: number;
  seconds: number;
  timestepSamplesPerSecond: number;
  gflops: number;
}

interface GemmResult {
  shape: string;
  m: number;
  n: number;
  k: number;
  threads: number;
  recurrentGflops: number;
  openblasGflops: number;
}

// One job on one thread, both libraries at once (one core each): the medians of their rates and of
// the rounds' ratios (recurrent / oneDNN).
interface PairedResult {
  job: string;
  recurrent: number;
  oneDNN: number;
  ratio: number;
  ratios: number[];
}

export interface NativeReport {
  machine: string;
  rounds: number;
  skipped: string[];
  paired: PairedResult[];
  layers: (LayerResult & { samples: number[] })[];
  gemm: (GemmResult & { samples: number })[];
  steps: LayerResult[];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function build(): void {
  const cmake = (args: string[]) => {
    const r = spawnSync('cmake', args, { cwd: root, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cmake ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  const configured = cmake(['-S', '.', '-B', buildDir, '-DCMAKE_BUILD_TYPE=Release', '-DRECURRENT_BENCH=ON', '-DRECURRENT_TESTS=OFF', '-DRECURRENT_CUDA=OFF']);
  for (const line of configured.split('\n')) if (line.includes('recurrent:')) console.log(line.replace(/^-- /, ''));
  cmake(['--build', buildDir, '-j', String(os.cpus().length)]);
}

function runJsonLines<T>(exe: string, args: string[]): T[] {
  const out = execFileSync(path.join(buildDir, exe), args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  return out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as T);
}

// Both harnesses on one job, one thread each, started together on cores a and b: [recurrent, oneDNN].
function runPairedRound(job: string, cores: [number, number]): [number, number] {
  const run = (exe: string, core: number, tag: string) =>
    `(OMP_NUM_THREADS=1 taskset -c ${core} '${path.join(buildDir, exe)}' 1 --only ${job} | sed 's/^/${tag} /') &`;
  const script = `${run('layer_bench', cores[0], 'R')} ${run('onednn_bench', cores[1], 'D')} wait`;
  const out = execFileSync('sh', ['-c', script], { encoding: 'utf8' });
  const rateOf = (tag: string) => {
    const line = out.split('\n').find((l) => l.startsWith(`${tag} {`));
    if (!line) throw new Error(`paired run of ${job}: no result from ${tag === 'R' ? 'layer_bench' : 'onednn_bench'}`);
    return (JSON.parse(line.slice(2)) as LayerResult).timestepSamplesPerSecond;
  };
  return [rateOf('R'), rateOf('D')];
}

// Every job on one thread, paired (see the header), `rounds` rounds.
function runPaired(rounds: number, jobs: string[]): PairedResult[] {
  return jobs.map((job) => {
    const ours: number[] = [], theirs: number[] = [], ratios: number[] = [];
    for (let round = 0; round < rounds; ++round) {
      const [r, d] = runPairedRound(job, round % 2 === 0 ? [0, 1] : [1, 0]);
      ours.push(r);
      theirs.push(d);
      ratios.push(r / d);
    }
    console.log(`paired ${job}: ${ratios.map((x) => x.toFixed(2)).join(' ')}`);
    return { job, recurrent: median(ours), oneDNN: median(theirs), ratio: median(ratios), ratios };
  });
}

export function runNative(rounds: number): NativeReport {
  build();
  const threadCounts = [...new Set([1, os.cpus().length])].map(String);
  const has = (exe: string) => fs.existsSync(path.join(buildDir, exe));
  const skipped: string[] = [];
  if (!has('onednn_bench')) skipped.push('oneDNN: not installed (Debian: apt-get install libdnnl-dev)');
  if (!has('gemm_bench')) skipped.push('OpenBLAS: not installed (Debian: apt-get install libopenblas-dev)');
  for (const s of skipped) console.log(`skipped: ${s}`);

  const samples = new Map<string, { first: LayerResult; values: number[] }>();
  const add = (r: LayerResult) => {
    const key = `${r.library}|${r.cell}|${r.hidden}|${r.batch}|${r.mode}|${r.threads}`;
    const entry = samples.get(key) ?? { first: r, values: [] };
    entry.values.push(r.timestepSamplesPerSecond);
    samples.set(key, entry);
  };
  for (let round = 1; round <= rounds; ++round) {
    const started = Date.now();
    runJsonLines<LayerResult>('layer_bench', threadCounts).forEach(add);
    // one process per thread count: oneDNN 2.6 (Debian) crashed in the 2-thread GRU inference when the same
    // process had first run the 1-thread jobs with the vanilla RNN among them
    if (has('onednn_bench')) for (const t of threadCounts) runJsonLines<LayerResult>('onednn_bench', [t]).forEach(add);
    console.log(`round ${round}/${rounds}: ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
  const layers = [...samples.values()].map(({ first, values }) => {
    const rate = median(values);
    return { ...first, timestepSamplesPerSecond: rate, seconds: (first.steps * first.batch) / rate, gflops: (first.gflops * rate) / first.timestepSamplesPerSecond, samples: values };
  });

  // the jobs both harnesses run (bench::job_name), paired on one thread where there are two cores
  const jobName = (r: LayerResult) => `${r.cell}-${r.hidden}-${r.mode}${r.batch === 32 ? '' : `-b${r.batch}`}`;
  const jobs = [...new Set(layers.filter((r) => r.library === 'oneDNN' && r.threads === 1).map(jobName))];
  const canPair = os.cpus().length >= 2 && spawnSync('taskset', ['-c', '0', 'true']).status === 0;
  if (has('onednn_bench') && !canPair) skipped.push('the paired one-thread runs: they need two cores and taskset (util-linux)');
  console.log('one thread, paired...');
  const paired = has('onednn_bench') && canPair ? runPaired(rounds, jobs) : [];

  const gemmSamples = new Map<string, GemmResult[]>();
  if (has('gemm_bench')) {
    for (let round = 1; round <= Math.min(rounds, 3); ++round) {
      for (const g of runJsonLines<GemmResult>('gemm_bench', threadCounts)) {
        const key = `${g.shape}|${g.m}|${g.n}|${g.k}|${g.threads}`;
        gemmSamples.set(key, [...(gemmSamples.get(key) ?? []), g]);
      }
    }
  }
  const gemm = [...gemmSamples.values()].map((list) => ({
    ...list[0], recurrentGflops: median(list.map((g) => g.recurrentGflops)), openblasGflops: median(list.map((g) => g.openblasGflops)), samples: list.length,
  }));

  console.log('throughput as T grows (LSTM, both cores)...');
  const steps = runJsonLines<LayerResult>('layer_bench', [String(os.cpus().length), '--only', 'lstm-128-train', '--only', 'lstm-512-train', '--steps', '32,256,1024,4096']);

  return { machine: describeMachine(), rounds, skipped, paired, layers, gemm, steps };
}

function rate(v: number): string {
  return v >= 1e5 ? `${(v / 1000).toFixed(0)}k` : v >= 1e3 ? `${(v / 1000).toFixed(1)}k` : v.toFixed(0);
}

export function nativeMarkdown(report: NativeReport): string {
  const find = (library: string, cell: string, hidden: number, batch: number, mode: string, threads: number) =>
    report.layers.find((r) => r.library === library && r.cell === cell && r.hidden === hidden && r.batch === batch && r.mode === mode && r.threads === threads);
  const maxThreads = Math.max(...report.layers.map((r) => r.threads));
  const lines = [
    '## The layer alone: recurrent vs oneDNN (C++)',
    '',
    `Machine: ${report.machine}. One layer, T = 32, B = 32 (and 128 for the LSTM and GRU), I = H, float32; training = forward + backward. ` +
      `Timestep-samples per second (T x B / s), medians of ${report.rounds} alternating rounds; GFLOP/s counts the matmuls ` +
      '(3 x 2 x B x (I + H) x G x H per step for training). oneDNN 2.6 from Debian (OpenMP), weights reordered into its preferred layouts, ' +
      'reorders not timed; its GRU is the linear-before-reset GRU, which is PyTorch\'s. recurrent keeps its packed weights as the addon ' +
      'does: packed once in inference, once per iteration in training (one optimizer step in fit).',
    '',
    `| job | recurrent ${maxThreads} threads | oneDNN ${maxThreads} threads | ratio | recurrent 1 thread | oneDNN 1 thread | ratio | recurrent ${maxThreads}t/1t |`,
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const batch of [32, 128]) {
    for (const cell of ['lstm', 'gru', 'rnn']) {
      for (const hidden of [128, 512]) {
        for (const mode of ['train', 'inference']) {
          const ours = find('recurrent', cell, hidden, batch, mode, maxThreads);
          const theirs = find('oneDNN', cell, hidden, batch, mode, maxThreads);
          const ours1 = find('recurrent', cell, hidden, batch, mode, 1);
          const theirs1 = find('oneDNN', cell, hidden, batch, mode, 1);
          if (!ours) continue;
          const cellText = (r?: LayerResult) => (r ? `${rate(r.timestepSamplesPerSecond)} (${r.gflops.toFixed(0)} GF/s)` : 'skipped');
          const ratio = (a?: LayerResult, b?: LayerResult) => (a && b ? `${(a.timestepSamplesPerSecond / b.timestepSamplesPerSecond).toFixed(2)}x` : '-');
          lines.push(`| ${cell === 'rnn' ? 'RNN tanh' : cell.toUpperCase()} H=${hidden}${batch === 32 ? '' : ` B=${batch}`} ${mode} | ${cellText(ours)} | ${cellText(theirs)} | ${ratio(ours, theirs)} | ` +
            `${cellText(ours1)} | ${cellText(theirs1)} | ${ratio(ours1, theirs1)} | ${ours1 ? (ours.timestepSamplesPerSecond / ours1.timestepSamplesPerSecond).toFixed(2) + 'x' : '-'} |`);
        }
      }
    }
  }
  if (report.paired?.length) {
    lines.push('', '## One thread, paired: both libraries at once, one core each', '',
      `Both harnesses run the same job at the same time, each pinned to its own core, the cores swapped every round (${report.rounds} ` +
        'rounds): whatever else slows the machine slows both alike. The ratio is the median of the rounds\' ratios (recurrent / oneDNN); ' +
        'the rates are lower than alone, with the other core busy.', '',
      '| job | recurrent | oneDNN | ratio (median) | the rounds\' ratios |', '|---|---|---|---|---|',
      ...report.paired.map((p) => `| ${p.job} | ${rate(p.recurrent)} | ${rate(p.oneDNN)} | ${p.ratio.toFixed(2)}x | ${p.ratios.map((x) => x.toFixed(2)).join(', ')} |`));
  }
  if (report.skipped.length) lines.push('', ...report.skipped.map((s) => `Skipped: ${s}.`));
  if (report.gemm.length) {
    lines.push('', '## GEMM at the shapes of a layer (B = 32, T = 32): recurrent vs OpenBLAS sgemm, GFLOP/s', '',
      '| product | M x N x K | threads | recurrent | OpenBLAS | ratio |', '|---|---|---|---|---|---|',
      ...report.gemm.map((g) => `| ${g.shape} | ${g.m} x ${g.n} x ${g.k} | ${g.threads} | ${g.recurrentGflops.toFixed(0)} | ${g.openblasGflops.toFixed(0)} | ${(g.recurrentGflops / g.openblasGflops).toFixed(2)}x |`));
  }
  if (report.steps.length) {
    lines.push('', '## Linear cost in T (LSTM training, both cores)', '', '| H | T = ' + [...new Set(report.steps.map((s) => s.steps))].join(' | T = ') + ' |',
      '|---|' + [...new Set(report.steps.map((s) => s.steps))].map(() => '---').join('|') + '|');
    for (const hidden of [...new Set(report.steps.map((s) => s.hidden))]) {
      lines.push(`| ${hidden} | ` + report.steps.filter((s) => s.hidden === hidden).map((s) => rate(s.timestepSamplesPerSecond)).join(' | ') + ' |');
    }
  }
  return lines.join('\n') + '\n';
}

if (require.main === module) {
  const i = process.argv.indexOf('--rounds');
  const rounds = i >= 0 ? Number(process.argv[i + 1]) : 5;
  const report = runNative(rounds);
  const md = nativeMarkdown(report);
  console.log('\n' + md);
  fs.writeFileSync(path.join(__dirname, 'native-results.json'), JSON.stringify(report, null, 2) + '\n');
  fs.writeFileSync(path.join(__dirname, 'native-results.md'), md);
  console.log('wrote bench/native-results.json and bench/native-results.md');
}
