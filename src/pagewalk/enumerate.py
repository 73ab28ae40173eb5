"""Enumerate every mapping of a set of page tables, merged into ranges, a table at a time.

The enumerator reads each table with one call, finds valid entries and leaves with numpy, and
merges neighbouring leaves whose VA and PA are contiguous and whose attributes match while it
scans (never in a second pass). It follows the same structures as the walker (Intel SDM vol. 3A
ch. 4; Arm ARM D8; RISC-V privileged spec), and computes effective permissions over every level
with the mode's rules. A :class:`~pagewalk.enumerate_filter.Filter` prunes during the walk:
subtrees whose permission cap or level cannot match are never read.

A dump is untrusted, so cost follows the tables, not what they describe. The walk's depth is
fixed, so tables that point to themselves cannot make it loop. A table reached through more than
one entry (shared kernel halves, KASAN-style shadow, recursive slots, or a hostile dump whose
every entry points to one table) is walked once per (table, level, inherited permission): its
ranges are replayed when they are few (:data:`MEMO_ROWS` per subtree, :data:`MEMO_TOTAL` per
half), else only their count is kept and the subtree is walked again. With ``limit``, the tables
are counted first (no ranges are built, shared subtrees are counted once: time proportional to
the distinct tables, a few per cent of a listing) and refused with a
:class:`~pagewalk.errors.LimitError` before the first range when they describe more ranges than
allowed; ``distinct`` lists each reused subtree once instead.

Tables partly outside RAM map only their entries in RAM, as for the walker, and are reported in
:attr:`EnumStats.partial`. A library layer beside :mod:`pagewalk.walk`, used by the kernel model
and the inspectors alike: it imports nothing from :mod:`pagewalk.inspect`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pagewalk.batch import group_shapes
from pagewalk.enumerate_filter import Filter
from pagewalk.enumerate_runs import (
    EnumStats,
    Mapping,
    PartialTable,
    TableReader,
    missing_runs,
    read_entries,
)
from pagewalk.errors import LimitError
from pagewalk.formats.base import Entry, EntryKind, Half, Level, PagingMode, Perm, U64Array

__all__ = ["EnumStats", "Mapping", "PartialTable", "TableReader", "count_runs", "mappings"]


MEMO_ROWS = 1 << 12
MEMO_TOTAL = 1 << 17


@dataclass(slots=True)
class _Memo:
    count: int
    rows: list[Mapping] | None


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
    memo: dict[tuple[int, int, Perm], _Memo] = field(default_factory=dict)
    stats: EnumStats = field(default_factory=EnumStats)
    limit: int | None = None
    counting: bool = False
    distinct: bool = False
    kept: int = 0


def mappings(
    mem: TableReader,
    mode: PagingMode,
    roots: Sequence[int],
    *,
    va_range: tuple[int, int] | None = None,
    stats: EnumStats | None = None,
    filt: Filter | None = None,
    raw_attrs: bool = False,
    limit: int | None = None,
    distinct: bool = False,
) -> Iterator[Mapping]:
    """Every mapping of the tables, merged, in VA order (low half first).

    Args:
        va_range: only ``[lo, hi)``; subtrees outside it are never read.
        stats: filled with counts as the enumeration runs.
        filt: permissions, PA window and page sizes to keep; applied during the walk.
        raw_attrs: merge only leaves whose raw attribute bits are equal, and report them in
            :attr:`Mapping.attrs` (what a per-entry listing such as ``info tlb`` needs).
        limit: the most ranges (as :attr:`EnumStats.runs` counts them) the tables may
            describe; None for no limit.
        distinct: list a subtree reached again with the same inherited permission only the
            first time (each distinct table is walked once: what a checker needs).

    Raises:
        LimitError: (at the first ``next``, before any range) the tables describe more than
            ``limit`` ranges.
    """
    stats = stats if stats is not None else EnumStats()
    walkers = list(_walkers(mem, mode, roots, va_range, stats, filt or Filter(), raw_attrs))
    for w, _ in walkers:
        w.limit, w.distinct = limit, distinct
    if limit is not None and not distinct:  # count first: fail before the first range
        counted = EnumStats()
        for w, root in walkers:
            for _ in _root(replace(w, memo={}, stats=counted, counting=True), root):
                pass
    pending: Mapping | None = None
    for w, root in walkers:
        for m in _root(w, root):
            if pending is not None and pending.continues(m):
                pending = replace(pending, size=pending.size + m.size)
                continue
            if pending is not None:
                yield pending
            pending = m
    if pending is not None:
        yield pending


def count_runs(
    mem: TableReader,
    mode: PagingMode,
    roots: Sequence[int],
    *,
    va_range: tuple[int, int] | None = None,
    filt: Filter | None = None,
    limit: int | None = None,
) -> int:
    """How many ranges :func:`mappings` would produce (before merging across tables), in time
    proportional to the distinct tables when they are reused.

    Raises:
        LimitError: more than ``limit``.
    """
    stats = EnumStats()
    for w, root in _walkers(mem, mode, roots, va_range, stats, filt or Filter(), False):
        w.limit, w.counting = limit, True
        for _ in _root(w, root):
            pass
    return stats.runs


def _walkers(
    mem: TableReader,
    mode: PagingMode,
    roots: Sequence[int],
    va_range: tuple[int, int] | None,
    stats: EnumStats,
    filt: Filter,
    raw_attrs: bool,
) -> Iterator[tuple[_Walker, int]]:
    lo, hi = va_range if va_range is not None else (0, 1 << 64)
    for half in mode.halves:
        s_lo, s_hi = max(lo, half.va_start), min(hi, half.va_end)
        if s_lo >= s_hi:
            continue
        root = roots[half.root]
        if mode.root_fault(root, half) is not None:
            continue
        walker = _Walker(mem, mode, half, s_lo, s_hi, filt, raw_attrs, stats=stats)
        walker.memo_ok = _shared_tables(walker, root)
        yield walker, root


def _root(w: _Walker, root: int) -> Iterator[Mapping]:
    top = w.half.levels[0]
    return _table(w, root, 0, w.half.va_start & ~((1 << (top.shift + top.bits)) - 1), [])


def _count(w: _Walker, n: int) -> None:
    """Add ``n`` ranges to the count; past the limit, stop with a message saying what to do."""
    w.stats.runs += n
    if w.limit is not None and w.stats.runs > w.limit:
        reused = (
            f"; {len(w.memo_ok)} table(s) are reached through more than one entry, which is "
            "how a small (or hostile) dump describes a huge address space"
            if w.memo_ok
            else ""
        )
        raise LimitError(
            f"the page tables describe more than {w.limit} mapping ranges (the limit){reused}. "
            "Raise it with --max-mappings N or PAGEWALK_MAX_MAPPINGS=N (0: no limit), or "
            "narrow the listing (--range, --phys, --perm, --level-sizes)"
        )


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
        raws, _ = read_entries(w.mem, table, level.entries, w.mode.entry_size)
        valid = raws[(raws & np.uint64(1)) != 0]
        children = w.mode.np_address(valid[~w.mode.np_is_leaf(valid, level)], level, False)
        stack.extend((int(c), depth + 1) for c in children.tolist())
    return {k for k, n in count.items() if n > 1}


def _read(w: _Walker, table: int, level: Level, i0: int, n: int) -> U64Array | None:
    """Entries ``i0 .. i0 + n`` of a table; records a partial table; None if none is in RAM."""
    esize = w.mode.entry_size
    raws, ok = read_entries(w.mem, table + i0 * esize, n, esize)
    if ok is None:
        return raws
    if not ok.any():
        w.stats.bad_tables += 1
        return None
    key = (table, level.number)
    if key not in w.stats.partial:
        w.stats.partial[key] = PartialTable(table, level, esize, missing_runs(ok, i0))
    return raws


def _table(w: _Walker, table: int, depth: int, base: int, path: list[Entry]) -> Iterator[Mapping]:
    """Mappings under ``table`` (at ``depth``, covering VAs from ``base``), in VA order."""
    level = w.half.levels[depth]
    cap = w.mode.effective(path, w.half) if path else Perm(0xF)
    if not w.filt.table_may_match(cap, w.half, depth):
        w.stats.pruned += 1
        return
    key = (table, depth, cap)
    whole = w.lo <= base and base + (level.entries << level.shift) <= w.hi
    memo = whole and (table, depth) in w.memo_ok
    seen = w.memo.get(key) if memo else None
    if seen is not None and (w.distinct or w.counting or seen.rows is not None):
        w.stats.memo_hits += 1
        if not w.distinct:
            _count(w, seen.count)
        for rel in seen.rows if not (w.distinct or w.counting) and seen.rows else ():
            yield replace(rel, va=rel.va + base)
        return
    i0 = max(0, (w.lo - base) >> level.shift)
    i1 = min(level.entries - 1, (w.hi - 1 - base) >> level.shift)
    if i0 > i1:
        return
    raws = _read(w, table, level, i0, i1 - i0 + 1)
    if raws is None:
        return
    w.stats.tables += 1
    out = _scan(w, raws, i0, depth, base, path)
    if not memo:
        yield from out
        return
    before = w.stats.runs
    keep: list[Mapping] | None = (
        [] if not (w.counting or w.distinct) and w.kept < MEMO_TOTAL else None
    )
    for m in out:
        if keep is not None:
            keep = keep if len(keep) < MEMO_ROWS else None
            if keep is not None:
                keep.append(replace(m, va=m.va - base))
        yield m
    w.kept += len(keep) if keep is not None else 0
    w.memo[key] = _Memo(w.stats.runs - before, keep)


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
            entry = w.mode.decode_cached(int(valid[j]), level)
            if entry.fault is not None or entry.kind is not EntryKind.TABLE:
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
    if not span:  # no leaf may stand at this level: each such entry is a fault
        w.stats.faulty_entries += int(leaves.size)
        return
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
    if w.counting:
        _count(w, int(starts.size))
        return
    ends = np.concatenate((starts[1:], [idx.size]))
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        _count(w, 1)
        perm, memtype, raw = attrs[int(cls[s])]
        va = base + (int(idx[s]) << level.shift)
        yield Mapping(va, (e - s) * span, int(addr[s]), span, perm, memtype, raw)
