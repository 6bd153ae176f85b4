#!/usr/bin/env bash
# Submit the sharded embedding (a job array, one task per shard) and the merge, which Slurm
# starts only when every shard succeeded (--dependency=afterok); if a shard fails for good the
# merge is cancelled (--kill-on-invalid-dep=yes).
#
#   deploy/slurm/submit.sh CONFIG OUTPUT_DIR [extra flags...]    # flags go to shards and merge
#   SHARDS=8 deploy/slurm/submit.sh ...                           # default 3
#
# Partition, account, QoS: edit the #SBATCH lines, or set sbatch's own input variables
# (SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_QOS, ...) before calling this.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if (($# < 2)); then
    echo "usage: $0 CONFIG OUTPUT_DIR [extra flags...]" >&2
    exit 2
fi
shards="${SHARDS:-3}"
if ! [[ "$shards" =~ ^[1-9][0-9]*$ ]]; then
    echo "submit: SHARDS must be a positive integer, not '$shards'" >&2
    exit 2
fi
# Absolute paths: the jobs may start in another directory than this shell's.
config="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
mkdir -p "$2"
output="$(cd "$2" && pwd)"
shift 2
if [[ ! -f "$config" ]]; then
    echo "submit: no config file $config" >&2
    exit 2
fi

# --parsable prints "JOBID" or "JOBID;CLUSTER".
array_id="$(sbatch --parsable --array="0-$((shards - 1))" \
    "$here/embed-sharded.sbatch" "$config" "$output" "$@")"
array_id="${array_id%%;*}"
merge_id="$(sbatch --parsable --dependency="afterok:$array_id" --kill-on-invalid-dep=yes \
    "$here/embed-merge.sbatch" "$config" "$output" "$shards" "$@")"
merge_id="${merge_id%%;*}"

echo "shards: job array $array_id (tasks 0-$((shards - 1)), logs embed-shards-${array_id}_<task>.log)"
echo "merge:  job $merge_id after all shards succeed (log embed-merge-$merge_id.log)"
echo "output: $output/shard-<i>-of-$shards, then $output/merged"
echo "watch:  squeue -j $array_id,$merge_id    sacct -j $array_id,$merge_id"
