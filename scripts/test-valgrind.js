#!/usr/bin/env node
/**
 * npm run test:valgrind: valgrind memcheck over a short training run (scripts/valgrind-train.js)
 * with the best kernels valgrind's CPU offers and with the portable ones. Fails on any
 * invalid access, use of uninitialised memory, or definitely lost block.
 */
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
let failed = false;
for (const isa of [undefined, 'baseline']) {
  const env = { ...process.env };
  if (isa) env.RECURRENT_ISA = isa;
  else delete env.RECURRENT_ISA;
  const args = ['--leak-check=full', '--show-leak-kinds=definite', '--errors-for-leak-kinds=definite', '--error-exitcode=97', '--num-callers=30',
    process.execPath, path.join(__dirname, 'valgrind-train.js')];
  console.log(`valgrind ${args.join(' ')}${isa ? ` (RECURRENT_ISA=${isa})` : ''}`);
  const r = spawnSync('valgrind', args, { cwd: root, env, encoding: 'utf8' });
  if (r.error) {
    console.error(`could not run valgrind: ${r.error.message} (Debian: apt-get install valgrind)`);
    process.exit(1);
  }
  const log = r.stdout + r.stderr;
  const pick = (re) => log.split('\n').filter((l) => re.test(l)).map((l) => l.replace(/^==\d+==\s*/, '  ')).join('\n');
  console.log(pick(/cpu kernels|loss|ragged|ERROR SUMMARY|definitely lost|indirectly lost|possibly lost/));
  if (r.status !== 0) {
    failed = true;
    console.error(log);
  }
}
process.exit(failed ? 1 : 0);
