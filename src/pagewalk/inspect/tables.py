"""Visit every page table once, and notice the shapes a tree should not have.

The structural view behind ``lint`` and ``stats``: starting at each root, every table frame is
read once per level it is used at (one call per table), and each pointer to a child is checked.
A pointer back to the table holding it is a recursive slot (x86 "fractal" mapping, PowerNex slot
509); a pointer to any table further up the current path is a cycle; a frame used at two levels
is reported; a child with no entry in RAM is a bad table. None of these is followed, so the visit
always ends (Intel SDM vol. 3A §4.5 fixes the depth; Arm ARM D8.2; RISC-V privileged spec).

Cost is proportional to the distinct tables, whatever the dump says: each (table, level) is read
once, each event is recorded once per (kind, table holding the entries, target) with a count of
the entries, and tables reached through several entries are counted in :attr:`Tables.refs` (a
shared subtree, reported once). A table partly outside RAM is read as the walker reads it, entry
by entry; the missing entries are zero (not present) and the table is kept in
:attr:`Tables.partial`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from pagewalk.enumerate_runs import PartialTable, TableReader, missing_runs, read_entries
from pagewalk.formats.base import Half, Level, PagingMode, Perm, U64Array


@dataclass(frozen=True)
class Event:
    """Something structural found while visiting.

    Attributes:
        kind: ``recursive``, ``cycle``, ``two-levels`` or ``outside-ram``.
        level: the level of the entry that points.
        entry_pa: the (first such) entry's physical address.
        raw: the raw entry.
        va: the first VA the entry covers.
        target: the table it points to.
        detail: a sentence.
        count: how many entries of the same table do the same.
    """

    kind: str
    level: Level
    entry_pa: int
    raw: int
    va: int
    target: int
    detail: str
    count: int = 1


@dataclass
class Visit:
    """One table: where it is, what covers it, and its entries (zero where not in RAM)."""

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
    """The visitor. Iterate :meth:`visit`; :attr:`events`, :attr:`refs` and :attr:`partial`
    fill as it goes."""

    mem: TableReader
    mode: PagingMode
    roots: Sequence[int]
    depth_of: dict[int, int] = field(default_factory=dict)
    #: entries (of distinct tables) pointing to each (table, depth), with the table's level
    refs: dict[tuple[int, int], tuple[Level, int]] = field(default_factory=dict)
    #: tables partly outside RAM, by (PA, level number)
    partial: dict[tuple[int, int], PartialTable] = field(default_factory=dict)
    _events: dict[tuple[str, int, int], Event] = field(default_factory=dict)

    @property
    def events(self) -> list[Event]:
        """The events, one per (kind, table holding the entries, target), in visit order."""
        return list(self._events.values())

    def shared(self) -> list[tuple[int, Level, int]]:
        """``(table PA, level, entries pointing to it)`` for tables reached more than once."""
        return [(pa, lv, n) for (pa, _), (lv, n) in self.refs.items() if n > 1]

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
        raws, ok = read_entries(self.mem, pa, level.entries, self.mode.entry_size)
        if ok is not None:
            if not ok.any():
                return
            self.partial.setdefault(
                (pa, level.number), PartialTable(pa, level, self.mode.entry_size, missing_runs(ok))
            )
        visit = Visit(half, depth, pa, base, raws, cap)
        yield visit
        if depth == len(half.levels) - 1:
            return
        child_level = half.levels[depth + 1]
        for i, child, raw in self._children(visit):
            va = self.mode.canonical(base + (i << level.shift))
            entry_pa = pa + i * self.mode.entry_size
            entry = self.mode.decode_cached(raw, level)
            if entry.fault is not None:  # a malformed entry: lint names it, no walk follows it
                continue
            if self._check_child(level, child_level, entry_pa, raw, va, pa, child, depth, path):
                continue
            self.depth_of.setdefault(child, depth + 1)
            lv, n = self.refs.get((child, depth + 1), (child_level, 0))
            self.refs[(child, depth + 1)] = (lv, n + 1)
            child_cap = cap & (entry.perm | Perm.GLOBAL)
            yield from self._table(
                half, child, depth + 1, base + (i << level.shift), child_cap, [*path, pa], seen
            )

    def _children(self, visit: Visit) -> Iterator[tuple[int, int, int]]:
        raws = visit.raws
        idx = np.flatnonzero(raws & np.uint64(self.mode.present_mask))
        valid = raws[idx]
        tables = ~self.mode.np_is_leaf(valid, visit.level)
        addrs = self.mode.np_address(valid[tables], visit.level, False)
        yield from zip(idx[tables].tolist(), addrs.tolist(), valid[tables].tolist(), strict=True)

    def _in_ram(self, table: int, level: Level) -> bool:
        """Whether any entry of the table at ``table`` lies in RAM (a walk can use it)."""
        esize = self.mode.entry_size
        if self.mem.is_ram(table, esize):
            return True
        ok = read_entries(self.mem, table, level.entries, esize)[1]
        return ok is None or bool(ok.any())

    def _check_child(
        self,
        level: Level,
        child_level: Level,
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
        elif not self._in_ram(child, child_level):
            kind, detail = "outside-ram", f"{where} points to a table at {child:#x}, outside RAM"
        else:
            first = self.depth_of.get(child)
            if first is not None and first != depth + 1:
                detail = f"table frame {child:#x} is used at depth {first} and at depth {depth + 1}"
                self._event("two-levels", level, entry_pa, raw, va, table, child, detail)
            return False
        self._event(kind, level, entry_pa, raw, va, table, child, detail)
        return True

    def _event(
        self,
        kind: str,
        level: Level,
        entry_pa: int,
        raw: int,
        va: int,
        table: int,
        target: int,
        detail: str,
    ) -> None:
        """Record an event, or count one more entry for the same (kind, table, target)."""
        key = (kind, table, target)
        ev = self._events.get(key)
        if ev is None:
            self._events[key] = Event(kind, level, entry_pa, raw, va, target, detail)
            return
        n = ev.count + 1
        base = ev.detail.split(" [")[0]
        more = f" [{n} entries of the table at {table:#x} do this; the first is named]"
        self._events[key] = replace(ev, count=n, detail=base + more)
