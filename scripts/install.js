#!/usr/bin/env node
// npm install hook: use a binary that loads on this machine (a prebuild, or an
// existing local build); otherwise compile the addon with cmake-js. Honours
// `npm install --build-from-source` (npm_config_build_from_source).
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const forced = ['true', '1'].includes(String(process.env.npm_config_build_from_source || '').toLowerCase());

function loads() {
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

if (!forced && loads()) {
  process.exit(0);
}
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const result = spawnSync(process.execPath, [cmakeJs, 'compile'], { cwd: root, stdio: 'inherit' });
if (result.status !== 0) {
  console.error(
    '\nrecurrent: compiling the native addon failed, and no prebuilt binary fits this machine\n' +
      `(${process.platform}-${process.arch}, Node-API ${process.versions.napi}).\n` +
      'Compiling needs CMake >= 3.18 and a C++17 compiler (g++ or clang++).\n',
  );
}
process.exit(result.status ?? 1);
