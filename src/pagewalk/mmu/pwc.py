"""The paging-structure cache: pointer entries kept so a TLB miss can skip upper levels.

Intel SDM vol. 3A §4.10.3 describes PML4/PDPTE/PDE caches, each tagged with a PCID and indexed by
the VA bits above the level, holding the next table's address and the rights ANDed and ORed so
far; Arm ARM D8.13 calls the same thing a walk cache (invalidated by TLBI VAE1 but not by the
last-level TLBI VALE1), and the RISC-V privileged spec lets SFENCE.VMA with an address leave
non-leaf entries cached. A hit hands the walker the deepest cached level; the cache is only as
fresh as its invalidations, which is exactly what makes stale-table bugs visible.
"""

from __future__ import annotations

from collections import OrderedDict

from pagewalk.formats.base import Half
from pagewalk.walk import Resume

_Key = tuple[int, int, int]  # (root register, asid, va >> level shift)


class PagingStructureCache:
    """LRU caches of pointer entries, one per level that points to a table.

    Args:
        entries: how many entries each level keeps.
    """

    def __init__(self, entries: int = 32) -> None:
        self.entries = entries
        self._levels: dict[int, OrderedDict[_Key, Resume]] = {}
        self._shift: dict[int, int] = {}
        self.hits = 0

    def lookup(self, half: Half, asid: int, va: int) -> Resume | None:
        """The deepest cached pointer for ``va`` (the walk resumes below it), or None."""
        for li in range(len(half.levels) - 2, -1, -1):
            cache = self._levels.get(li)
            if not cache:
                continue
            key = (half.root, asid, va >> half.levels[li].shift)
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
                self.hits += 1
                return hit
        return None

    def insert(self, half: Half, asid: int, li: int, va: int, below: Resume) -> None:
        """Remember the pointer entry read at level index ``li`` for ``va``."""
        cache = self._levels.setdefault(li, OrderedDict())
        self._shift[li] = half.levels[li].shift
        key = (half.root, asid, va >> half.levels[li].shift)
        cache[key] = below
        cache.move_to_end(key)
        if len(cache) > self.entries:
            cache.popitem(last=False)

    def drop(self, lo: int | None = None, hi: int | None = None, asid: int | None = None) -> int:
        """Forget pointers that translate any VA in ``[lo, hi)`` (all if None) for ``asid``.

        Returns:
            How many entries were dropped.
        """
        dropped = 0
        for li, cache in self._levels.items():
            shift = self._shift[li]
            doomed = [
                key
                for key in cache
                if (asid is None or key[1] == asid)
                and (lo is None or hi is None or _overlaps(key[2], shift, lo, hi))
            ]
            for key in doomed:
                del cache[key]
            dropped += len(doomed)
        return dropped

    def __len__(self) -> int:
        return sum(len(c) for c in self._levels.values())


def _overlaps(prefix: int, shift: int, lo: int, hi: int) -> bool:
    start = prefix << shift
    return start < hi and lo < start + (1 << shift)
