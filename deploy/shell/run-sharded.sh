#!/usr/bin/env bash
# Sharded run on one machine: N shard processes in parallel, then the merge.
#
#   deploy/shell/run-sharded.sh N CONFIG OUTPUT_DIR [extra flags...]
#
# Shard i runs `embed-collections --config CONFIG --output OUTPUT_DIR --shard i/N --resume
# [extra flags]`, writes OUTPUT_DIR/shard-i-of-N/ and logs to OUTPUT_DIR/shard-i-of-N.log. When
# every shard exited 0, `embed-collections merge` writes OUTPUT_DIR/merged/ (its log on the
# terminal); the extra flags (e.g. --no-rerank) go to the shards and the merge alike. If a shard
# fails, the script names it, exits non-zero and does not merge. Shards always run with
# --resume, so running the same command again continues the unfinished shards (finished ones
# return at once); delete OUTPUT_DIR/shard-*-of-N to start over.
#
# Environment:
#   EMBED_COLLECTIONS_BIN  the binary (default: embed-collections on PATH); not passed on, as
#                          the tool rejects EMBED_COLLECTIONS_* variables it does not know
#   RAYON_NUM_THREADS      threads per shard; default: the shard's share of the CPUs
#   RUN_SHARDED_PIN=0      do not pin the shards to disjoint CPU sets (see below)
#   RUN_SHARDED_GPUS       e.g. "0 1 2 3": shard i sees only GPU i mod 4 (CUDA_VISIBLE_DEVICES);
#                          by default every shard uses every GPU it can see
#   RUN_SHARDED_PARALLEL=0 background jobs even when GNU parallel is installed
#
# Uses GNU parallel when it is installed, else background jobs; either way all shards start at
# once. Ctrl-C or SIGTERM stops every shard at a batch boundary (one SIGTERM each; a second
# Ctrl-C makes them quit at once) and exits 130; run again to resume.
set -euo pipefail

usage() {
    echo "usage: $0 N CONFIG OUTPUT_DIR [extra flags for the shards and the merge...]" >&2
    exit 2
}
(($# >= 3)) || usage
count="$1"
config="$2"
output="$3"
shift 3
[[ "$count" =~ ^[1-9][0-9]*$ ]] || { echo "run-sharded: N must be a positive integer, not '$count'" >&2; exit 2; }
[[ -f "$config" ]] || { echo "run-sharded: no config file $config" >&2; exit 2; }

bin="${EMBED_COLLECTIONS_BIN:-embed-collections}"
unset EMBED_COLLECTIONS_BIN
if ! command -v "$bin" > /dev/null; then
    echo "run-sharded: $bin not found (set EMBED_COLLECTIONS_BIN)" >&2
    exit 2
fi
mkdir -p "$output"

# --- CPUs ------------------------------------------------------------------------------------
# Shards on one machine compete for its cores. The tool has no thread-count flag yet: its CPU
# encoder starts one worker per CPU the process may run on (its affinity mask), and rayon's pool
# (retrieval, single-worker passes) sizes itself the same way. So N unpinned shards would each
# start a worker per core, N times too many. Each shard therefore gets a disjoint share of the
# allowed CPUs (taskset), which sizes the encoder's workers, and RAYON_NUM_THREADS = its share
# (at least max(1, nproc / N)) unless the caller set it. With more shards than CPUs, or without
# taskset, the shards are not pinned and get RAYON_NUM_THREADS = 1.
allowed_cpus() {
    local list part
    list="$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status 2> /dev/null || true)"
    if [[ -z "$list" ]]; then
        return 0
    fi
    local -a parts
    IFS=, read -r -a parts <<< "$list"
    for part in "${parts[@]}"; do
        if [[ "$part" == *-* ]]; then
            seq "${part%-*}" "${part#*-}"
        else
            echo "$part"
        fi
    done
}
mapfile -t cpus < <(allowed_cpus)
ncpu="${#cpus[@]}"
if ((ncpu == 0)); then
    ncpu="$(getconf _NPROCESSORS_ONLN 2> /dev/null || echo 1)"
fi
pin=1
if [[ "${RUN_SHARDED_PIN:-1}" == 0 ]] || ! command -v taskset > /dev/null \
    || ((${#cpus[@]} == 0 || count > ncpu)); then
    pin=0
fi
read -r -a gpus <<< "${RUN_SHARDED_GPUS:-}"

# shard_env[i] / shard_cpus[i]: what shard i gets.
shard_env=()
shard_cpus=()
start=0
for ((i = 0; i < count; i++)); do
    share=$((ncpu / count + (i < ncpu % count ? 1 : 0)))
    ((share >= 1)) || share=1
    vars="RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-$share}"
    if ((${#gpus[@]} > 0)); then
        vars+=" CUDA_VISIBLE_DEVICES=${gpus[i % ${#gpus[@]}]}"
    fi
    shard_env[i]="$vars"
    if ((pin)); then
        shard_cpus[i]="$(IFS=,; echo "${cpus[*]:start:share}")"
        start=$((start + share))
    else
        shard_cpus[i]=""
    fi
done

# The command of shard i, as words.
shard_command() {
    local i="$1"
    shift
    local -a words
    read -r -a words <<< "${shard_env[i]}"
    words=(env "${words[@]}")
    if [[ -n "${shard_cpus[i]}" ]]; then
        words+=(taskset -c "${shard_cpus[i]}")
    fi
    words+=("$bin" --config "$config" --output "$output" --shard "$i/$count" --resume "$@")
    printf '%s\0' "${words[@]}"
}
log_of() { echo "$output/shard-$1-of-$count.log"; }

for ((i = 0; i < count; i++)); do
    echo "run-sharded: shard $i/$count: ${shard_env[i]}${shard_cpus[i]:+ cpus ${shard_cpus[i]}}," \
        "log $(log_of "$i")" >&2
done

# --- run the shards --------------------------------------------------------------------------
# Children run in their own process groups (set -m while starting them), so a Ctrl-C reaches
# only this script, which passes exactly one SIGTERM per signal on to them.
children=()
interrupted=0
# shellcheck disable=SC2317  # invoked by the trap below
forward() {
    interrupted=1
    local pid
    for pid in "${children[@]}"; do
        kill -TERM "$pid" 2> /dev/null || true
    done
}
trap forward INT TERM
# Waits for pid $1 to exit (a trapped signal makes `wait` return early); its status in $waited.
waited=0
wait_for() {
    while kill -0 "$1" 2> /dev/null; do
        wait "$1" || true
    done
    waited=0
    wait "$1" || waited=$?
}

status=()     # exit status per shard
if command -v parallel > /dev/null && [[ "${RUN_SHARDED_PARALLEL:-1}" != 0 ]]; then
    # One command line per shard on stdin; exec makes the tool the job itself. TERM once, then
    # up to 10 minutes for the current batch, then KILL (parallel's default repeats TERM, which
    # would make the tool quit without finishing the batch).
    joblog="$output/.run-sharded.joblog"
    rm -f "$joblog"
    commands=""
    for ((i = 0; i < count; i++)); do
        mapfile -d '' -t words < <(shard_command "$i" "$@")
        commands+="exec$(printf ' %q' "${words[@]}") > $(printf '%q' "$(log_of "$i")") 2>&1"$'\n'
    done
    set -m
    PARALLEL_SHELL=bash parallel --will-cite --jobs "$count" --halt never --joblog "$joblog" \
        --termseq TERM,600000,KILL,25 <<< "$commands" &
    children=($!)
    set +m
    wait_for "${children[0]}"
    # Joblog: Seq (1-based input line) ... Exitval Signal Command.
    while IFS=$'\t' read -r seq _ _ _ _ _ exitval signal _; do
        [[ "$seq" =~ ^[0-9]+$ ]] || continue
        if ((signal != 0)); then
            status[seq - 1]=$((128 + signal))
        else
            status[seq - 1]="$exitval"
        fi
    done < "$joblog"
    rm -f "$joblog"
else
    for ((i = 0; i < count; i++)); do
        mapfile -d '' -t words < <(shard_command "$i" "$@")
        set -m
        "${words[@]}" > "$(log_of "$i")" 2>&1 &
        children[i]=$!
        set +m
    done
    for ((i = 0; i < count; i++)); do
        wait_for "${children[i]}"
        status[i]="$waited"
    done
fi
trap - INT TERM

meaning() {
    case "$1" in
        1) echo "failure" ;; 2) echo "configuration error" ;; 3) echo "input error" ;;
        4) echo "partial: some chunks failed" ;; 130) echo "interrupted" ;; *) echo "exit $1" ;;
    esac
}
failed=()
for ((i = 0; i < count; i++)); do
    rc="${status[i]:-}"
    if [[ "$rc" != 0 ]]; then
        failed+=("$i")
        if [[ -z "$rc" ]]; then
            echo "run-sharded: shard $i/$count $( ((interrupted)) && echo "was interrupted" \
                || echo "did not report an exit status"); log: $(log_of "$i")" >&2
        else
            echo "run-sharded: shard $i/$count failed with exit $rc ($(meaning "$rc")); log: $(log_of "$i")" >&2
        fi
        if [[ -f "$(log_of "$i")" ]]; then
            tail -n 5 "$(log_of "$i")" | sed 's/^/    /' >&2
        fi
    fi
done
if ((interrupted)); then
    echo "run-sharded: interrupted; run the same command again to resume" >&2
    exit 130
fi
if ((${#failed[@]} > 0)); then
    echo "run-sharded: ${#failed[@]} of $count shards failed (${failed[*]}); not merging." \
        "Fix the cause and run the same command again: finished shards are kept, the others resume." >&2
    first="${status[${failed[0]}]:-1}"
    exit "$((first == 0 ? 1 : first))"
fi

# --- merge -----------------------------------------------------------------------------------
# The N shard directories by name, so a leftover set of another size cannot get in the way.
shard_dirs=()
for ((i = 0; i < count; i++)); do
    shard_dirs+=("$output/shard-$i-of-$count")
done
echo "run-sharded: all $count shards done; merging into $output/merged" >&2
exec "$bin" merge --config "$config" --output "$output/merged" "$@" "${shard_dirs[@]}"
