"""The map visitor: new leaves for a range, with the largest pages that fit, in runs.

One idea: going down the tables once per table (never once per page), a map writes each run of
fully covered entries whose size is allowed and whose PA is aligned as leaves, with one numpy
operation (x86 PTEs/PDEs/PDPTEs with PS, Intel SDM vol. 3A 4.5; Arm page and block descriptors,
Arm ARM D8.3; RISC-V leaf PTEs, privileged spec Sv32-Sv57); a run of fresh leaf tables is made
and filled at once. Any valid entry in the way is a conflict (already mapped, or a huge page
against a table). A parent entry allows at least what its leaves need: a new one is made so,
an existing one is widened (x86 sets R/W and U/S; Arm clears APTable/XNTable). The plan pass
encodes the first and last leaf of every run, so a permission, memory type or PA the format
cannot hold fails before anything is allocated or written.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pagewalk.errors import (
    AlreadyMappedError,
    HugePageConflictError,
    MisalignedAddressError,
    hx,
)
from pagewalk.formats.base import EntryKind, Level, MemType, U64Array
from pagewalk.space.descent import Span
from pagewalk.space.rangeop import RangeOp


def map_visit(op: RangeOp, span: Span) -> Iterator[Span]:
    """Map ``[span.lo, span.hi)`` in one table; yield the child tables to go on in."""
    table, li, tbase, lo, hi = span
    mode, tables = op.tables.mode, op.tables
    levels = op.half.levels
    level = levels[li]
    shift, span_size = level.shift, level.span
    i0, i1 = (lo - tbase) >> shift, (hi - 1 - tbase) >> shift
    raws = tables.slice(table, i0, i1 - i0 + 1) if table is not None else None
    last = op.last
    i = i0
    while i <= i1:
        e_lo = tbase + (i << shift)
        s_lo, s_hi = max(lo, e_lo), min(hi, e_lo + span_size)
        full = s_lo == e_lo and s_hi == e_lo + span_size
        if full and level.leaf_size in op.sizes and (e_lo + op.delta) % span_size == 0:
            k = i1 if hi >= tbase + ((i1 + 1) << shift) else i1 - 1
            if raws is not None:
                hits = np.flatnonzero(raws[i - i0 : k - i0 + 1] & np.uint64(mode.present_mask))
                if hits.size:
                    j = i + int(hits[0])
                    _refuse(op, tbase + (j << shift), level, table, j, int(raws[j - i0]))
            if op.plan:
                # Encode the run's first and last leaf now, so a permission, memory type or
                # PA the format cannot hold fails before anything is allocated or written.
                for pa in (e_lo + op.delta, e_lo + op.delta + (k - i) * span_size):
                    mode.encode_leaf(pa, level, op.perm, op.memtype or MemType.NORMAL)
            if not op.plan and table is not None:
                _write_leaves(op, table, level, i, k - i + 1, e_lo + op.delta)
            i = k + 1
            continue
        if li == last:
            raise MisalignedAddressError(
                f"cannot map {hx(s_lo)}-{hx(s_hi - 1)} with page sizes "
                f"{', '.join(hx(s) for s in sorted(op.sizes))}"
            )
        if li == last - 1 and full and levels[last].leaf_size in op.sizes:
            k = _fresh_run(raws, i, i0, i1, hi - tbase, shift, mode.present_mask)
            if k >= i:
                _fill_leaf_tables(op, table, li, i, k, e_lo)
                i = k + 1
                continue
        raw = int(raws[i - i0]) if raws is not None else 0
        child = _map_child(op, table, level, i, raw, s_lo)
        yield (child, li + 1, e_lo, s_lo, s_hi)
        if not op.plan and not raw & mode.present_mask and table is not None and child is not None:
            tables.write(table + i * tables.esize, mode.encode_table(child, level, op.perm))
        i += 1


def _fresh_run(
    raws: U64Array | None, i: int, i0: int, i1: int, hi: int, shift: int, present: int
) -> int:
    """The last index of the run from ``i`` of fully covered, still invalid entries.

    ``hi`` is the request's end relative to the table's base. Returns ``i - 1`` if none.
    """
    k = i1 if hi >= (i1 + 1) << shift else i1 - 1
    if raws is None or k < i:
        return k
    hits = np.flatnonzero(raws[i - i0 : k - i0 + 1] & np.uint64(present))
    return k if not hits.size else i + int(hits[0]) - 1


def _fill_leaf_tables(op: RangeOp, table: int | None, li: int, i: int, k: int, e_lo: int) -> None:
    """New leaf tables for entries ``i..k``, all their leaves made by one numpy operation."""
    mode, tables = op.tables.mode, op.tables
    level, child = op.half.levels[li], op.half.levels[li + 1]
    n, pa0 = k - i + 1, e_lo + op.delta
    memtype = op.memtype or MemType.NORMAL
    if op.plan:
        op.needed += n
        for pa in (pa0, pa0 + n * level.span - child.leaf_size):
            mode.encode_leaf(pa, child, op.perm, memtype)  # fail before writing
        return
    assert table is not None
    new = sorted(op.pool.pop() for _ in range(n))  # ascending: often one contiguous run

    def make(pa: int) -> int:
        return mode.encode_leaf(pa, child, op.perm, memtype)

    leaves = np.asarray(tables.leaf_run(child, pa0, n * child.entries, make), dtype=np.uint64)
    step = tables.table_bytes
    if new[-1] - new[0] == (n - 1) * step and child.entries * tables.esize == step:
        tables.put(new[0], 0, leaves)  # all the tables in one write
    else:
        for c, frame in enumerate(new):
            tables.put(frame, 0, leaves[c * child.entries : (c + 1) * child.entries])
    tables.put(table, i, tables.table_run(level, new, op.perm))


def _map_child(
    op: RangeOp, table: int | None, level: Level, i: int, raw: int, s_lo: int
) -> int | None:
    """The child table under entry ``i`` (existing, widened, or new from the pool).

    ``s_lo`` is the first VA of the request under this entry, which errors name.
    """
    if raw & op.tables.mode.present_mask:
        assert table is not None
        mode, esize = op.tables.mode, op.tables.esize
        entry = mode.decode(raw, level)
        e_lo = s_lo - s_lo % level.span
        if entry.kind is EntryKind.LEAF:
            raise HugePageConflictError(
                f"VA {hx(s_lo)} lies in a {hx(level.leaf_size)}-byte page at {level.name} "
                f"(VA {hx(e_lo)}, entry {hx(raw)} at PA {hx(table + i * esize)})",
                va=s_lo,
                level=level.number,
                existing_entry=raw,
            )
        if entry.fault is not None:
            raise op.tables.broken(level, table + i * esize, raw, entry.reason)
        if not op.plan:
            wider = mode.widen_table(raw, level, op.perm)
            if wider != raw:
                op.tables.write(table + i * esize, wider)
                op.widened.append((e_lo, level.span))
        return entry.address
    if op.plan:
        op.needed += 1
        return None
    return op.pool.pop()


def _refuse(op: RangeOp, va: int, level: Level, table: int | None, i: int, raw: int) -> None:
    entry_pa = (table or 0) + i * op.tables.esize
    entry = op.tables.mode.decode(raw, level)
    if entry.kind is EntryKind.TABLE:
        raise HugePageConflictError(
            f"a {level.name} table stands at VA {hx(va)} where a {hx(level.leaf_size)}-byte "
            f"page was asked (entry {hx(raw)} at PA {hx(entry_pa)})",
            va=va,
            level=level.number,
            existing_entry=raw,
        )
    raise AlreadyMappedError(
        f"VA {hx(va)} is already mapped at {level.name} (entry {hx(raw)} at PA {hx(entry_pa)})",
        va=va,
        existing_entry=raw,
        level=level.number,
    )


def _write_leaves(op: RangeOp, table: int, level: Level, i: int, n: int, pa0: int) -> None:
    mode, memtype = op.tables.mode, op.memtype or MemType.NORMAL

    def make(pa: int) -> int:
        return mode.encode_leaf(pa, level, op.perm, memtype)

    op.tables.put(table, i, op.tables.leaf_run(level, pa0, n, make))
