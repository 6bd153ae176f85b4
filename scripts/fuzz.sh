#!/usr/bin/env bash
# Fuzzing beyond CI: the property tests of tests/fuzz.rs (the chunk readers, the query and
# qrels readers, the config from a file, --set and the environment) with a large case count,
# round after round with fresh random seeds, until a time budget is spent.
#
#   scripts/fuzz.sh                     # 30 minutes, 20,000 cases per property per round
#   FUZZ_SECONDS=7200 PROPTEST_CASES=50000 nice scripts/fuzz.sh
#
# Each round's output goes to $FUZZ_LOG (default target/fuzz/fuzz-<date>.log) with its seed,
# wall and CPU seconds; at the end a summary line gives the rounds, the CPU minutes and the
# failures. A failing round keeps proptest's minimal failing input in the log: put it into
# tests/fuzz-corpus/<target>/ (every run replays that directory) and add a regression test.
#
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) needs a nightly toolchain (-Zsanitizer),
# and this project builds on stable (rust-toolchain.toml), so it is not run here; the
# proptest properties are the stable-toolchain fuzzer.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${FUZZ_SECONDS:-1800}
cases=${PROPTEST_CASES:-20000}
log=${FUZZ_LOG:-target/fuzz/fuzz-$(date -u +%Y%m%dT%H%M%SZ).log}
mkdir -p "$(dirname "$log")"

# Build once; the rounds run the test binary directly.
binary=$(cargo test --release --locked --test fuzz --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "fuzz":
        print(m["executable"])')
if [[ -z "$binary" ]]; then
  echo "fuzz.sh: cannot build the fuzz test binary (cargo test --release --test fuzz)" >&2
  exit 1
fi

start=$(date +%s)
rounds=0
failures=0
cpu_ticks=0
echo "fuzz.sh: $cases cases per property per round, for ${seconds}s; log: $log"
while (($(date +%s) - start < seconds)); do
  rounds=$((rounds + 1))
  seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
  round_start=$(date +%s)
  {
    echo "== round $rounds, seed $seed, $(date -u +%FT%TZ)"
  } >>"$log"
  # proptest draws its own random seed each run; PROPTEST_RNG_SEED pins it so a failing
  # round can be replayed exactly (PROPTEST_RNG_SEED=<seed> PROPTEST_CASES=<cases>).
  set +e
  /usr/bin/time -f "cpu %U %S" -a -o "$log" \
    env PROPTEST_CASES="$cases" PROPTEST_RNG_SEED="$seed" "$binary" --test-threads 1 >>"$log" 2>&1
  status=$?
  set -e
  used=$(tail -n 1 "$log" | awk '/^cpu / { printf "%d", ($2 + $3) * 100 }')
  cpu_ticks=$((cpu_ticks + ${used:-0}))
  if ((status != 0)); then
    failures=$((failures + 1))
    echo "fuzz.sh: round $rounds (seed $seed) FAILED; see $log" >&2
  fi
  echo "== round $rounds: exit $status, wall $(($(date +%s) - round_start))s" >>"$log"
done
summary="fuzz.sh: $rounds rounds, $cases cases per property each, wall $(($(date +%s) - start))s, cpu $((cpu_ticks / 100)) s ($((cpu_ticks / 6000)) min), $failures failed rounds"
echo "$summary" | tee -a "$log"
((failures == 0))
