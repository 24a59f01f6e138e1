#!/usr/bin/env node
'use strict';
/**
 * The floors of lib/: a file may import from its own folder and from the floors below it, never
 * from above. `npm test` runs this first; a violation fails it, naming the import.
 *
 *   core/ < nn/ < optim/ < io/ < distributed/ < diagnostics/ < train/, runtime.ts < apps/ < index.ts
 *
 * Type-only imports count too: a type from an upper floor couples the two as much as a value.
 */
const fs = require('node:fs');
const path = require('node:path');

const LIB = path.resolve(process.argv[2] ?? path.join(__dirname, '..', 'lib')); // another tree to check: its path
const FLOORS = ['core', 'nn', 'optim', 'io', 'distributed', 'diagnostics', 'train', 'apps'];
const TOP_FILES = { 'runtime.ts': FLOORS.indexOf('train'), 'index.ts': FLOORS.length };

function floorOf(file) {
  const relative = path.relative(LIB, file).split(path.sep);
  if (relative.length === 1) {
    if (!(relative[0] in TOP_FILES)) throw new Error(`lib/${relative[0]}: a file at the top of lib/ must be one of ${Object.keys(TOP_FILES).join(', ')} (or go in a floor)`);
    return { name: relative[0], rank: TOP_FILES[relative[0]] };
  }
  const rank = FLOORS.indexOf(relative[0]);
  if (rank < 0) throw new Error(`lib/${relative[0]}/ is not a floor: add it to scripts/check-layers.js in its place`);
  return { name: `${relative[0]}/`, rank };
}

function filesUnder(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(full) : entry.name.endsWith('.ts') ? [full] : [];
  });
}

const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)(['"])(\.{1,2}\/[^'"]+)\1/gm;
const problems = [];
let imports = 0;
for (const file of filesUnder(LIB)) {
  const from = floorOf(file);
  const source = fs.readFileSync(file, 'utf8');
  for (const match of source.matchAll(IMPORT)) {
    let target = path.resolve(path.dirname(file), match[2]);
    if (!target.endsWith('.ts') && fs.existsSync(`${target}.ts`)) target = `${target}.ts`;
    if (!target.startsWith(LIB + path.sep) || !target.endsWith('.ts')) continue; // package.json and the like
    imports += 1;
    const to = floorOf(target);
    if (to.rank > from.rank) {
      const line = source.slice(0, match.index).split('\n').length;
      problems.push(`lib/${path.relative(LIB, file)}:${line} imports ${match[2]}: ${from.name} sits below ${to.name}`);
    }
  }
}
if (problems.length > 0) {
  console.error(`check-layers: ${problems.length} import(s) reach up a floor (${FLOORS.join(' < ')}):\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log(`check-layers: ${imports} imports in lib/, none reaches up a floor`);
