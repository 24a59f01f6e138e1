/** What the benchmarks share: medians, and building the C++ harnesses of bench/native/. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const root = path.join(__dirname, '..');
export const benchBuildDir = path.join(root, 'build', 'bench');

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Configures build/bench (RECURRENT_BENCH=ON, no CUDA) and builds `target`; returns the executable. */
export function buildHarness(target: string): string {
  const cmake = (args: string[]) => {
    const r = spawnSync('cmake', args, { cwd: root, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cmake ${args.join(' ')} failed:\n${r.stdout}${r.stderr}`);
  };
  cmake(['-S', '.', '-B', benchBuildDir, '-DCMAKE_BUILD_TYPE=Release', '-DRECURRENT_BENCH=ON', '-DRECURRENT_TESTS=OFF', '-DRECURRENT_CUDA=OFF']);
  cmake(['--build', benchBuildDir, '--target', target, '-j', String(os.cpus().length)]);
  return path.join(benchBuildDir, target);
}

/** The CPU by name, family and model (from /proc/cpuinfo where there is one), cores, OS and Node. */
export function describeMachine(): string {
  let model = os.cpus()[0]?.model ?? 'unknown CPU';
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(info)?.[1];
    model = `${field('model name') ?? model} (family ${field('cpu family')}, model ${field('model')})`;
  } catch {
    // not Linux: the model name alone
  }
  return `${model}, ${os.cpus().length} cores, ${os.platform()} ${os.arch()}, Node ${process.version}`;
}
