#!/usr/bin/env node
// prebuildify drives a node-gyp compatible command ("rebuild --target=<node version>
// --arch=x64 --release ..."). cmake-js's --target means a CMake target, so the
// node-gyp flags are dropped and the addon is rebuilt from scratch with cmake-js; --arch=arm64 on an
// x64 host cross-compiles (cmake/aarch64-linux-gnu.cmake).
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const arch = process.argv.find((a) => a.startsWith('--arch='));
// linux-arm64 from an x64 host: Debian's cross compiler through a CMake toolchain file, no CUDA
const cross = arch === '--arch=arm64' && process.arch !== 'arm64'
  ? [`--CDCMAKE_TOOLCHAIN_FILE=${path.join(root, 'cmake', 'aarch64-linux-gnu.cmake')}`, '--CDRECURRENT_CUDA=OFF']
  : [];
const args = [require.resolve('cmake-js/bin/cmake-js'), 'rebuild', ...(arch && !cross.length ? [arch] : []), ...cross];
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(result.status ?? 1);
