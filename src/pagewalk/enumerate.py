"""Enumerate every mapping of a set of page tables, merged into ranges, as columns.

The enumerator reads each table with one call, finds valid entries and leaves with numpy, and
merges neighbouring leaves whose VA and PA are contiguous and whose attributes match while it
scans (never in a second pass over objects): :func:`mapping_columns` yields the ranges as
:class:`~pagewalk.columns.RunColumns` batches of about :data:`~pagewalk.columns.BATCH` ranges,
so memory follows the batch, not the address space; :func:`mappings` is the same enumeration
one :class:`Mapping` at a time. It follows the same structures as the walker (Intel SDM vol. 3A
ch. 4; Arm ARM D8; RISC-V privileged spec), and computes effective permissions over every level
with the mode's rules, once per distinct entry shape (:mod:`pagewalk.enumerate_columns`). A
:class:`~pagewalk.enumerate_filter.Filter` prunes during the walk: subtrees whose permission cap
or level cannot match are never read.

A dump is untrusted, so cost follows the tables, not what they describe. The walk's depth is
fixed, so tables that point to themselves cannot make it loop. A table reached through more than
one entry (shared kernel halves, KASAN-style shadow, recursive slots, or a hostile dump whose
every entry points to one table) is walked once per (table, level, inherited permission): its
ranges are replayed when they are few (``MEMO_ROWS`` per subtree, ``MEMO_TOTAL`` per half), else
only their count is kept and the subtree is walked again. With ``limit``, the tables are counted
first (no ranges are built, shared subtrees are counted once: time proportional to the distinct
tables, a few per cent of a listing) and refused with a :class:`~pagewalk.errors.LimitError`
before the first range when they describe more ranges than allowed; ``distinct`` lists each
reused subtree once instead.

Tables partly outside RAM map only their entries in RAM, as for the walker, and are reported in
:attr:`EnumStats.partial`. A library layer beside :mod:`pagewalk.walk`, used by the kernel model
and the inspectors alike: it imports nothing from :mod:`pagewalk.inspect`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from pagewalk.columns import BATCH, RunColumns, merged_batches
from pagewalk.enumerate_columns import Walker, walk_root
from pagewalk.enumerate_filter import Filter
from pagewalk.enumerate_runs import EnumStats, Mapping, PartialTable, TableReader, read_entries
from pagewalk.formats.base import MemType, PagingMode

__all__ = [
    "EnumStats",
    "Mapping",
    "PartialTable",
    "RunColumns",
    "TableReader",
    "count_runs",
    "mapping_columns",
    "mappings",
]


def mapping_columns(
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
    batch: int = BATCH,
) -> Iterator[RunColumns]:
    """Every mapping of the tables, merged, in VA order (low half first), as column batches.

    A range that continues across tables, and across batches, is one range: the last range
    of a batch is held back until the next one cannot continue it. The arguments are those of
    :func:`mappings`; ``batch`` is the number of ranges per batch (about: one table's ranges
    are never split). With ``raw_attrs`` every batch has :attr:`RunColumns.attrs`.

    Raises:
        LimitError: (at the first ``next``, before any range) the tables describe more than
            ``limit`` ranges; with ``distinct``, when the count passes it, after the ranges
            counted before.
    """
    stats = stats if stats is not None else EnumStats()
    walkers = list(_walkers(mem, mode, roots, va_range, stats, filt or Filter(), raw_attrs))
    for w, _ in walkers:
        w.limit, w.distinct = limit, distinct
    if limit is not None and not distinct:  # count first: fail before the first range
        counted = EnumStats()
        for w, root in walkers:
            for _ in walk_root(replace(w, memo={}, stats=counted, counting=True), root):
                pass
    parts = (cols for w, root in walkers for cols in walk_root(w, root))
    yield from merged_batches(parts, batch)


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

    The rows of :func:`mapping_columns`, built one at a time as they are consumed.

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
    for batch in mapping_columns(
        mem, mode, roots, va_range=va_range, stats=stats, filt=filt, raw_attrs=raw_attrs,
        limit=limit, distinct=distinct,
    ):  # fmt: skip
        yield from batch.rows()


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
    proportional to the distinct tables when they are reused; no range is built.

    Raises:
        LimitError: more than ``limit``.
    """
    stats = EnumStats()
    for w, root in _walkers(mem, mode, roots, va_range, stats, filt or Filter(), False):
        w.limit, w.counting = limit, True
        for _ in walk_root(w, root):
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
) -> Iterator[tuple[Walker, int]]:
    lo, hi = va_range if va_range is not None else (0, 1 << 64)
    types: dict[MemType | str | None, int] = {}  # one memtype table for every batch
    for half in mode.halves:
        s_lo, s_hi = max(lo, half.va_start), min(hi, half.va_end)
        if s_lo >= s_hi:
            continue
        root = roots[half.root]
        if mode.root_fault(root, half) is not None:
            continue
        walker = Walker(mem, mode, half, s_lo, s_hi, filt, raw_attrs, stats=stats, types=types)
        walker.memo_ok = _shared_tables(walker, root)
        yield walker, root


def _shared_tables(w: Walker, root: int) -> set[tuple[int, int]]:
    """(table, depth) pairs reached through more than one entry: worth memoising."""
    seen: dict[tuple[int, int], int] = {}
    stack = [(root, 0)]
    while stack:
        table, depth = stack.pop()
        key = (table, depth)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1 or depth == len(w.half.levels) - 1:
            continue
        level = w.half.levels[depth]
        raws, _ = read_entries(w.mem, table, level.entries, w.mode.entry_size)
        valid = raws[(raws & np.uint64(w.mode.present_mask)) != 0]
        children = w.mode.np_address(valid[~w.mode.np_is_leaf(valid, level)], level, False)
        stack.extend((int(c), depth + 1) for c in children.tolist())
    return {k for k, n in seen.items() if n > 1}
