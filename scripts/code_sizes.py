"""Module and function sizes of the Python sources, against the style guide's limits.

    python scripts/code_sizes.py                    # service, training, bench
    python scripts/code_sizes.py service/contracts  # one folder
    python scripts/code_sizes.py --list             # every module and function over the limit

A module's size is its line count; a function's is the lines from its ``def`` (decorators
included) to its last line, nested functions counted within their parent and on their own.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOTS = ("service", "training", "bench")
MODULE_LIMIT = 400  # lines
FUNCTION_LIMIT = 60  # lines


@dataclass(frozen=True)
class Size:
    """One module or function and how many lines it spans."""

    where: str
    lines: int


def modules(roots: Sequence[str]) -> list[Path]:
    """The Python files under ``roots`` (relative to the repository), sorted."""
    found: list[Path] = []
    for root in roots:
        path = REPO / root
        found += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return found


def functions(path: Path) -> Iterator[Size]:
    """Every function and method of one module with its length."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(REPO).as_posix()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            last = node.end_lineno or node.lineno
            yield Size(f"{rel}:{node.lineno} {node.name}", last - first + 1)


def measure(roots: Sequence[str]) -> tuple[list[Size], list[Size]]:
    """(modules, functions), each sorted longest first."""
    files = modules(roots)
    mods = [
        Size(p.relative_to(REPO).as_posix(), len(p.read_text(encoding="utf-8").splitlines()))
        for p in files
    ]
    funcs = [f for p in files for f in functions(p)]
    return sorted(mods, key=lambda s: -s.lines), sorted(funcs, key=lambda s: -s.lines)


def summary(kind: str, sizes: list[Size], limit: int) -> str:
    over = [s for s in sizes if s.lines > limit]
    longest = f"{sizes[0].lines} ({sizes[0].where})" if sizes else "none"
    return f"{kind}: {len(sizes)}, over {limit} lines: {len(over)}, longest {longest}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/code_sizes.py", description=__doc__)
    p.add_argument("roots", nargs="*", default=list(DEFAULT_ROOTS), help="folders or files")
    p.add_argument("--list", action="store_true", help="name everything over the limits")
    args = p.parse_args(argv)
    mods, funcs = measure(args.roots)
    print(summary("modules", mods, MODULE_LIMIT))
    print(summary("functions", funcs, FUNCTION_LIMIT))
    if args.list:
        for size in [m for m in mods if m.lines > MODULE_LIMIT]:
            print(f"  module   {size.lines:4d}  {size.where}")
        for size in [f for f in funcs if f.lines > FUNCTION_LIMIT]:
            print(f"  function {size.lines:4d}  {size.where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
