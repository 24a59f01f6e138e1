#!/usr/bin/env node
// prebuildify drives a node-gyp compatible command ("rebuild --target=<node version>
// --arch=x64 --release ..."). cmake-js's --target means a CMake target, so the
// node-gyp flags are dropped and the addon is rebuilt from scratch with cmake-js.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const arch = process.argv.find((a) => a.startsWith('--arch='));
const args = [require.resolve('cmake-js/bin/cmake-js'), 'rebuild', ...(arch ? [arch] : [])];
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(result.status ?? 1);
