#!/usr/bin/env bash
# The release assets of one wheel, into OUT_DIR: the wheel itself and its binary alone as
# embed-collections-<version>-x86_64-linux[-cuda].tar.gz (with LICENSE, README.md and
# CHANGELOG.md), for users without pip. CI runs it on the CPU wheel check-wheel.sh built; the
# release workflow on both wheels.
#
#   scripts/release/assets.sh OUT_DIR WHEEL
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 OUT_DIR WHEEL" >&2; exit 2; }
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$1"; wheel="$2"
[[ -f "$wheel" ]] || { echo "assets: no wheel at $wheel" >&2; exit 1; }
version="$("$repo/scripts/release/check-version.sh")"

name="$(basename "$wheel")"
case "$name" in
  "embed_collections-$version-"*) flavour="" ;;
  "embed_collections_cuda-$version-"*) flavour="-cuda" ;;
  *) echo "assets: $name is not version $version of either wheel" >&2; exit 1 ;;
esac
mkdir -p "$out"
cp "$wheel" "$out/"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
archive="embed-collections-$version-x86_64-linux$flavour"
mkdir "$work/$archive"
python3 - "$wheel" "$work/$archive/embed-collections" <<'PY'
import sys, zipfile
wheel, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist() if n.endswith(".data/scripts/embed-collections")]
    if len(names) != 1:
        sys.exit(f"assets: {wheel} holds {len(names)} embed-collections binaries")
    with zf.open(names[0]) as src, open(target, "wb") as dst:
        dst.write(src.read())
PY
chmod 755 "$work/$archive/embed-collections"
if [[ -z "$flavour" ]]; then
  # The CPU binary runs anywhere: it must say the version it is released as. (The CUDA one
  # needs the CUDA runtime from its wheel's dependencies to start.)
  line="$("$work/$archive/embed-collections" --version)"
  [[ "$line" == "embed-collections $version "* ]] || { echo "assets: the binary says '$line'" >&2; exit 1; }
fi
cp "$repo/LICENSE" "$repo/README.md" "$repo/CHANGELOG.md" "$work/$archive/"
tar -C "$work" --owner=0 --group=0 --numeric-owner -czf "$out/$archive.tar.gz" "$archive"
ls "$out"
