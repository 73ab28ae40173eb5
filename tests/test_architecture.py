"""The shape the code must keep: no import cycles, small modules, architecture facts in one place.

Issue 13's definition of done, as tests that fail when the shape slips:

- the import graph of ``src/pagewalk`` (built by grimp, the engine of import-linter, counting
  imports under ``TYPE_CHECKING`` and inside functions) has no cycle;
- no Python module of the package or of ``scripts/`` is over about 400 lines (``fast/_walk.c``,
  one C translation unit, is the recorded exception in docs/DESIGN.md);
- outside ``formats/`` (the codecs, where architectures are defined) and the per-architecture
  register-rules modules ``mmu/x86.py``, ``mmu/arm.py`` and ``mmu/riscv.py``, nothing tests the
  mode's class or name: it reads :class:`~pagewalk.formats.base.ArchFacts` instead.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import grimp
import pytest

import pagewalk

PACKAGE = Path(pagewalk.__file__).parent
ROOT = PACKAGE.parent.parent
MAX_LINES = 420  # "about 400"
ARCH_MODULES = {"mmu/x86.py", "mmu/arm.py", "mmu/riscv.py"}
MODE_BRANCH = re.compile(r"isinstance\(.*Mode|mode\.name ==")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def import_graph() -> dict[str, set[str]]:
    """``pagewalk``'s modules and the package modules each imports directly."""
    sys.path.insert(0, str(PACKAGE.parent))
    try:
        graph = grimp.build_graph("pagewalk", cache_dir=None)
    finally:
        sys.path.remove(str(PACKAGE.parent))
    modules = set(graph.modules)
    return {m: set(graph.find_modules_directly_imported_by(m)) & modules for m in modules}


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py")) + sorted((ROOT / "scripts").rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_is_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines"


def test_no_architecture_branches_outside_formats() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("formats/") or rel in ARCH_MODULES:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if MODE_BRANCH.search(line):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
