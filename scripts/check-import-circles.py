#!/usr/bin/env python3
"""Fails when the files under src/ import each other in a circle (ARCHITECTURE.md, "Layers").

    scripts/check-import-circles.py [REPO]      (run by .ci/run)

A file depends on another when, outside its `#[cfg(test)] mod` blocks and comments, it names a
path into it: `crate::a::b`, `super::x`, `self::y`, or a child module by its bare name
(`use windows::absorb_runs` in `collection/mod.rs`). A file using its own ancestor modules'
items (`super::Job` in `collection/windows.rs`) is not counted: a module with child files is
one unit. A path to a name a module re-exports (`crate::config::RunConfig`) counts as a path
to the file that defines it.

It also fails when a module imports across the layering ARCHITECTURE.md describes: nothing but
main.rs and lib.rs imports `pipeline` or `serve`, and `config` imports none of the modules that
read it (models, export, gpu, dispatch, ...).

Every strongly connected group of two or more files is printed. The exit code is 1 when one
of them is not within a circle listed in scripts/import-circles-known.txt (one circle per
line, its files separated by spaces): the known ones may only shrink. Remove a line when its
circle is gone.
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


def expand(tree):
    """The paths of a use tree: `a::{b::{c, d as e}, f}` -> `a::b::c`, `a::b::d`, `a::f`."""
    tree = re.sub(r"\s+", "", tree)
    depth, top = 0, None
    for i, ch in enumerate(tree):
        if ch == "{" and depth == 0:
            top = i
            break
    if top is None:
        return [tree.split("as")[0] if re.fullmatch(r"[\w:]+as\w+", tree) else tree]
    if tree.count("{") != tree.count("}") or not tree.endswith("}"):
        return []  # not a use tree (the word `use` in a string)
    prefix, inner = tree[:top].rstrip(":"), tree[top + 1 : -1]
    items, depth, current = [], 0, ""
    for ch in inner:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    items.append(current)
    paths = []
    for item in filter(None, items):
        for path in expand(item):
            paths.append(prefix if path == "self" else f"{prefix}::{path}" if prefix else path)
    return paths


USE = re.compile(r"(?<![\w:])(pub(?:\([\w:\s]+\))?\s+)?use\s+([^;]+);")
INLINE = re.compile(r"(?<![\w:])(\w+(?:::\w+)+)")

# Re-exports: a `pub use` in module M makes `M::Name` another name for what it re-exports.
reexports = {}
texts = {}
for module, path in modules.items():
    text = without_tests_and_comments(path.read_text(encoding="utf-8"))
    texts[module] = text
    for use in USE.finditer(text):
        if not use.group(1):
            continue
        for written in expand(use.group(2)):
            segments = absolute(module, written)
            if segments:
                reexports.setdefault(module, {})[segments[-1]] = segments


def owning_module(segments, seen=0):
    """The file that defines what `segments` names, following re-exports."""
    for n in range(len(segments), 0, -1):
        module = tuple(segments[:n])
        if module in modules:
            rest = segments[n:]
            target = reexports.get(module, {}).get(rest[0]) if rest else None
            if target and seen < 16 and target != segments[: len(target)]:
                return owning_module(target + rest[1:], seen + 1) or module
            return module
    return None


edges = {}
for module, text in texts.items():
    targets = set()
    written_paths = [p for use in USE.finditer(text) for p in expand(use.group(2))]
    written_paths += [m.group(1) for m in INLINE.finditer(USE.sub("", text))]
    for written in written_paths:
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
known_file = src.parent / "scripts" / "import-circles-known.txt"
known = [
    set(line.split())
    for line in (known_file.read_text(encoding="utf-8").splitlines() if known_file.exists() else [])
    if line.strip() and not line.startswith("#")
]
new = 0
for group in circles:
    names = [str(modules[m].relative_to(src)) for m in group]
    if any(set(names) <= allowed for allowed in known):
        print(f"known import circle ({len(names)} files, to be removed): " + " <-> ".join(names))
    else:
        new += 1
        print("import circle: " + " <-> ".join(names))
found = [{str(modules[m].relative_to(src)) for m in group} for group in circles]
for allowed in known:
    if not any(group <= allowed and group for group in found):
        print(f"check-import-circles: a known circle is gone; remove its line from {known_file.name}")

# Layering between top-level modules (ARCHITECTURE.md, "Layers"): the run and the server sit on
# top, and the configuration knows none of the modules that read it.
FORBIDDEN = {
    "pipeline": "only main.rs and lib.rs start a batch run",
    "serve": "only main.rs and lib.rs start the server",
}
CONFIG_KNOWS_NOT = {"models", "export", "pipeline", "serve", "gpu", "dispatch", "engine",
                    "ranking", "telemetry", "bench", "cli"}
wrong_way = 0
for a, targets in sorted(edges.items()):
    top_a = a[0] if a else ""
    for b in sorted(targets):
        top_b = b[0] if b else ""
        if top_a == top_b or not top_a:
            continue
        why = None
        if top_b in FORBIDDEN:
            why = FORBIDDEN[top_b]
        elif top_a == "config" and top_b in CONFIG_KNOWS_NOT:
            why = "config is read by the other modules and knows none of them"
        if why:
            wrong_way += 1
            print(f"layering: {modules[a].relative_to(src)} imports {modules[b].relative_to(src)} ({why})")
print(f"check-import-circles: {len(modules)} files, {len(circles)} circle(s), {new} not known, "
      f"{wrong_way} wrong-way import(s)")
sys.exit(1 if new or wrong_way else 0)
