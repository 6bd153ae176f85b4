#!/usr/bin/env python3
"""Peak-RSS benchmark: does the process's memory grow with the corpus?

Builds one input root per size (a single collection `bench` with `chunks.jsonl` of short
passages, 30-80 words of consecutive sentences cut from a BEIR corpus.jsonl and cycled with
distinct ids `<doc>-<n>-<copy>` until the size is reached; deterministic), runs

    <binary> --input ROOT --output OUT --no-rerank --device cpu -q [--window-chunks N]

for each size (dense + sparse, ranking over probe queries since there is no queries file),
and reports the child's peak RSS, wall seconds, and what the run's manifest.json says per stage
(peak_rss_bytes, tokens_per_s). The peak is the largest of os.wait4's ru_maxrss, a 20 ms
sampler of /proc/PID/status (VmHWM, VmRSS) and the stages' peaks: the binary resets its
high-water mark before each stage, after which ru_maxrss alone covers only the last stage.
The last line compares the largest size with the smallest against the goal (<= 1.25x).

Standard library only. Example:

    python3 scripts/bench-memory.py --sizes 2000,20000 --json /tmp/bench-memory.json
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CORPUS = os.path.join(REPO, "examples", "collections", "scifact-mini", "corpus.jsonl")
DEFAULT_BINARY = os.path.join(REPO, "target", "release", "embed-collections")
GOAL_RATIO = 1.25
MIN_WORDS, MAX_WORDS = 30, 80
# A sentence longer than this is cut into pieces of at most this many words, so that a window
# under MIN_WORDS plus the next piece never exceeds MAX_WORDS.
MAX_PIECE = MAX_WORDS - MIN_WORDS
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MIB = 1024.0 * 1024.0


def sentence_pieces(text):
    """Sentences of `text` as word lists, long ones cut into pieces of <= MAX_PIECE words."""
    for sentence in SENTENCE_END.split(text.strip()):
        words = sentence.split()
        for start in range(0, len(words), MAX_PIECE):
            piece = words[start:start + MAX_PIECE]
            if piece:
                yield piece


def passage_windows(text):
    """Consecutive-sentence windows of MIN_WORDS..MAX_WORDS words (a short tail is dropped)."""
    windows, current = [], []
    for piece in sentence_pieces(text):
        if len(current) >= MIN_WORDS and len(current) + len(piece) > MAX_WORDS:
            windows.append(" ".join(current))
            current = []
        current.extend(piece)
    if len(current) >= MIN_WORDS:
        windows.append(" ".join(current))
    return windows


def load_windows(corpus):
    """[(doc_id, n, text)] in corpus order."""
    out = []
    with open(corpus, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                sys.exit(f"bench-memory: {corpus}:{line_no}: {err}")
            doc = str(record.get("_id", record.get("id", line_no)))
            for n, window in enumerate(passage_windows(record.get("text") or "")):
                out.append((doc, n, window))
    if not out:
        sys.exit(f"bench-memory: no {MIN_WORDS}-{MAX_WORDS}-word windows in {corpus}")
    return out


def write_collection(root, windows, size):
    """root/bench/chunks.jsonl with `size` chunks; returns the mean words per chunk."""
    collection = os.path.join(root, "bench")
    os.makedirs(collection, exist_ok=True)
    words = 0
    with open(os.path.join(collection, "chunks.jsonl"), "w", encoding="utf-8") as handle:
        for i in range(size):
            copy, index = divmod(i, len(windows))
            doc, n, text = windows[index]
            words += len(text.split())
            handle.write(json.dumps({"id": f"{doc}-{n}-{copy}", "text": text}) + "\n")
    return words / size if size else 0.0


def supports_window_chunks(binary):
    try:
        help_text = subprocess.run([binary, "--help"], capture_output=True, text=True,
                                   timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        sys.exit(f"bench-memory: cannot run {binary} --help: {err}")
    return "--window-chunks" in (help_text.stdout + help_text.stderr)


class RssSampler(threading.Thread):
    """Polls /proc/PID/status for VmHWM and VmRSS (KiB) and keeps the largest seen.

    Needed because the binary resets its high-water mark before each stage (writes 5 to
    /proc/self/clear_refs), which also resets what wait4's ru_maxrss reports at exit: that
    figure alone is only the peak since the last reset."""

    def __init__(self, pid, interval=0.02):
        super().__init__(daemon=True)
        self.path = f"/proc/{pid}/status"
        self.interval = interval
        self.peak_kib = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                with open(self.path, encoding="ascii", errors="replace") as handle:
                    for line in handle:
                        if line.startswith(("VmHWM:", "VmRSS:")):
                            self.peak_kib = max(self.peak_kib, int(line.split()[1]))
            except (OSError, ValueError, IndexError):
                pass
            self.stop.wait(self.interval)


def run_one(binary, root, out, window_chunks, log_path):
    """Runs the binary; returns (exit code, wait4 ru_maxrss bytes, sampled peak bytes, wall s)."""
    cmd = [binary, "--input", root, "--output", out, "--no-rerank", "--device", "cpu", "-q"]
    if window_chunks is not None:
        cmd += ["--window-chunks", str(window_chunks)]
    print("bench-memory: $ " + " ".join(cmd), file=sys.stderr, flush=True)
    with open(log_path, "wb") as log:
        started = time.monotonic()
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        sampler = RssSampler(child.pid)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - started
        sampler.stop.set()
        sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen quiet
    # ru_maxrss is KiB on Linux.
    return child.returncode, usage.ru_maxrss * 1024, sampler.peak_kib * 1024, wall


def stage_figures(manifest_path):
    """{stage: {peak_rss_bytes, tokens_per_s, items, latency_s}} from the first collection."""
    try:
        with open(manifest_path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, json.JSONDecodeError):
        return {}
    collections = manifest.get("collections") or []
    if not collections:
        return {}
    figures = {}
    for stage, report in (collections[0].get("stages") or {}).items():
        runs = report.get("runs") or []
        if not runs:
            continue
        peaks = [r["peak_rss_bytes"] for r in runs if r.get("peak_rss_bytes") is not None]
        figures[stage] = {
            "status": report.get("status"),
            "peak_rss_bytes": max(peaks) if peaks else None,
            "tokens": sum(r.get("tokens", 0) for r in runs),
            "tokens_per_s": runs[0].get("tokens_per_s"),
            "items": sum(r.get("items", 0) for r in runs),
            "latency_s": sum(r.get("latency_s", 0.0) for r in runs),
        }
    return figures


def tail(path, lines=40):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,20000",
                        help="comma-separated chunk counts (default 2000,20000)")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS,
                        help="BEIR corpus.jsonl to cut passages from (default: bundled scifact-mini)")
    parser.add_argument("--binary", default=DEFAULT_BINARY)
    parser.add_argument("--window-chunks", type=int, default=None,
                        help="passed on as --window-chunks when the binary supports it")
    parser.add_argument("--keep", metavar="DIR",
                        help="build inputs and outputs under DIR and keep them")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = parser.parse_args()

    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        sys.exit(f"bench-memory: bad --sizes {args.sizes!r}")
    if not sizes or min(sizes) <= 0:
        sys.exit("bench-memory: --sizes needs positive chunk counts")
    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        sys.exit(f"bench-memory: no executable at {binary} (cargo build --release)")

    windowed = supports_window_chunks(binary)
    window_chunks = args.window_chunks if windowed else None
    if args.window_chunks is not None and not windowed:
        print("bench-memory: the binary has no --window-chunks; running without it",
              file=sys.stderr)

    windows = load_windows(args.corpus)
    if args.keep:
        work = os.path.abspath(args.keep)
        os.makedirs(work, exist_ok=True)
    else:
        work = tempfile.mkdtemp(prefix="bench-memory-")

    results = []
    try:
        for size in sizes:
            root = os.path.join(work, f"input-{size}")
            out = os.path.join(work, f"out-{size}")
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
            mean_words = write_collection(root, windows, size)
            log_path = os.path.join(work, f"run-{size}.log")
            code, wait4_peak, sampled_peak, wall = run_one(binary, root, out, window_chunks,
                                                           log_path)
            if code != 0:
                print(f"bench-memory: chunks={size}: exit {code}; log tail:\n{tail(log_path)}",
                      file=sys.stderr)
                sys.exit(1)
            stages = stage_figures(os.path.join(out, "manifest.json"))
            stage_peaks = [f["peak_rss_bytes"] for f in stages.values()
                           if f.get("peak_rss_bytes") is not None]
            # The process peak: the largest of what the kernel, the sampler and the stages saw.
            peak = max([wait4_peak, sampled_peak] + stage_peaks)
            result = {
                "chunks": size,
                "mean_words": round(mean_words, 1),
                "peak_rss_bytes": peak,
                "wait4_maxrss_bytes": wait4_peak,
                "sampled_peak_bytes": sampled_peak,
                "wall_s": round(wall, 2),
                "window_chunks": window_chunks,
                "stages": stages,
            }
            results.append(result)
            fields = [f"chunks={size}", f"peak_rss_mib={peak / MIB:.1f}", f"wall_s={wall:.1f}",
                      f"wait4_maxrss_mib={wait4_peak / MIB:.1f}",
                      f"sampled_mib={sampled_peak / MIB:.1f}"]
            for stage, fig in stages.items():
                if fig.get("tokens_per_s"):
                    fields.append(f"{stage}_tokens_per_s={fig['tokens_per_s']:.0f}")
                if fig.get("peak_rss_bytes") is not None:
                    fields.append(f"{stage}_peak_rss_mib={fig['peak_rss_bytes'] / MIB:.1f}")
            if window_chunks is not None:
                fields.append(f"window_chunks={window_chunks}")
            print(" ".join(fields), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    summary = {"binary": binary, "corpus": os.path.abspath(args.corpus),
               "windowed_binary": windowed, "results": results}
    if len(results) >= 2:
        small, large = results[0], results[-1]
        ratio = large["peak_rss_bytes"] / small["peak_rss_bytes"]
        summary["ratio"] = ratio
        summary["goal"] = GOAL_RATIO
        summary["goal_met"] = ratio <= GOAL_RATIO
        print(f"ratio {large['chunks']}/{small['chunks']} = {ratio:.2f} (goal <= {GOAL_RATIO})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2)
            handle.write("\n")


if __name__ == "__main__":
    main()
