"""The enumerator's walk: each table read as one array, its leaves turned into runs as columns.

:mod:`pagewalk.enumerate` drives it; this module walks one half of an address space. A table's
valid entries are found with numpy; runs of table entries whose children are all leaf tables
are read with one gather (in groups of :data:`GATHER` leaves, so memory follows the group, not
the address space); consecutive leaves whose VA and PA are contiguous and whose attributes
match become one run, in bulk, as :class:`~pagewalk.columns.RunColumns`. A leaf's effective
permission over every level (Intel SDM vol. 3A §4.6, Arm ARM D8.4, RISC-V privileged spec) and
its memory type are decoded once per distinct (pointer path shape, leaf shape), never per leaf.

Untrusted dumps (see :mod:`pagewalk.enumerate`): the depth is fixed, subtrees reached more than
once are memoised per (table, level, inherited permission) and replayed as columns, the ranges
are counted against ``limit`` as tables produce them, and tables partly outside RAM map only
their entries in RAM and are recorded in :attr:`EnumStats.partial`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pagewalk.batch import group_shapes
from pagewalk.columns import RunColumns, concat
from pagewalk.enumerate_filter import Filter
from pagewalk.enumerate_runs import EnumStats, PartialTable, TableReader, missing_runs, read_entries
from pagewalk.errors import LimitError
from pagewalk.formats.base import Entry, EntryKind, Half, Level, MemType, PagingMode, Perm, U64Array

#: ranges of one shared subtree kept for replay, and of all subtrees of a half
MEMO_ROWS = 1 << 12
MEMO_TOTAL = 1 << 17
#: leaves read by one gather below a run of table entries
GATHER = 1 << 15
#: (path shapes, leaf shape) pairs whose decoding is remembered
LEAF_CACHE = 1 << 12
MASK64 = (1 << 64) - 1

#: a leaf class: (Perm bits, memtype index, raw attribute bits or 0)
Class = tuple[int, int, int]
Decoded = tuple[Perm, MemType | str | None] | None


@dataclass(slots=True)
class _Memo:
    count: int
    rows: RunColumns | None  # VAs relative to the subtree's base


@dataclass(slots=True)
class _Tail:
    """The last leaf kept by the previous group of one gather, so that a run that continues
    across groups is counted once (as one gather of the whole run of tables would count it)."""

    idx: int = -2
    addr: int = 0
    cls: Class | None = None


@dataclass
class Walker:
    """One half's walk: where, what to keep, and what has been seen (memo, decodings)."""

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
    types: dict[MemType | str | None, int] = field(default_factory=dict)  # shared by halves
    decoded: dict[tuple[tuple[int, ...], int], Decoded] = field(default_factory=dict)
    caps: dict[tuple[int, ...], Perm] = field(default_factory=dict)


def walk_root(w: Walker, root: int) -> Iterator[RunColumns]:
    """Runs of the half below ``root``, in VA order (merged within tables, not across)."""
    top = w.half.levels[0]
    return _table(w, root, 0, w.half.va_start & ~((1 << (top.shift + top.bits)) - 1), [], ())


def count(w: Walker, n: int) -> None:
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


def _shape_mask(w: Walker, level: Level, leaf: bool) -> int:
    return ~w.mode.address_mask(level, leaf) & MASK64


def _read(w: Walker, table: int, level: Level, i0: int, n: int) -> U64Array | None:
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


def _moved(cols: RunColumns, base: int, sign: int) -> RunColumns:
    va = cols.va + np.uint64(base) if sign > 0 else cols.va - np.uint64(base)
    return replace(cols, va=va)


def _table(
    w: Walker, table: int, depth: int, base: int, path: list[Entry], pkey: tuple[int, ...]
) -> Iterator[RunColumns]:
    """Runs under ``table`` (at ``depth``, covering VAs from ``base``), in VA order.

    ``pkey`` is the shape (bits outside the address) of each entry of ``path``.
    """
    level = w.half.levels[depth]
    cap = _cap(w, path, pkey)
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
            count(w, seen.count)
        if not (w.distinct or w.counting) and seen.rows is not None and len(seen.rows):
            yield _moved(seen.rows, base, 1)
        return
    i0 = max(0, (w.lo - base) >> level.shift)
    i1 = min(level.entries - 1, (w.hi - 1 - base) >> level.shift)
    if i0 > i1:
        return
    raws = _read(w, table, level, i0, i1 - i0 + 1)
    if raws is None:
        return
    w.stats.tables += 1
    out = _scan(w, raws, i0, depth, base, path, pkey)
    if not memo:
        yield from out
        return
    before = w.stats.runs
    keep: list[RunColumns] | None = (
        [] if not (w.counting or w.distinct) and w.kept < MEMO_TOTAL else None
    )
    for cols in out:
        if keep is not None:  # kept while the subtree has counted at most MEMO_ROWS ranges
            keep = keep if w.stats.runs - before <= MEMO_ROWS else None
            if keep is not None:
                keep.append(cols)
        yield cols
    n = w.stats.runs - before
    rows = None
    if keep is not None:
        w.kept += n
        rows = _moved(concat(keep), base, -1) if keep else RunColumns.empty(with_attrs=w.raw_attrs)
    w.memo[key] = _Memo(n, rows)


def _scan(
    w: Walker,
    raws: U64Array,
    i0: int,
    depth: int,
    base: int,
    path: list[Entry],
    pkey: tuple[int, ...],
) -> Iterator[RunColumns]:
    """Walk one table's valid entries: runs of leaves at once, child tables one by one."""
    level = w.half.levels[depth]
    valid_idx = np.flatnonzero(raws & np.uint64(w.mode.present_mask))
    w.stats.entries += int(valid_idx.size)
    if not valid_idx.size:
        return
    valid = raws[valid_idx]
    is_leaf = w.mode.np_is_leaf(valid, level)
    cuts = np.flatnonzero(np.diff(is_leaf.astype(np.int8))) + 1
    tmask = _shape_mask(w, level, False)
    for seg in np.split(np.arange(valid_idx.size), cuts):
        if is_leaf[seg[0]]:
            yield from _leaf_runs(w, valid[seg], valid_idx[seg] + i0, depth, base, path, pkey)
            continue
        if depth + 2 == len(w.half.levels):
            batch = _leaf_tables(w, valid[seg], valid_idx[seg] + i0, depth, base, path, pkey)
            if batch is not None:
                yield from batch
                continue
        for j in seg.tolist():
            raw = int(valid[j])
            entry = w.mode.decode_cached(raw, level)
            if entry.fault is not None or entry.kind is not EntryKind.TABLE:
                w.stats.faulty_entries += 1
                continue
            child_base = base + ((int(valid_idx[j]) + i0) << level.shift)
            child_key = (*pkey, raw & tmask)
            yield from _table(w, entry.address, depth + 1, child_base, [*path, entry], child_key)


def _leaf_tables(
    w: Walker,
    parents: U64Array,
    pidx: Any,
    depth: int,
    base: int,
    path: list[Entry],
    pkey: tuple[int, ...],
) -> Iterator[RunColumns] | None:
    """All the leaf tables below a run of table entries, read by gathers.

    Only for the common case: the parents share one attribute shape (so one effective
    permission), none is a memoised shared subtree, all lie inside the VA window and in RAM.
    Returns None otherwise, and the caller walks the tables one by one. Leaf indices are global
    (parent index * entries + index), so runs merge across table boundaries.
    """
    level, child = w.half.levels[depth], w.half.levels[depth + 1]
    keys = parents & np.uint64(_shape_mask(w, level, False))
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
    if not w.mem.is_ram_array(children, child.entries * w.mode.entry_size).all():
        return None
    path, pkey = [*path, first], (*pkey, int(keys[0]))
    if not w.filt.table_may_match(_cap(w, path, pkey), w.half, depth + 1):
        w.stats.pruned += int(children.size)
        return iter(())
    return _gathered(w, children, np.asarray(pidx, dtype=np.int64), depth + 1, base, path, pkey)


def _gathered(
    w: Walker,
    children: U64Array,
    pidx: Any,
    depth: int,
    base: int,
    path: list[Entry],
    pkey: tuple[int, ...],
) -> Iterator[RunColumns]:
    """The leaves of ``children`` (leaf tables at ``depth``), a group of tables per gather."""
    entries, esize = w.half.levels[depth].entries, w.mode.entry_size
    offsets = np.arange(entries, dtype=np.uint64) * np.uint64(esize)
    per = max(1, GATHER // entries)
    tail = _Tail()
    for g in range(0, int(children.size), per):
        group = children[g : g + per]
        raws = w.mem.gather((group[:, None] + offsets).ravel(), esize)
        w.stats.tables += int(group.size)
        valid = np.flatnonzero(raws & np.uint64(w.mode.present_mask))
        w.stats.entries += int(valid.size)
        if not valid.size:
            continue
        gidx = pidx[g : g + per][valid // entries] * entries + valid % entries
        yield from _leaf_runs(w, raws[valid], gidx, depth, base, path, pkey, tail)


def _cap(w: Walker, path: list[Entry], pkey: tuple[int, ...]) -> Perm:
    """What the tables of ``path`` (of shapes ``pkey``) allow the leaves below them."""
    cap = w.caps.get(pkey)
    if cap is None:
        cap = w.mode.effective(path, w.half) if path else Perm(0xF)
        if len(w.caps) >= LEAF_CACHE:
            w.caps.clear()
        w.caps[pkey] = cap
    return cap


def _decode_leaf(
    w: Walker, level: Level, pkey: tuple[int, ...], shape: int, raw: int, path: list[Entry]
) -> Decoded:
    """(effective permission, memory type) of a leaf of this shape below this path, or None
    if it faults: decoded once per (path shapes, leaf shape)."""
    key = (pkey, shape)
    if key in w.decoded:
        return w.decoded[key]
    entry = w.mode.decode_cached(raw, level)
    got: Decoded = None
    if entry.fault is None:
        got = (w.mode.effective([*path, entry], w.half), entry.memtype)
    if len(w.decoded) >= LEAF_CACHE:
        w.decoded.clear()
    w.decoded[key] = got
    return got


def _leaf_runs(
    w: Walker,
    leaves: U64Array,
    idx: Any,
    depth: int,
    base: int,
    path: list[Entry],
    pkey: tuple[int, ...],
    tail: _Tail | None = None,
) -> Iterator[RunColumns]:
    """Merged runs of consecutive leaves (one numpy pass, one decode per leaf shape)."""
    level = w.half.levels[depth]
    span = level.leaf_size
    w.stats.leaves += int(leaves.size)
    if not span:  # no leaf may stand at this level: each such entry is a fault
        w.stats.faulty_entries += int(leaves.size)
        return
    addr = w.mode.np_address(leaves, level, leaf=True)
    keys = leaves & np.uint64(_shape_mask(w, level, True))
    classes: dict[Class, int] = {}
    size_ok = w.filt.size_ok(span)
    cls = np.empty(leaves.size, dtype=np.int64)
    for rows, rep in group_shapes(keys):
        shape = int(keys[rep])
        got = _decode_leaf(w, level, pkey, shape, int(leaves[rep]), path)
        if got is None:
            cls[rows] = -1
            continue
        perm, memtype = got
        if not (size_ok and w.filt.perm_ok(perm)):
            cls[rows] = -2
            continue
        mt = w.types.setdefault(memtype, len(w.types))
        cls[rows] = classes.setdefault((int(perm), mt, shape if w.raw_attrs else 0), len(classes))
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
    info = list(classes)
    cont = False
    if tail is not None:
        cont = (
            int(idx[0]) == tail.idx + 1
            and int(addr[0]) == tail.addr + span
            and info[int(cls[0])] == tail.cls
        )
        tail.idx, tail.addr, tail.cls = int(idx[-1]), int(addr[-1]), info[int(cls[-1])]
    fresh = int(starts.size) - cont
    if w.counting:
        count(w, fresh)
        return
    table = np.array(info, dtype=np.uint64)
    c = cls[starts]
    lengths = np.diff(np.append(starts, idx.size)).astype(np.uint64)
    cols = RunColumns(
        (idx[starts].astype(np.uint64) << np.uint64(level.shift)) + np.uint64(base),
        lengths * np.uint64(span),
        addr[starts],
        np.full(starts.size, span, dtype=np.uint64),
        table[c, 0].astype(np.uint8),
        table[c, 1].astype(np.uint8),
        tuple(w.types),
        table[c, 2] if w.raw_attrs else None,
    )
    if w.limit is not None and w.stats.runs + fresh > w.limit:
        allowed = w.limit - w.stats.runs  # let out what a count range by range lets out
        if allowed + cont:
            yield cols.take(slice(0, allowed + cont))
        count(w, allowed + 1)  # raises
    count(w, fresh)
    yield cols
