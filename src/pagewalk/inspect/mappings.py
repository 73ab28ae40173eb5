"""Enumerate every mapping of a set of page tables, merged into ranges, a table at a time.

The enumerator reads each table with one call, finds valid entries and leaves with numpy, and
merges neighbouring leaves whose VA and PA are contiguous and whose attributes match while it
scans (never in a second pass). It follows the same structures as the walker (Intel SDM vol. 3A
ch. 4; Arm ARM D8; RISC-V privileged spec), and computes effective permissions over every level
with the mode's rules. Tables reached more than once (shared kernel halves, KASAN-style shadow,
recursive slots) are enumerated once per (table, level, inherited permission) and their result
is reused; the count of reuses is reported. The walk's depth is fixed, so tables that point to
themselves cannot make it loop. A :class:`~pagewalk.inspect.filters.Filter` prunes during the
walk: subtrees whose permission cap or level cannot match are never read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from pagewalk.batch import group_shapes
from pagewalk.formats.base import Entry, EntryKind, Half, MemType, PagingMode, Perm, U64Array
from pagewalk.inspect.filters import Filter
from pagewalk.walk import EntryReader


class TableReader(EntryReader, Protocol):
    """What enumeration needs from memory: whole tables and a RAM check."""

    def read_table(self, pa: int, n_entries: int, entry_size: int) -> U64Array: ...

    def is_ram(self, pa: int, n: int = 1) -> bool: ...

    def is_ram_array(self, pas: U64Array, n: int) -> npt.NDArray[np.bool_]: ...

    def gather(self, pas: U64Array, entry_size: int) -> U64Array: ...


@dataclass(frozen=True, slots=True)
class Mapping:
    """A merged range of translations.

    Attributes:
        va: first virtual address.
        size: bytes covered.
        pa: first physical address (the range is contiguous in PA too).
        page_size: the size of every leaf in the range.
        perm: effective permission over all levels.
        memtype: the leaves' memory type.
        attrs: with ``raw_attrs``, the leaves' raw bits outside the address field (every leaf
            of the range has exactly these), else None.
    """

    va: int
    size: int
    pa: int
    page_size: int
    perm: Perm
    memtype: MemType | str | None
    attrs: int | None = None

    @property
    def end(self) -> int:
        """One past the last VA."""
        return self.va + self.size

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON object for a range."""
        memtype = self.memtype.value if isinstance(self.memtype, MemType) else self.memtype
        return {
            "va": self.va,
            "size": self.size,
            "pa": self.pa,
            "page_size": self.page_size,
            "writable": bool(self.perm & Perm.WRITE),
            "user": bool(self.perm & Perm.USER),
            "executable": bool(self.perm & Perm.EXEC),
            "global": bool(self.perm & Perm.GLOBAL),
            "memtype": memtype,
        }

    def continues(self, other: Mapping) -> bool:
        """Whether ``other`` starts right where this ends, in VA and PA, with equal attributes."""
        return (
            other.va == self.va + self.size
            and other.pa == self.pa + self.size
            and other.page_size == self.page_size
            and other.perm == self.perm
            and other.memtype == self.memtype
            and other.attrs == self.attrs
        )


@dataclass
class EnumStats:
    """What an enumeration did."""

    tables: int = 0
    entries: int = 0
    leaves: int = 0
    memo_hits: int = 0
    bad_tables: int = 0
    faulty_entries: int = 0
    pruned: int = 0


@dataclass
class _Walker:
    mem: TableReader
    mode: PagingMode
    half: Half
    lo: int
    hi: int
    filt: Filter = field(default_factory=Filter)
    raw_attrs: bool = False
    memo_ok: set[tuple[int, int]] = field(default_factory=set)
    memo: dict[tuple[int, int, Perm], list[Mapping]] = field(default_factory=dict)
    stats: EnumStats = field(default_factory=EnumStats)


def mappings(
    mem: TableReader,
    mode: PagingMode,
    roots: Sequence[int],
    *,
    va_range: tuple[int, int] | None = None,
    stats: EnumStats | None = None,
    filt: Filter | None = None,
    raw_attrs: bool = False,
) -> Iterator[Mapping]:
    """Every mapping of the tables, merged, in VA order (low half first).

    Args:
        va_range: only ``[lo, hi)``; subtrees outside it are never read.
        stats: filled with counts as the enumeration runs.
        filt: permissions, PA window and page sizes to keep; applied during the walk.
        raw_attrs: merge only leaves whose raw attribute bits are equal, and report them in
            :attr:`Mapping.attrs` (what a per-entry listing such as ``info tlb`` needs).
    """
    stats = stats if stats is not None else EnumStats()
    lo, hi = va_range if va_range is not None else (0, 1 << 64)
    pending: Mapping | None = None
    for half in mode.halves:
        s_lo, s_hi = max(lo, half.va_start), min(hi, half.va_end)
        if s_lo >= s_hi:
            continue
        root = roots[half.root]
        if mode.root_fault(root, half) is not None:
            continue
        walker = _Walker(mem, mode, half, s_lo, s_hi, filt or Filter(), raw_attrs, stats=stats)
        walker.memo_ok = _shared_tables(walker, root)
        top = half.levels[0]
        base = half.va_start & ~((1 << (top.shift + top.bits)) - 1)
        for m in _table(walker, root, 0, base, []):
            if pending is not None and pending.continues(m):
                pending = replace(pending, size=pending.size + m.size)
                continue
            if pending is not None:
                yield pending
            pending = m
    if pending is not None:
        yield pending


def _shared_tables(w: _Walker, root: int) -> set[tuple[int, int]]:
    """(table, depth) pairs reached through more than one entry: worth memoising."""
    count: dict[tuple[int, int], int] = {}
    stack = [(root, 0)]
    while stack:
        table, depth = stack.pop()
        key = (table, depth)
        count[key] = count.get(key, 0) + 1
        if count[key] > 1 or depth == len(w.half.levels) - 1:
            continue
        level = w.half.levels[depth]
        if not w.mem.is_ram(table, level.entries * w.mode.entry_size):
            continue
        raws = w.mem.read_table(table, level.entries, w.mode.entry_size)
        valid = raws[(raws & np.uint64(1)) != 0]
        children = w.mode.np_address(valid[~w.mode.np_is_leaf(valid, level)], level, False)
        stack.extend((int(c), depth + 1) for c in children.tolist())
    return {k for k, n in count.items() if n > 1}


def _table(w: _Walker, table: int, depth: int, base: int, path: list[Entry]) -> Iterator[Mapping]:
    """Mappings under ``table`` (at ``depth``, covering VAs from ``base``), in VA order."""
    level = w.half.levels[depth]
    cap = w.mode.effective(path, w.half) if path else Perm(0xF)
    key = (table, depth, cap)
    shared = (table, depth) in w.memo_ok
    if not w.filt.table_may_match(cap, w.half, depth):
        w.stats.pruned += 1
        return
    if shared and key in w.memo:
        w.stats.memo_hits += 1
        for rel in w.memo[key]:
            if w.lo <= rel.va + base and rel.va + base + rel.size <= w.hi:
                yield replace(rel, va=rel.va + base)
        return
    if not w.mem.is_ram(table, level.entries * w.mode.entry_size):
        w.stats.bad_tables += 1
        return
    w.stats.tables += 1
    i0 = max(0, (w.lo - base) >> level.shift)
    i1 = min(level.entries - 1, (w.hi - 1 - base) >> level.shift)
    if i0 > i1:
        return
    raws = w.mem.read_table(table + i0 * w.mode.entry_size, i1 - i0 + 1, w.mode.entry_size)
    out = _scan(w, raws, i0, depth, base, path)
    if shared and i0 == 0 and i1 == level.entries - 1:
        collected = list(out)
        w.memo[key] = [replace(m, va=m.va - base) for m in collected]
        yield from collected
    else:
        yield from out


def _scan(
    w: _Walker, raws: U64Array, i0: int, depth: int, base: int, path: list[Entry]
) -> Iterator[Mapping]:
    """Walk one table's valid entries: runs of leaves at once, child tables one by one."""
    level = w.half.levels[depth]
    valid_idx = np.flatnonzero(raws & np.uint64(1))
    w.stats.entries += int(valid_idx.size)
    if not valid_idx.size:
        return
    valid = raws[valid_idx]
    is_leaf = w.mode.np_is_leaf(valid, level)
    cuts = np.flatnonzero(np.diff(is_leaf.astype(np.int8))) + 1
    for seg in np.split(np.arange(valid_idx.size), cuts):
        if is_leaf[seg[0]]:
            yield from _leaf_runs(w, valid[seg], valid_idx[seg] + i0, depth, base, path)
            continue
        if depth + 2 == len(w.half.levels):
            batch = _leaf_tables(w, valid[seg], valid_idx[seg] + i0, depth, base, path)
            if batch is not None:
                yield from batch
                continue
        for j in seg.tolist():
            entry = w.mode.decode(int(valid[j]), level)
            if entry.fault is not None:
                w.stats.faulty_entries += 1
                continue
            child_base = base + ((int(valid_idx[j]) + i0) << level.shift)
            yield from _table(w, entry.address, depth + 1, child_base, [*path, entry])


def _leaf_tables(
    w: _Walker, parents: U64Array, pidx: Any, depth: int, base: int, path: list[Entry]
) -> Iterator[Mapping] | None:
    """All the leaf tables below a run of table entries, read with one gather.

    Only for the common case: the parents share one attribute shape (so one effective
    permission), none is a memoised shared subtree, all lie inside the VA window and in RAM.
    Returns None otherwise, and the caller walks the tables one by one. Leaf indices are global
    (parent index * entries + index), so runs merge across table boundaries.
    """
    level, child = w.half.levels[depth], w.half.levels[depth + 1]
    esize = w.mode.entry_size
    keys = parents & np.uint64(~w.mode.address_mask(level, False) & ((1 << 64) - 1))
    if (keys != keys[0]).any():
        return None
    first = w.mode.decode_cached(int(parents[0]), level)
    if first.fault is not None or first.kind is not EntryKind.TABLE:
        return None
    lo_va = base + (int(pidx[0]) << level.shift)
    hi_va = base + ((int(pidx[-1]) + 1) << level.shift)
    children = w.mode.np_address(parents, level, False)
    if (
        lo_va < w.lo
        or hi_va > w.hi
        or (w.memo_ok and any((int(c), depth + 1) in w.memo_ok for c in children.tolist()))
    ):
        return None
    if not w.mem.is_ram_array(children, child.entries * esize).all():
        return None
    path = [*path, first]
    if not w.filt.table_may_match(w.mode.effective(path, w.half), w.half, depth + 1):
        w.stats.pruned += int(children.size)
        return iter(())
    offsets = np.arange(child.entries, dtype=np.uint64) * np.uint64(esize)
    raws = w.mem.gather((children[:, None] + offsets).ravel(), esize)
    w.stats.tables += int(children.size)
    valid = np.flatnonzero(raws & np.uint64(1))
    w.stats.entries += int(valid.size)
    if not valid.size:
        return iter(())
    gidx = np.asarray(pidx, dtype=np.int64)[valid // child.entries] * child.entries
    gidx += valid % child.entries
    return _leaf_runs(w, raws[valid], gidx, depth + 1, base, path)


def _leaf_runs(
    w: _Walker, leaves: U64Array, idx: Any, depth: int, base: int, path: list[Entry]
) -> Iterator[Mapping]:
    """Merged runs of a table's consecutive leaves (one numpy pass, one decode per kind)."""
    level = w.half.levels[depth]
    span = level.leaf_size
    w.stats.leaves += int(leaves.size)
    addr = w.mode.np_address(leaves, level, leaf=True)
    keys = leaves & np.uint64(~w.mode.address_mask(level, True) & ((1 << 64) - 1))
    classes: dict[tuple[Perm, Any, int | None], int] = {}
    attrs: list[tuple[Perm, Any, int | None]] = []
    size_ok = w.filt.size_ok(span)
    cls = np.empty(leaves.size, dtype=np.int64)
    for rows, rep in group_shapes(keys):  # one decode per distinct entry shape
        entry = w.mode.decode_cached(int(leaves[rep]), level)
        if entry.fault is not None:
            cls[rows] = -1
            continue
        perm = w.mode.effective([*path, entry], w.half)
        if not (size_ok and w.filt.perm_ok(perm)):
            cls[rows] = -2
            continue
        attr = (perm, entry.memtype, int(keys[rep]) if w.raw_attrs else None)
        cls[rows] = classes.setdefault(attr, len(classes))
        if cls[rep] == len(attrs):
            attrs.append(attr)
    ok = (cls != -1) & ((addr & np.uint64(span - 1)) == 0)
    w.stats.faulty_entries += int((~ok).sum())
    ok &= cls >= 0
    pa_ok = w.filt.pa_mask(addr, span)
    if pa_ok is not None:
        ok &= pa_ok
    if not ok.all():
        idx, addr, cls = idx[ok], addr[ok], cls[ok]
    if not idx.size:
        return
    breaks = (np.diff(idx) != 1) | (np.diff(addr) != np.uint64(span)) | (np.diff(cls) != 0)
    starts = np.concatenate(([0], np.flatnonzero(breaks) + 1))
    ends = np.concatenate((starts[1:], [idx.size]))
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        perm, memtype, raw = attrs[int(cls[s])]
        va = base + (int(idx[s]) << level.shift)
        yield Mapping(va, (e - s) * span, int(addr[s]), span, perm, memtype, raw)
