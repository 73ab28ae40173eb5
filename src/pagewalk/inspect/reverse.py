"""The reverse map: every virtual address that maps a physical address, from an index built once.

The index is the merged mapping list sorted by physical start, with a running maximum of the
physical ends, so a lookup is two binary searches plus a scan of the ranges that can overlap
(numpy, no Python loop over the whole list). Translation itself follows the walker (Intel SDM
vol. 3A ch. 4, Arm ARM D8, RISC-V privileged spec); this only inverts its output.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pagewalk.enumerate_runs import Mapping


@dataclass(frozen=True)
class Alias:
    """One virtual address of a physical address, with the range it comes from."""

    va: int
    mapping: Mapping


class ReverseMap:
    """Physical-to-virtual lookups over a list of mappings.

    Args:
        rows: the mappings (any order).
    """

    def __init__(self, rows: Iterable[Mapping]) -> None:
        self.rows = sorted(rows, key=lambda m: (m.pa, m.va))
        self._lo = np.array([m.pa for m in self.rows], dtype=np.uint64)
        his = np.array([m.pa + m.size for m in self.rows], dtype=np.uint64)
        self._hi = his
        self._reach = np.maximum.accumulate(his) if his.size else his

    def _candidates(self, lo: int, hi: int) -> list[int]:
        """Indices of ranges overlapping ``[lo, hi)``."""
        if not self.rows:
            return []
        first = int(np.searchsorted(self._reach, np.uint64(lo), side="right"))
        last = int(np.searchsorted(self._lo, np.uint64(hi), side="left"))
        if first >= last:
            return []
        hit = self._hi[first:last] > np.uint64(lo)
        return (np.flatnonzero(hit) + first).tolist()

    def overlapping(self, lo: int, hi: int) -> list[Mapping]:
        """The mappings whose physical range overlaps ``[lo, hi)``."""
        return [self.rows[i] for i in self._candidates(lo, hi)]

    def lookup(self, pa: int) -> list[Alias]:
        """Every VA that maps ``pa``, in VA order."""
        out = [Alias(m.va + (pa - m.pa), m) for m in self.overlapping(pa, pa + 1)]
        return sorted(out, key=lambda a: a.va)

    def __len__(self) -> int:
        return len(self.rows)
