#!/usr/bin/env node
/**
 * npm run test:asan: builds the addon with AddressSanitizer and UndefinedBehaviorSanitizer
 * into build-asan/ and runs the whole mocha suite against it (child processes too: they
 * inherit the environment). Any invalid access or undefined behaviour aborts the run.
 * Leak detection is off here (Node itself keeps memory until exit); valgrind checks
 * leaks (npm run test:valgrind).
 */
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const out = path.join(root, 'build-asan');
const run = (cmd, args, env) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

run(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--out', out, '--CDRECURRENT_SANITIZE=ON', '--CDRECURRENT_CUDA=OFF']);
const runtime = (name) => execFileSync('g++', [`-print-file-name=${name}`], { encoding: 'utf8' }).trim();
const preload = [runtime('libasan.so'), runtime('libubsan.so')].join(' ');
console.log(`\nrunning the suite with ${path.join(out, 'Release', 'recurrent.node')}, LD_PRELOAD=${preload}\n`);
run(process.execPath, [require.resolve('mocha/bin/mocha.js'), ...process.argv.slice(2)], {
  RECURRENT_ADDON: path.join(out, 'Release', 'recurrent.node'),
  LD_PRELOAD: preload,
  // V8 and wasm install their own SEGV handlers; leaks are valgrind's job
  RECURRENT_SANITIZER: 'asan',
  ASAN_OPTIONS: 'detect_leaks=0:handle_segv=0:allow_user_segv_handler=1:abort_on_error=1:detect_odr_violation=0',
  UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
});
