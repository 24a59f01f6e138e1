#!/usr/bin/env node
'use strict';
/**
 * Copies the browser builds the dashboard page loads (Vega and Vega-Lite, minified, with their
 * licences) from the dev dependencies into dist/assets/, so that the published package serves
 * them without depending on the chart packages. Runs after tsc in `build`, `prepare` and `test`.
 */
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const out = path.join(root, 'dist', 'assets');

function packageDir(name) {
  let dir = path.dirname(require.resolve(name, { paths: [root] }));
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

fs.mkdirSync(out, { recursive: true });
for (const [name, file] of [['vega', 'vega.min.js'], ['vega-lite', 'vega-lite.min.js']]) {
  const dir = packageDir(name);
  const { version, license } = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  fs.copyFileSync(path.join(dir, 'build', file), path.join(out, file));
  fs.writeFileSync(path.join(out, `${name}.LICENSE.txt`), `${name} ${version} (${license}), https://vega.github.io\n\n${fs.readFileSync(path.join(dir, 'LICENSE'), 'utf8')}`);
}
console.log(`copy-assets: Vega and Vega-Lite browser builds in ${path.relative(root, out)}/`);
