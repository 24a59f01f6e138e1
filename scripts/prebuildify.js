#!/usr/bin/env node
// npm run prebuildify: the binaries that ship, prebuilds/linux-x64/recurrent.node and (on an x64 Linux
// host with Debian's aarch64 cross compiler) prebuilds/linux-arm64/recurrent.node, cross-compiled
// (scripts/cmake-js-gyp.js adds cmake/aarch64-linux-gnu.cmake for --arch=arm64) and stripped with
// the cross binutils. arm64 first: x64 last leaves build/Release holding this machine's addon.
// PREBUILD_ARCHES=x64 builds one only.
'use strict';
const { spawnSync } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const has = (command) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
const crossArm64 = os.platform() === 'linux' && os.arch() === 'x64' && has('aarch64-linux-gnu-g++');
const wanted = (process.env.PREBUILD_ARCHES ?? (crossArm64 ? 'arm64,x64' : os.arch())).split(',').filter(Boolean);
const prebuildify = require.resolve('prebuildify/bin.js');
for (const arch of wanted) {
  if (arch === 'arm64' && os.arch() !== 'arm64' && !crossArm64) {
    console.error('prebuildify: linux-arm64 needs an x64 Linux host with g++-aarch64-linux-gnu (apt-get install g++-aarch64-linux-gnu)');
    process.exit(1);
  }
  console.log(`== prebuilds/${os.platform()}-${arch}`);
  const env = { ...process.env };
  if (arch === 'arm64' && os.arch() !== 'arm64') env.PREBUILD_STRIP_BIN = 'aarch64-linux-gnu-strip';
  const r = spawnSync(process.execPath, [prebuildify, '--napi', '--strip', '--arch', arch, '--node-gyp', path.join(__dirname, 'cmake-js-gyp.js')],
    { cwd: root, stdio: 'inherit', env });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
