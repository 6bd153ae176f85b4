#!/usr/bin/env bash
# Validate the deployment recipes under deploy/ (no cluster or scheduler needed):
#   1. every Kubernetes manifest against the Kubernetes API schema of K8S_VERSION, strictly
#      (an unknown or misspelt field is an error), with kubernetes-validate (pinned in
#      scripts/python-env.sh; its schemas are bundled, so it works offline once installed);
#   2. that each Indexed Job running `--shard auto/N` has completions = N (Kubernetes does not
#      tell a pod the count, so the two must be kept in step by hand);
#   3. `bash -n` on the shell and Slurm scripts, and shellcheck on them when it is installed.
#
#   scripts/check-deploy.sh                  # everything under deploy/
#   scripts/check-deploy.sh FILE.yaml...     # only these manifests (steps 1 and 2)
#   K8S_VERSION="1.30.0 1.33.0" scripts/check-deploy.sh    # several versions (default 1.30.0)
#
# Exit status: 0 when everything passes, 1 otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

read -r -a k8s_versions <<< "${K8S_VERSION:-1.30.0}"

# shellcheck source=scripts/python-env.sh
source scripts/python-env.sh || { echo "check-deploy: no Python tool environment" >&2; exit 1; }

if (($# > 0)); then
    manifests=("$@")
    scripts=()
else
    shopt -s nullglob globstar
    manifests=(deploy/kubernetes/**/*.yaml deploy/kubernetes/**/*.yml deploy/serve/**/*.yaml)
    scripts=(deploy/**/*.sh deploy/**/*.sbatch)
    shopt -u nullglob globstar
    if ((${#manifests[@]} == 0)); then
        echo "check-deploy: no manifests under deploy/kubernetes" >&2
        exit 1
    fi
fi

failed=0

for version in "${k8s_versions[@]}"; do
    echo "== kubernetes-validate --strict, Kubernetes $version: ${manifests[*]}"
    if ! "$EMBED_COLLECTIONS_PYTHON" -m kubernetes_validate --strict --quiet \
        --kubernetes-version "$version" "${manifests[@]}"; then
        failed=1
    fi
done

echo "== Indexed Jobs: --shard auto/N matches completions"
if ! "$EMBED_COLLECTIONS_PYTHON" - "${manifests[@]}" <<'PY'; then
import re
import sys

import yaml

problems = []
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d]
    for doc in documents:
        if doc.get("kind") != "Job":
            continue
        name = f"{path}: job/{doc.get('metadata', {}).get('name')}"
        spec = doc.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or {}
        if (spec.get("podFailurePolicy") or spec.get("backoffLimitPerIndex") is not None) \
                and pod.get("restartPolicy") != "Never":
            problems.append(f"{name}: podFailurePolicy/backoffLimitPerIndex need restartPolicy: Never")
        for container in pod.get("containers") or []:
            words = list(container.get("command") or []) + list(container.get("args") or [])
            for env in container.get("env") or []:
                if env.get("name") == "EMBED_COLLECTIONS_SHARD" and "value" in env:
                    words += ["--shard", str(env["value"])]
            specs = [b for a, b in zip(words, words[1:]) if a == "--shard"]
            specs += [w.split("=", 1)[1] for w in words if w.startswith("--shard=")]
            for shard in specs:
                auto = re.fullmatch(r"auto(?:/(\d+))?", shard.strip())
                if not auto:
                    continue
                if spec.get("completionMode") != "Indexed":
                    problems.append(f"{name}: --shard {shard} needs completionMode: Indexed")
                elif auto.group(1) is None:
                    problems.append(f"{name}: --shard auto gets no count on Kubernetes; "
                                    f"use auto/{spec.get('completions')}")
                elif int(auto.group(1)) != spec.get("completions"):
                    problems.append(f"{name}: --shard {shard} but completions: "
                                    f"{spec.get('completions')}")
for problem in problems:
    print(f"ERROR {problem}")
sys.exit(1 if problems else 0)
PY
    failed=1
fi

if ((${#scripts[@]} > 0)); then
    echo "== bash -n: ${scripts[*]}"
    for script in "${scripts[@]}"; do
        bash -n "$script" || failed=1
    done
    if command -v shellcheck > /dev/null; then
        echo "== shellcheck"
        shellcheck -x "${scripts[@]}" scripts/check-deploy.sh || failed=1
    else
        echo "== shellcheck: not installed, skipped"
    fi
fi

if ((failed)); then
    echo "check-deploy: FAILED" >&2
    exit 1
fi
echo "check-deploy: ok"
