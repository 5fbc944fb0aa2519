#!/usr/bin/env python3
"""Fails when the top-level modules of a crate's src/ import each other in a cycle.

Reads every `crate::` path (including `use crate::{a, b::c}` groups) in each module's files,
builds the graph of top-level modules (`src/foo.rs` and `src/foo/**` are module `foo`), and
prints every strongly connected component of more than one module. `lib.rs`, `main.rs` and
the modules named with --top (the composition root: it may import everything) are left out.

    scripts/check-module-cycles.py agent/src --top topology --top provision
"""

import argparse
import re
import sys
from pathlib import Path

PATH = re.compile(r"\bcrate::(\{[^;]*?\}|[a-z_][a-z0-9_]*)", re.S)


def module_of(src: Path, file: Path) -> str:
    first = file.relative_to(src).parts[0]
    return first[:-3] if first.endswith(".rs") else first


def targets(text: str):
    for match in PATH.finditer(text):
        item = match.group(1)
        if item.startswith("{"):
            # `crate::{a, b::c, d::{e, f}}`: the first segment of each top-level entry.
            depth, entry = 0, ""
            for ch in item[1:-1] + ",":
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                if ch == "," and depth == 0:
                    name = entry.strip().split("::")[0].strip()
                    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                        yield name
                    entry = ""
                else:
                    entry += ch
        else:
            yield item


def graph(src: Path, skip: set[str]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for file in sorted(src.rglob("*.rs")):
        module = module_of(src, file)
        if module in skip:
            continue
        text = re.sub(r"//[^\n]*", "", file.read_text(encoding="utf-8"))
        deps = edges.setdefault(module, set())
        for target in targets(text):
            if target != module and target not in skip and target not in ("self", "super"):
                deps.add(target)
    modules = set(edges)
    return {m: {d for d in deps if d in modules} for m, deps in edges.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one member."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("--top", action="append", default=[], help="composition roots")
    args = parser.parse_args()
    skip = {"lib", "main", *args.top}
    edges = graph(args.src, skip)
    found = cycles(edges)
    for component in found:
        inner = {m: sorted(edges[m] & set(component)) for m in component}
        print(f"module cycle in {args.src}: " + ", ".join(f"{m} -> {inner[m]}" for m in component))
    if found:
        return 1
    print(f"{args.src}: {len(edges)} top-level modules, no import cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
