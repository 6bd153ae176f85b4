#!/usr/bin/env bash
# The one version (CHANGELOG.md): Cargo.toml sets it; pyproject.toml takes it from there
# (dynamic), and CHANGELOG.md has a section for it.
#
#   scripts/release/check-version.sh          # CI: the section may still say "Unreleased"
#   scripts/release/check-version.sh v1.2.3   # a release tag: it must equal the version, and
#                                             # the section must be dated (## [1.2.3] - 2027-01-31)
# Prints the version.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
fail() { echo "check-version: $*" >&2; exit 1; }

version="$(sed -n '/^\[package\]$/,/^\[/{s/^version = "\(.*\)"$/\1/p}' Cargo.toml)"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "Cargo.toml's [package] version is '$version', not X.Y.Z"
grep -q '^dynamic = \[.*"version".*\]$' pyproject.toml || fail "pyproject.toml must take its version from Cargo.toml (dynamic = [\"version\"])"
! sed -n '/^\[project\]$/,/^\[/p' pyproject.toml | grep -q '^version *=' || fail "pyproject.toml sets a version of its own"

heading="$(grep -m 1 "^## \[$version\] - " CHANGELOG.md || true)"
[[ -n "$heading" ]] || fail "CHANGELOG.md has no '## [$version] - …' section"
if [[ $# -gt 0 ]]; then
  tag="$1"
  [[ "$tag" == "v$version" ]] || fail "the tag is $tag but Cargo.toml says $version"
  [[ "$heading" =~ ^"## [$version] - "[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] ||
    fail "CHANGELOG.md's section for $version is not dated: '$heading'"
fi
echo "$version"
