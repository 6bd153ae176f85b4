#!/usr/bin/env bash
# SHA256SUMS over every file in ASSET_DIR (written into it), and the release notes: the
# CHANGELOG.md section of TAG's version, and how to verify a download.
#
#   scripts/release/checksums.sh ASSET_DIR TAG NOTES_FILE
set -euo pipefail
[[ $# -eq 3 ]] || { echo "usage: $0 ASSET_DIR TAG NOTES_FILE" >&2; exit 2; }
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="$1"; tag="$2"; notes="$3"
version="${tag#v}"
sums="$(cd "$dir" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | LC_ALL=C sort | xargs -r sha256sum)"
[[ -n "$sums" ]] || { echo "checksums: no assets in $dir" >&2; exit 1; }
printf '%s\n' "$sums" > "$dir/SHA256SUMS"
(cd "$dir" && sha256sum --quiet -c SHA256SUMS)
{
  awk -v heading="## [$version] - " 'index($0, heading) == 1 { on = 1; next } on && /^## \[/ { exit } on' "$repo/CHANGELOG.md"
  echo
  echo "Install: \`pip install embed-collections==$version\` (CPU) or \`pip install embed-collections-cuda==$version\` (CUDA 12)."
  echo "Verify a download: \`sha256sum -c SHA256SUMS --ignore-missing\`."
} > "$notes"
[[ -s "$notes" ]]
cat "$dir/SHA256SUMS"
