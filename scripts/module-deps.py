#!/usr/bin/env python3
"""Prints which top-level module of the library uses which (from `crate::`
paths in its source, tests excluded) and fails if any import cycle exists.
Run from the repository root: python3 scripts/module-deps.py"""
import os
import re
import sys

ROOT = "shared/src"
LEAVES_OK = {"main"}


def module_of(path):
    rel = os.path.relpath(path, ROOT)
    first = rel.split(os.sep)[0]
    return first[:-3] if first.endswith(".rs") else first


def strip_tests(text):
    # Drop `#[cfg(test)] mod ... { ... }` blocks: tests may use anything.
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def main():
    mods = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs") or f in ("lib.rs",) or f == "tests.rs":
                continue
            path = os.path.join(dirpath, f)
            mod = module_of(path)
            if mod in LEAVES_OK:
                continue
            # Comments (doc links included) are not imports.
            text = re.sub(r"//[^\n]*", "", strip_tests(open(path).read()))
            used = set(re.findall(r"crate::(\w+)", text))
            # `use crate::{a, b::c}` groups.
            for group in re.findall(r"use crate::\{([^}]*)\}", text, re.S):
                used |= set(re.findall(r"(?:^|,)\s*(\w+)", group))
            used = {u for u in used if os.path.exists(os.path.join(ROOT, u + ".rs")) or os.path.isdir(os.path.join(ROOT, u))}
            if "ApiError" in text and "crate::ApiError" in text:
                used.add("error")
            if "crate::AppState" in text or "AppState," in text and "use crate::{" in text:
                used.add("state")
            mods.setdefault(mod, set()).update(used - {mod})
    for m in sorted(mods):
        print(f"{m:12} {', '.join(sorted(mods[m])) or '-'}")
    # Cycles: strongly connected components with more than one module.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in mods.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(mods):
        if v not in index:
            visit(v)
    if sccs:
        print("import cycles:", "; ".join(" <-> ".join(c) for c in sccs))
        return 1
    print("no import cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
