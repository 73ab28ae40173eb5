"""Page-table accounting: tables per level and their bytes, leaves per size, and what huge pages
would save.

Each distinct table is counted once (shared kernel halves are memory used once). A table whose
every entry is a valid leaf, with physically contiguous frames starting at an address aligned to
the level above's leaf size and with identical attribute bits, could be replaced by one leaf one
level up (x86: a PT by a 2-MByte PDE, a PD of 2-MByte pages by a 1-GByte PDPTE, Intel SDM vol. 3A
§4.5 tables 4-17/4-15; Arm ARM D8.3 blocks): its bytes are the saving reported, exactly.

The count uses the distinct-table visitor (:mod:`pagewalk.inspect.tables`), so its cost follows
the distinct tables whatever the dump says; tables reached through several entries, recursive
entries and tables partly outside the image are reported (once each).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pagewalk.enumerate_runs import PartialTable, TableReader
from pagewalk.formats.base import PagingMode
from pagewalk.inspect.tables import Tables, Visit


@dataclass
class LevelStats:
    """Counts for one level name."""

    name: str
    tables: int = 0
    bytes: int = 0
    valid_entries: int = 0
    leaves: int = 0
    leaf_size: int = 0
    promotable: int = 0
    promote_to: int = 0


@dataclass
class Stats:
    """The whole report."""

    levels: dict[str, LevelStats] = field(default_factory=dict)
    leaves_by_size: dict[int, int] = field(default_factory=dict)
    #: tables reached through more than one entry (counted once in ``levels``)
    shared_tables: int = 0
    #: entries that point to their own table
    recursive_entries: int = 0
    #: tables partly outside the image (their missing entries count as not present)
    partial: list[PartialTable] = field(default_factory=list)

    @property
    def table_bytes(self) -> int:
        """Bytes of all tables."""
        return sum(s.bytes for s in self.levels.values())

    def savings(self) -> dict[int, int]:
        """Bytes that promoting full, contiguous tables would free, by target page size."""
        out: dict[int, int] = {}
        for s in self.levels.values():
            if s.promotable:
                per = s.bytes // max(s.tables, 1)
                out[s.promote_to] = out.get(s.promote_to, 0) + s.promotable * per
        return out

    def to_json(self) -> dict[str, Any]:
        """The report as JSON."""
        return {
            "levels": [vars(s) for s in self.levels.values()],
            "table_bytes": self.table_bytes,
            "leaves_by_size": {str(k): v for k, v in sorted(self.leaves_by_size.items())},
            "savings": {str(k): v for k, v in sorted(self.savings().items())},
            "shared_tables": self.shared_tables,
            "recursive_entries": self.recursive_entries,
            "partial_tables": [p.to_json() for p in self.partial],
        }


def stats(mem: TableReader, mode: PagingMode, roots: Sequence[int]) -> Stats:
    """Count every table reachable from the roots."""
    out = Stats()
    tables = Tables(mem, mode, roots)
    for visit in tables.visit():
        _count(out, mode, visit)
    out.shared_tables = len(tables.shared())
    out.recursive_entries = sum(e.count for e in tables.events if e.kind == "recursive")
    out.partial = list(tables.partial.values())
    return out


def _count(out: Stats, mode: PagingMode, visit: Visit) -> None:
    level = visit.level
    s = out.levels.setdefault(level.name, LevelStats(level.name))
    s.tables += 1
    size = level.entries * mode.entry_size
    # the alignment (a PAE PDPT's 32 bytes in a page; concatenated stage-2 roots) is the root's
    s.bytes += max(size, visit.half.table_align) if visit.depth == 0 else size
    raws = visit.raws
    valid = raws[(raws & np.uint64(mode.present_mask)) != 0]
    s.valid_entries += int(valid.size)
    if not valid.size or not level.leaf_size:
        return
    leaf = mode.np_is_leaf(valid, level)
    n = int(leaf.sum())
    s.leaves += n
    s.leaf_size = level.leaf_size
    if n:
        out.leaves_by_size[level.leaf_size] = out.leaves_by_size.get(level.leaf_size, 0) + n
    parent = visit.half.levels[visit.depth - 1] if visit.depth else None
    if parent is not None and parent.leaf_size and _promotable(mode, visit, valid, leaf):
        s.promotable += 1
        s.promote_to = parent.leaf_size


def _promotable(mode: PagingMode, visit: Visit, valid: Any, leaf: Any) -> bool:
    level = visit.level
    if valid.size != level.entries or not leaf.all():
        return False
    addr = mode.np_address(valid, level, True)
    step = np.uint64(level.leaf_size)
    parent_size = visit.half.levels[visit.depth - 1].leaf_size
    if int(addr[0]) % parent_size or not bool((np.diff(addr) == step).all()):
        return False
    keys = valid & np.uint64(~mode.address_mask(level, True) & ((1 << 64) - 1))
    return bool((keys == keys[0]).all())
