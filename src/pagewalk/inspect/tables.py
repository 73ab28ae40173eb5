"""Visit every page table once, and notice the shapes a tree should not have.

The structural view behind ``lint`` and ``stats``: starting at each root, every table frame is
read once per level it is used at (one call per table), and each pointer to a child is checked.
A pointer back to the table holding it is a recursive slot (x86 "fractal" mapping, PowerNex slot
509); a pointer to any table further up the current path is a cycle; a frame used at two levels
is reported; a child outside RAM is a bad table. None of these is followed, so the visit always
ends (Intel SDM vol. 3A §4.5 fixes the depth; Arm ARM D8.2; RISC-V privileged spec).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from pagewalk.formats.base import Half, Level, PagingMode, Perm, U64Array
from pagewalk.inspect.mappings import TableReader


@dataclass(frozen=True)
class Event:
    """Something structural found while visiting.

    Attributes:
        kind: ``recursive``, ``cycle``, ``two-levels`` or ``outside-ram``.
        level: the level of the entry that points.
        entry_pa: the entry's physical address.
        raw: the raw entry.
        va: the first VA the entry covers.
        target: the table it points to.
        detail: a sentence.
    """

    kind: str
    level: Level
    entry_pa: int
    raw: int
    va: int
    target: int
    detail: str


@dataclass
class Visit:
    """One table: where it is, what covers it, and its entries."""

    half: Half
    depth: int
    pa: int
    base: int
    raws: U64Array
    cap: Perm

    @property
    def level(self) -> Level:
        """The level of this table."""
        return self.half.levels[self.depth]


@dataclass
class Tables:
    """The visitor. Iterate :meth:`visit`; :attr:`events` fills as it goes."""

    mem: TableReader
    mode: PagingMode
    roots: Sequence[int]
    events: list[Event] = field(default_factory=list)
    depth_of: dict[int, int] = field(default_factory=dict)

    def visit(self) -> Iterator[Visit]:
        """Every distinct (table, level) reachable from the roots, each read once."""
        seen: set[tuple[int, int]] = set()
        for half in self.mode.halves:
            root = self.roots[half.root]
            if self.mode.root_fault(root, half) is not None:
                continue
            top = half.levels[0]
            base = half.va_start & ~((1 << (top.shift + top.bits)) - 1)
            yield from self._table(half, root, 0, base, Perm(0xF), [], seen)

    def _table(
        self,
        half: Half,
        pa: int,
        depth: int,
        base: int,
        cap: Perm,
        path: list[int],
        seen: set[tuple[int, int]],
    ) -> Iterator[Visit]:
        key = (pa, depth)
        if key in seen:
            return
        seen.add(key)
        level = half.levels[depth]
        size = level.entries * self.mode.entry_size
        if not self.mem.is_ram(pa, size):
            return
        raws = self.mem.read_table(pa, level.entries, self.mode.entry_size)
        visit = Visit(half, depth, pa, base, raws, cap)
        yield visit
        if depth == len(half.levels) - 1:
            return
        for i, child, raw in self._children(visit):
            va = self.mode.canonical(base + (i << level.shift))
            entry_pa = pa + i * self.mode.entry_size
            reason = self._check_child(level, entry_pa, raw, va, pa, child, depth, path)
            if reason:
                continue
            entry = self.mode.decode(raw, level)
            if entry.fault is not None:
                continue
            self.depth_of.setdefault(child, depth + 1)
            child_cap = cap & (entry.perm | Perm.GLOBAL)
            yield from self._table(
                half, child, depth + 1, base + (i << level.shift), child_cap, [*path, pa], seen
            )

    def _children(self, visit: Visit) -> Iterator[tuple[int, int, int]]:
        raws = visit.raws
        idx = np.flatnonzero(raws & np.uint64(1))
        valid = raws[idx]
        tables = ~self.mode.np_is_leaf(valid, visit.level)
        addrs = self.mode.np_address(valid[tables], visit.level, False)
        yield from zip(idx[tables].tolist(), addrs.tolist(), valid[tables].tolist(), strict=True)

    def _check_child(
        self,
        level: Level,
        entry_pa: int,
        raw: int,
        va: int,
        table: int,
        child: int,
        depth: int,
        path: list[int],
    ) -> bool:
        """Record an event for a pointer that must not be followed; True if so."""
        where = f"{level.name} entry at PA {entry_pa:#x}"
        if child == table:
            kind, detail = "recursive", f"{where} points to its own table (a recursive slot)"
        elif child in path:
            up = len(path) - path.index(child)
            kind, detail = "cycle", f"{where} points back to a table {up} level(s) up (a cycle)"
        elif not self.mem.is_ram(child, 1):
            kind, detail = "outside-ram", f"{where} points to a table at {child:#x}, outside RAM"
        else:
            first = self.depth_of.get(child)
            if first is not None and first != depth + 1:
                self.events.append(
                    Event(
                        "two-levels",
                        level,
                        entry_pa,
                        raw,
                        va,
                        child,
                        f"table frame {child:#x} is used at depth {first} and at depth {depth + 1}",
                    )
                )
            return False
        self.events.append(Event(kind, level, entry_pa, raw, va, child, detail))
        return True
