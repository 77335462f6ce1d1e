"""Keep `# Copied from ppo_atari.NAME` blocks identical to their source (like transformers' `make fix-copies`).

    python tools/sync_copies.py           # list the marked blocks that differ from their source
    python tools/sync_copies.py --fix     # rewrite them from the source

A marker is a line `# Copied from <script>.<name>` directly above a `def`/`class <name>` (or its decorators): top level,
or a method as `<script>.<Class>.<method>`. The block is the definition's whole lines, decorators and trailing comments
on its last line (`# fmt: skip`) included. tests/test_consistency.py uses `marked_blocks` and `top_level` to fail on
any drift.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"# Copied from (\w+)\.([\w.]+)")
DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def top_level(source: str) -> dict[str, tuple[int, int, str]]:
    """Name -> (first line, last line, whole lines) of each top-level def/class and, as "Class.method", of each method
    of a top-level class (1-based; the first line is the first decorator's)."""
    lines, out = source.splitlines(keepends=True), {}

    def add(node, name):
        start = min([node.lineno] + [d.lineno for d in node.decorator_list])
        out[name] = (start, node.end_lineno, "".join(lines[start - 1 : node.end_lineno]).rstrip("\n"))

    for node in ast.parse(source).body:
        if isinstance(node, DEFS):
            add(node, node.name)
            for child in node.body if isinstance(node, ast.ClassDef) else ():
                if isinstance(child, DEFS):
                    add(child, f"{node.name}.{child.name}")
    return out


def marked_blocks(source: str) -> list[tuple[int, str, str]]:
    """(marker line, source script, name) for each copy marker; raises ValueError if a marker is misplaced."""
    lines, defs, out = source.splitlines(), top_level(source), []
    for i, line in enumerate(lines, start=1):
        m = MARKER.fullmatch(line.strip())
        if m:
            script, name = m.groups()
            if name not in defs or defs[name][0] != i + 1:
                raise ValueError(f"line {i}: marker for {name} is not directly above `def/class {name.split('.')[-1]}`")
            out.append((i, script, name))
    return out


def fix_file(path: Path, write: bool) -> list[str]:
    """Names of the marked blocks in `path` that differ from their source; rewrite them when `write`."""
    source = path.read_text()
    stale = []
    for _, script, name in reversed(marked_blocks(source)):  # bottom-up keeps earlier line numbers valid
        original = top_level((REPO / f"{script}.py").read_text()).get(name, (0, 0, None))[2]
        if original is None:
            raise ValueError(f"marker for {name}: {script}.py has no `{name}`")
        start, end, current = top_level(source)[name]
        if current != original:
            stale.append(name)
            lines = source.splitlines(keepends=True)
            source = "".join(lines[: start - 1]) + original + "\n" + "".join(lines[end:])
    if write and stale:
        path.write_text(source)
    return stale[::-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fix", action="store_true", help="rewrite stale copies from their source")
    opts = parser.parse_args()
    dirty = 0
    for path in sorted(REPO.glob("*_atari.py")):
        try:
            stale = fix_file(path, opts.fix)
        except ValueError as e:
            print(f"error: {path.name}: {e}", file=sys.stderr)
            return 2
        for name in stale:
            print(f"{path.name}: {name} {'rewritten' if opts.fix else 'differs from its source'}")
        dirty += len(stale)
    return 1 if dirty and not opts.fix else 0


if __name__ == "__main__":
    sys.exit(main())
