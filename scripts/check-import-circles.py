#!/usr/bin/env python3
"""Fails when the files under src/ import each other in a circle (ARCHITECTURE.md, "Layers").

    scripts/check-import-circles.py [REPO]      (run by .ci/run)

A file depends on another when, outside its `#[cfg(test)] mod` blocks and comments, it names a
path into it: `crate::a::b`, `super::x`, `self::y`, or a child module by its bare name
(`use windows::absorb_runs` in `collection/mod.rs`). A file using its own ancestor modules'
items (`super::Job` in `collection/windows.rs`) is not counted: a module with child files is
one unit. Every strongly connected group of two or more files is printed, and the exit code
is 1 when there is any.
"""
import re
import sys
from pathlib import Path

src = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent) / "src"


def module_of(path):
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


modules = {module_of(p): p for p in sorted(src.rglob("*.rs"))}


def without_tests_and_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    kept, position = [], 0
    for block in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if block.start() < position:
            continue
        kept.append(text[position : block.start()])
        depth, end = 1, block.end()
        while depth and end < len(text):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        position = end
    kept.append(text[position:])
    return "".join(kept)


def absolute(module, path):
    """`path` (`a::b::c` as written in `module`) from the crate root, or None when external."""
    segments = path.split("::")
    if segments[0] == "crate":
        return segments[1:]
    if segments[0] == "super":
        base = list(module)
        while segments and segments[0] == "super":
            base, segments = base[:-1], segments[1:]
        return base + segments
    if segments[0] == "self":
        return list(module) + segments[1:]
    if tuple(list(module) + segments[:1]) in modules:
        return list(module) + segments
    return None


def owning_module(segments):
    for n in range(len(segments), 0, -1):
        if tuple(segments[:n]) in modules:
            return tuple(segments[:n])
    return None


edges = {}
for module, path in modules.items():
    text = without_tests_and_comments(path.read_text(encoding="utf-8"))
    targets = set()
    for use in re.finditer(r"(?<![:\w])(\w+(?:::\w+)+)(?:::\{([^;]*?)\})?", text):
        paths = [use.group(1)]
        for item in (use.group(2) or "").split(","):
            item = item.strip().split(" as ")[0].strip()
            if re.fullmatch(r"[\w:]+", item):
                paths.append(f"{use.group(1)}::{item}")
        for written in paths:
            segments = absolute(module, written)
            target = owning_module(segments) if segments else None
            if target is not None and module[: len(target)] != target:
                targets.add(target)
    edges[module] = targets

# Tarjan's strongly connected components.
index, low, stack, on_stack, circles = {}, {}, [], set(), []
sys.setrecursionlimit(10_000)


def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on_stack:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        group = []
        while True:
            w = stack.pop()
            on_stack.discard(w)
            group.append(w)
            if w == v:
                break
        if len(group) > 1:
            circles.append(sorted(group))


for module in modules:
    if module not in index:
        visit(module)
for group in circles:
    print("import circle: " + " <-> ".join(str(modules[m].relative_to(src)) for m in group))
print(f"check-import-circles: {len(modules)} files, {len(circles)} circle(s)")
sys.exit(1 if circles else 0)
