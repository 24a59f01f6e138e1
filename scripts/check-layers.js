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
// the imports that run (not `import type`), for the cycle check below
const runtimeEdges = new Map();
for (const file of filesUnder(LIB)) {
  runtimeEdges.set(file, []);
  const from = floorOf(file);
  const source = fs.readFileSync(file, 'utf8');
  for (const match of source.matchAll(IMPORT)) {
    let target = path.resolve(path.dirname(file), match[2]);
    if (!target.endsWith('.ts') && fs.existsSync(`${target}.ts`)) target = `${target}.ts`;
    if (!target.startsWith(LIB + path.sep) || !target.endsWith('.ts')) continue; // package.json and the like
    imports += 1;
    const statement = source.slice(source.lastIndexOf('\n', match.index) + 1, match.index);
    if (!/^\s*(import|export)\s+type\b/.test(statement) && !/import type\b[^;]*$/.test(source.slice(Math.max(0, match.index - 400), match.index))) runtimeEdges.get(file).push(target);
    const to = floorOf(target);
    if (to.rank > from.rank) {
      const line = source.slice(0, match.index).split('\n').length;
      problems.push(`lib/${path.relative(LIB, file)}:${line} imports ${match[2]}: ${from.name} sits below ${to.name}`);
    }
  }
}
// no two files may need each other at load time (tensor.ts and autograd.ts once did: the engine
// knows Tensor only as a type)
const state = new Map();
const cycle = (file, trail) => {
  if (state.get(file) === 'done') return null;
  if (state.get(file) === 'open') return [...trail.slice(trail.indexOf(file)), file];
  state.set(file, 'open');
  for (const next of runtimeEdges.get(file) ?? []) {
    const found = cycle(next, [...trail, file]);
    if (found) return found;
  }
  state.set(file, 'done');
  return null;
};
for (const file of runtimeEdges.keys()) {
  const found = cycle(file, []);
  if (found) {
    problems.push(`an import cycle at load time: ${found.map((f) => `lib/${path.relative(LIB, f)}`).join(' -> ')}`);
    break;
  }
}
if (problems.length > 0) {
  console.error(`check-layers: ${problems.length} problem(s) (floors: ${FLOORS.join(' < ')}):\n  ${problems.join('\n  ')}`);
  process.exit(1);
}
console.log(`check-layers: ${imports} imports in lib/, none reaches up a floor, no cycle at load time`);
