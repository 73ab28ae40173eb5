"""One range operation in progress, and how it gets past a huge page it only partly covers.

One idea: a range operation (map, unmap, protect) runs twice over the same tables: a *plan*
pass that only reads (finding conflicts, holes and broken entries, and counting the table
frames it will need), then, after every frame is allocated, a *write* pass. :class:`RangeOp`
carries what the two passes share. A huge page (a leaf above the last level: x86 2 MiB/1 GiB
pages, Intel SDM vol. 3A 4.5; Arm blocks, Arm ARM D8.3; RISC-V mega/giga/terapages) that the
range covers only in part is *split*: the leaf is replaced by a table of leaves one level down
with the same attributes (``PagingMode.resize_leaf``), filled before it is linked, with the
break of break-before-make first when it is set (Arm ARM D8.16.1: a block split changes the
size of a live translation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pagewalk.formats.base import Entry, EntryKind, Half, Level, MemType, Perm
from pagewalk.space.announce import Announcer
from pagewalk.space.ownership import Ownership
from pagewalk.space.tables import Tables


@dataclass
class RangeOp:
    """The state of one range operation, shared by its plan and write passes."""

    tables: Tables
    own: Ownership
    announce: Announcer
    half: Half
    op: str
    plan: bool = True
    perm: Perm = Perm.NONE
    memtype: MemType | None = MemType.NORMAL
    #: PA minus VA of a map
    delta: int = 0
    #: the page sizes a map may use
    sizes: frozenset[int] = frozenset()
    #: table frames the write pass needs (counted by the plan pass)
    needed: int = 0
    #: the frames allocated for the write pass
    pool: list[int] = field(default_factory=list)
    widened: list[tuple[int, int]] = field(default_factory=list)
    unmapped: list[tuple[int, int, int]] = field(default_factory=list)
    tables_freed: bool = False
    #: inside a subtree shared with a clone: its tables are never freed
    keep_tables: bool = False
    #: the index of the leaf-table level
    last: int = field(init=False)

    def __post_init__(self) -> None:
        self.last = len(self.half.levels) - 1

    def covered(
        self, table: int, level: Level, i: int, raw: int, tbase: int, lo: int, hi: int
    ) -> tuple[Entry, int, int, int, bool]:
        """Entry ``i`` decoded, its VA span, the part of ``[lo, hi)`` in it, and whether all.

        Raises on a broken entry; an Arm leaf with AF=0 is a normal mapping (access tracking).
        """
        e_lo = tbase + (i << level.shift)
        s_lo, s_hi = max(lo, e_lo), min(hi, e_lo + level.span)
        entry = self.tables.mode.decode_cached(raw, level)
        if entry.fault is not None and entry.fault != "access-flag":
            raise self.tables.broken(level, table + i * self.tables.esize, raw, entry.reason)
        return entry, e_lo, s_lo, s_hi, s_lo == e_lo and s_hi == e_lo + level.span

    def child(
        self,
        table: int,
        li: int,
        i: int,
        raw: int,
        entry: Entry,
        e_lo: int,
        s_lo: int,
        s_hi: int,
    ) -> int | None:
        """The table below entry ``i`` that a range operation goes on in. A leaf the range
        only partly covers is split first (the plan pass only counts the tables: None)."""
        if entry.kind is not EntryKind.LEAF:
            return entry.address
        if self.plan:
            self.needed += self._plan_split(li, raw, entry.address, s_lo, s_hi)
            return None
        return self._split(table, li, i, raw, e_lo)

    def _split(self, table: int, li: int, i: int, raw: int, va: int) -> int:
        """Replace the leaf ``raw`` at entry ``i`` (mapping ``va``) by a table of smaller
        leaves that map the same; return it. The new table is filled before it is linked."""
        mode, tables = self.tables.mode, self.tables
        level, child_level = self.half.levels[li], self.half.levels[li + 1]
        entry = mode.decode(raw, level)
        child = self.pool.pop()

        def make(pa: int) -> int:
            return mode.resize_leaf(raw, level, child_level, pa)

        tables.put(
            child,
            0,
            tables.leaf_run(child_level, entry.address, child_level.entries, make),
        )
        parent = mode.encode_table(child, level, entry.perm | self.perm)
        self.announce.brk(table, i, 1, va, level.span)
        tables.write(table + i * tables.esize, parent)
        return child

    def _plan_split(self, li: int, raw: int, pa: int, lo: int, hi: int) -> int:
        """Check that the leaf ``raw`` at level ``li`` can be split; return the tables needed.

        The first and last child leaves are encoded now, so a split the format cannot express
        (a PSE-36 page above 4 GiB into 4 KiB pages, say) fails before anything is written.
        """
        level, child = self.half.levels[li], self.half.levels[li + 1]
        for child_pa in (pa, pa + level.leaf_size - child.leaf_size):
            self.tables.mode.resize_leaf(raw, level, child, child_pa)
        return split_need(self.half, li, lo, hi)


def split_need(half: Half, li: int, lo: int, hi: int) -> int:
    """Tables needed to split the leaf at level ``li`` around ``[lo, hi)``.

    A split cascades: in the new table, the entries ``[lo, hi)`` covers only in part (one at
    each edge at most) are split again, down to the last level.
    """
    need, todo = 0, [(li, lo, hi)]
    last = len(half.levels) - 1
    while todo:
        li, lo, hi = todo.pop()
        need += 1
        child_li = li + 1
        if child_li == last:
            continue
        cspan = half.levels[child_li].span
        edges = {lo // cspan} if lo % cspan else set()
        if hi % cspan:
            edges.add((hi - 1) // cspan)
        for e in edges:
            todo.append((child_li, max(lo, e * cspan), min(hi, (e + 1) * cspan)))
    return need
