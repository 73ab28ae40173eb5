"""The unmap and protect visitors: changing leaves that exist, splitting huge pages at edges.

One idea: both go down the tables once per table and change runs of existing leaves with one
numpy operation. An unmap clears the valid leaves of the range (holes are allowed), records the
runs it unmapped (contiguous in VA and PA) and frees the tables it left empty, unless they are
shared with a clone. A protect rewrites the permission (and memory type) bits of every leaf of
the range (a hole is an error) and widens the parents to allow them; a memory-type change goes
through break-before-make (Arm ARM D8.16.1). Entry layouts follow Intel SDM vol. 3A 4.5, Arm
ARM D8.3 and the RISC-V privileged spec (Sv32-Sv57); an Arm leaf with the Access flag clear is a
mapping like any other (Arm ARM D8).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from pagewalk.errors import NotMappedError, hx
from pagewalk.formats.base import EntryKind, Level, MemType, U64Array
from pagewalk.space.descent import Span
from pagewalk.space.rangeop import RangeOp


def unmap_visit(op: RangeOp, span: Span) -> Iterator[Span]:
    """Unmap ``[span.lo, span.hi)`` in one table; yield the child tables to go on in."""
    table, li, tbase, lo, hi = span
    assert table is not None
    tables = op.tables
    level = op.half.levels[li]
    shift, size = level.shift, level.span
    i0, i1 = (lo - tbase) >> shift, (hi - 1 - tbase) >> shift
    raws = tables.slice(table, i0, i1 - i0 + 1)
    valid = (raws & np.uint64(tables.mode.present_mask)) != 0
    if li == op.last:
        if not op.plan and valid.any():
            _record(op, level, tbase + (i0 << shift), raws, valid)
            tables.put(table, i0, np.where(valid, 0, raws))
        return
    for j in np.flatnonzero(valid).tolist():
        i = i0 + j
        raw = int(raws[j])
        entry, e_lo, s_lo, s_hi, full = op.covered(table, level, i, raw, tbase, lo, hi)
        if entry.kind is EntryKind.LEAF and full:
            if not op.plan:
                op.unmapped.append((e_lo, entry.address, size))
                tables.write(table + i * tables.esize, 0)
            continue
        child = op.child(table, li, i, raw, entry, e_lo, s_lo, s_hi)
        if child is None:
            continue
        outer = op.keep_tables
        if li == 0:
            op.keep_tables = op.own.keeps(op.half.root, i)
        yield (child, li + 1, e_lo, s_lo, s_hi)
        if not op.plan and not op.keep_tables:
            _drop_if_empty(op, table, li, i, child)
        op.keep_tables = outer


def _drop_if_empty(op: RangeOp, table: int, li: int, i: int, child: int) -> None:
    n = op.half.levels[li + 1].entries
    tables = op.tables
    present = np.uint64(tables.mode.present_mask)
    if child in op.own.owned and not (tables.slice(child, 0, n) & present).any():
        tables.write(table + i * tables.esize, 0)
        op.own.free(child)
        op.tables_freed = True


def _record(op: RangeOp, level: Level, base: int, raws: U64Array, valid: Any) -> None:
    """Append the unmapped runs of a leaf-table slice (contiguous in VA and PA)."""
    idx = np.flatnonzero(valid)
    pas = op.tables.mode.np_address(raws[idx], level, leaf=True)
    span = level.leaf_size
    breaks = np.flatnonzero((np.diff(idx) != 1) | (np.diff(pas) != np.uint64(span))) + 1
    for run in np.split(np.arange(idx.size), breaks):
        first = int(run[0])
        op.unmapped.append((base + int(idx[first]) * span, int(pas[first]), int(run.size) * span))


def protect_visit(op: RangeOp, span: Span) -> Iterator[Span]:
    """Reprotect ``[span.lo, span.hi)`` in one table; yield the child tables to go on in."""
    table, li, tbase, lo, hi = span
    assert table is not None
    mode, tables = op.tables.mode, op.tables
    level = op.half.levels[li]
    shift, size = level.shift, level.span
    i0, i1 = (lo - tbase) >> shift, (hi - 1 - tbase) >> shift
    raws = tables.slice(table, i0, i1 - i0 + 1)
    holes = np.flatnonzero((raws & np.uint64(mode.present_mask)) == 0)
    if holes.size:
        hole = max(lo, tbase + ((i0 + int(holes[0])) << shift))
        raise NotMappedError(f"VA {hx(hole)} is not mapped ({op.op} needs it)", va=hole)
    if li == op.last:
        if not op.plan:
            new = _reprotect(op, raws, level)
            if _retyped(op, raws, new, level):
                op.announce.brk(table, i0, raws.size, tbase + (i0 << shift), raws.size << shift)
            tables.put(table, i0, new)
        return
    for i in range(i0, i1 + 1):
        raw = int(raws[i - i0])
        entry, e_lo, s_lo, s_hi, full = op.covered(table, level, i, raw, tbase, lo, hi)
        if entry.kind is EntryKind.LEAF and full:
            if not op.plan:
                one = np.array([raw], dtype=np.uint64)
                new = _reprotect(op, one, level)
                if _retyped(op, one, new, level):
                    op.announce.brk(table, i, 1, e_lo, size)
                tables.write(table + i * tables.esize, int(new[0]))
            continue
        child = op.child(table, li, i, raw, entry, e_lo, s_lo, s_hi)
        if child is None:
            continue
        if entry.kind is EntryKind.TABLE and not op.plan:
            wider = mode.widen_table(raw, level, op.perm)
            if wider != raw:
                tables.write(table + i * tables.esize, wider)
                op.widened.append((e_lo, size))
        yield (child, li + 1, e_lo, s_lo, s_hi)


def _retyped(op: RangeOp, old: U64Array, new: U64Array, level: Level) -> bool:
    """Whether a protect changes the memory type of any entry (a BBM case on Arm)."""
    mask = np.uint64(op.tables.mode.memtype_mask(level))
    return op.announce.bbm is not None and bool(((old ^ new) & mask).any())


def _reprotect(op: RangeOp, raws: U64Array, level: Level) -> U64Array:
    mode = op.tables.mode
    mask = mode.perm_mask(level)
    if op.memtype is not None:
        mask |= mode.memtype_mask(level)
    flags = mode.encode_leaf(0, level, op.perm, op.memtype or MemType.NORMAL)
    out: U64Array = (raws & np.uint64(~mask & (2**64 - 1))) | np.uint64(flags & mask)
    return out
