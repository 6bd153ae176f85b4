#!/usr/bin/env bash
# CI: the dependency audit (deny.toml) with cargo deny, installed from crates.io into the cargo
# bin directory once.
#  * licences (against deny.toml's allow-list), bans (wildcards; duplicate versions are
#    reported) and sources (crates.io only): enforced everywhere, they need no network beyond
#    the registry;
#  * advisories (RustSec: vulnerabilities, unsound, unmaintained, yanked): need the advisory
#    database from github.com/rustsec/advisory-db. Enforced where it can be fetched (the GitHub
#    workflows: there a failed fetch fails the check) or a copy is cached; elsewhere reported
#    as not checked, with the reason.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version=0.20.2
deny="${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deny"
if [[ "$("$deny" --version 2>/dev/null)" != "cargo-deny $version" ]]; then
  echo "check-dependencies: installing cargo-deny $version from crates.io (a few minutes, once)" >&2
  cargo install --locked --quiet cargo-deny --version "$version" >&2
fi
cargo deny --version

# The licence check must be able to fail: with only Apache-2.0 allowed it must refuse the tree
# (most crates are also offered under MIT alone).
strict="$(mktemp)"
trap 'rm -f "$strict"' EXIT
printf '[licenses]\nallow = ["Apache-2.0"]\nconfidence-threshold = 0.93\n' > "$strict"
strict_out="$(cargo deny --locked --config "$strict" check licenses 2>&1 || true)"
if [[ "$strict_out" != *"error[rejected]"* ]]; then
  echo "check-dependencies: the licence check rejected nothing with only Apache-2.0 allowed" >&2; exit 1
fi

echo "== licences, bans, sources"
# Duplicate versions are listed without their inclusion graphs (`cargo tree -d` shows them).
cargo deny --locked check --hide-inclusion-graph licenses bans sources

echo "== advisories"
dbs="${CARGO_HOME:-$HOME/.cargo}/advisory-dbs"
if timeout 120 cargo deny --locked fetch db >/dev/null 2>&1; then
  cargo deny --offline --locked check advisories
elif [[ -n "${GITHUB_ACTIONS:-}" ]]; then
  echo "check-dependencies: the advisory database could not be fetched" >&2; exit 1
elif compgen -G "$dbs/advisory-db-*/crates" >/dev/null; then
  echo "advisories: the advisory database is unreachable; checking against the cached copy in $dbs"
  cargo deny --offline --locked check advisories
else
  echo "advisories: NOT CHECKED: the RustSec database (github.com/rustsec/advisory-db) is unreachable from this machine and no copy is cached; the GitHub CI workflow checks them"
fi
