#!/usr/bin/env bash
# Builds or installs the engines the tests start (an S3 server, a Kubernetes cluster ...) once into a cache and
# prints the folder of each, one per line. Already built engines are skipped; a changed recipe rebuilds.
#   usage: scripts/engines.sh NAME...      names: the recipes in scripts/engines/NAME.sh
#   cache: ${SLIPWAY_ENGINES:-$HOME/.cache/slipway/engines}/NAME
# A recipe is called with one argument, an empty folder to build into; it is moved into place only when the
# recipe succeeds, so an interrupted build never leaves a half-built engine behind.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${SLIPWAY_ENGINES:-$HOME/.cache/slipway/engines}"
for name in "$@"; do
  recipe="$here/engines/$name.sh"
  if [[ ! -f $recipe ]]; then
    echo "engines.sh: no recipe for engine '$name' (known: $(cd "$here/engines" && ls -- *.sh | sed 's/\.sh$//' | tr '\n' ' '))" >&2
    exit 2
  fi
  stamp="$(sha256sum "$recipe" | cut -c1-16)"
  dir="$cache/$name"
  if [[ "$(cat "$dir/.built" 2>/dev/null)" != "$stamp" ]]; then
    tmp="$cache/.$name.tmp.$$"
    rm -rf "$tmp" && mkdir -p "$tmp"
    echo "engines.sh: building $name into $dir (once; later runs reuse it)" >&2
    start=$SECONDS
    "$recipe" "$tmp" >&2
    echo "$stamp" >"$tmp/.built"
    rm -rf "$dir" && mv "$tmp" "$dir"
    echo "engines.sh: $name built in $((SECONDS - start)) s" >&2
  fi
  echo "$dir"
done
