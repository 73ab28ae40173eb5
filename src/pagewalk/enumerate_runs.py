"""What an enumeration reads and what it yields: whole tables from an untrusted dump, and ranges.

Enumeration (:mod:`pagewalk.enumerate`) reads each table with one call through a
:class:`TableReader`. A table partly outside RAM (past the end of the image, across a segment
boundary) is read entry by entry, as the walker reads it (Intel SDM vol. 3A ch. 4; Arm ARM D8;
RISC-V privileged spec): the entries in RAM count, the missing ones map nothing and are kept as a
:class:`PartialTable`. What comes out is a :class:`Mapping` per merged range, and the counts of
:class:`EnumStats`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from pagewalk.errors import hx
from pagewalk.formats.base import Level, MemType, Perm, U64Array
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


@dataclass(frozen=True)
class PartialTable:
    """A table only part of which lies in RAM.

    Attributes:
        pa: the table's physical address.
        level: the level it was read at.
        entry_size: bytes per entry.
        missing: runs ``[first, end)`` of entry indices that are not in RAM.
    """

    pa: int
    level: Level
    entry_size: int
    missing: tuple[tuple[int, int], ...]

    def missing_pas(self) -> list[tuple[int, int]]:
        """The missing runs as ``[lo, hi)`` physical ranges."""
        return [
            (self.pa + a * self.entry_size, self.pa + b * self.entry_size) for a, b in self.missing
        ]

    def message(self) -> str:
        """One sentence: which table, which level, which entries are missing."""
        n = sum(b - a for a, b in self.missing)
        spans = ", ".join(
            f"{hx(lo)}-{hx(hi)} (entries {a}-{b - 1})"
            for (lo, hi), (a, b) in zip(self.missing_pas(), self.missing, strict=True)
        )
        lv = self.level
        return (
            f"table at {hx(self.pa)} (level {lv.number}, {lv.name}) lies partly outside the "
            f"image: {n} of its {lv.entries} entries are not in it, at {spans}; walks through "
            "them fault, so they map nothing"
        )

    def to_json(self) -> dict[str, Any]:
        """``{"pa", "level", "missing": [[lo, hi], ...]}``."""
        return {
            "pa": self.pa,
            "level": self.level.name,
            "missing": [list(r) for r in self.missing_pas()],
        }


def read_entries(
    mem: TableReader, pa: int, n: int, entry_size: int
) -> tuple[U64Array, npt.NDArray[np.bool_] | None]:
    """``n`` entries from ``pa``: one read when they all lie in one RAM segment, else entry by
    entry (as a walk reads them: a table may span two segments that meet in PA), the entries
    outside RAM as 0 (not present).

    Returns:
        The entries, and which of them are in RAM (None: all).
    """
    if mem.is_ram(pa, n * entry_size):
        return mem.read_table(pa, n, entry_size), None
    pas = np.uint64(pa) + np.arange(n, dtype=np.uint64) * np.uint64(entry_size)
    ok = mem.is_ram_array(pas, entry_size)
    raws = np.zeros(n, dtype=np.uint64)
    if ok.any():
        raws[ok] = mem.gather(pas[ok], entry_size)
    return raws, None if ok.all() else ok


def missing_runs(ok: npt.NDArray[np.bool_], first: int = 0) -> tuple[tuple[int, int], ...]:
    """Runs ``[a, b)`` of False in ``ok``, as indices offset by ``first``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], (~ok).astype(np.int8), [0]))))
    return tuple(
        (first + int(a), first + int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)
    )


@dataclass
class EnumStats:
    """What an enumeration did.

    ``runs`` counts ranges as tables produce them (before merging across tables; replays of
    shared subtrees included): the measure ``limit`` bounds. ``partial`` holds every table
    found partly outside RAM, by (PA, level number).
    """

    tables: int = 0
    entries: int = 0
    leaves: int = 0
    memo_hits: int = 0
    bad_tables: int = 0
    faulty_entries: int = 0
    pruned: int = 0
    runs: int = 0
    partial: dict[tuple[int, int], PartialTable] = field(default_factory=dict)
