"""Table-frame ownership: which table frames a space allocated, may free, and shares.

One idea: a space allocates its table frames all or nothing (every frame an operation may need
comes before any write), zeroes them, frees only the frames it owns, and counts the clones that
share each of its root entries (or whole roots) so that nothing below a shared entry is freed
while a clone still points there. Every frame must lie where the mode can point to it: below
:func:`table_limit`, and a root below what the root register holds (32 bits for 32-bit x86 and
PAE's CR3, Intel SDM vol. 3A 4.3 and 4.4.1; Arm ARM D8.2 TTBRn_EL1 and the RISC-V privileged
spec's satp hold wider roots).
"""

from __future__ import annotations

import weakref
from collections import Counter

from pagewalk.alloc.base import FRAME_SIZE, FrameAllocator
from pagewalk.errors import (
    OutOfMemoryError,
    PagingError,
    PhysicalAddressTooWideError,
    hx,
)
from pagewalk.formats.base import PagingMode, Perm
from pagewalk.space.tables import Tables

_TABLE_LIMITS: weakref.WeakKeyDictionary[PagingMode, int] = weakref.WeakKeyDictionary()


def table_limit(mode: PagingMode) -> int:
    """The PA below which a table can be pointed to from every level that points to tables.

    Found once per mode with the codec's own ``encode_table`` (a binary search on the width), so
    it is the codec's rule: 4 GiB for 32-bit x86's 32-bit PDEs, MAXPHYADDR elsewhere.
    """
    if mode in _TABLE_LIMITS:
        return _TABLE_LIMITS[mode]
    size = max(FRAME_SIZE, mode.page_size)
    limit = 1 << 64
    for half in mode.halves:
        for level in half.levels[:-1]:
            lo, hi = (
                size.bit_length() - 1,
                64,
            )  # the widest 2**b whose last frame encodes
            while lo < hi:
                mid = (lo + hi + 1) // 2
                try:
                    mode.encode_table((1 << mid) - size, level, Perm.NONE)
                    lo = mid
                except PagingError:
                    hi = mid - 1
            limit = min(limit, 1 << lo)
    _TABLE_LIMITS[mode] = limit
    return limit


class Ownership:
    """The table frames of one space: where they come from, which it owns, which it shares."""

    def __init__(self, tables: Tables, allocator: FrameAllocator) -> None:
        self.tables = tables
        #: where table frames come from and go back to
        self.allocator = allocator
        #: the table frames this space may free
        self.owned: set[int] = set()
        #: root entries (root register, index) or whole roots (register, -1) shared by clones,
        #: with how many clones share them: tables below are not freed while a clone points there
        self.shared: Counter[tuple[int, int]] = Counter()

    def alloc(self, n: int, n_roots: int = 0) -> list[int]:
        """Allocate and zero ``n`` table frames, all or nothing (not yet owned).

        The first ``n_roots`` (the lowest) are for root tables.
        """
        if not n:
            return []  # the common case of an edit that needs no new table: no limit lookup
        mode, size = self.tables.mode, self.tables.table_bytes
        got: list[int] = []
        try:
            for _ in range(n):
                got.append(self.allocator.allocate(size // FRAME_SIZE, size))
        except OutOfMemoryError as exc:
            self.give_back(got)
            raise OutOfMemoryError(
                f"out of frames: needed {n} table frame(s), got {len(got)}; nothing changed ({exc})"
            ) from None
        if n_roots:  # the lowest frames become the roots; the rest keep the allocator's order
            low = sorted(got)[:n_roots]
            lows = set(low)
            got = low + [pa for pa in got if pa not in lows]
        tables = table_limit(mode)
        for i, pa in enumerate(got):
            limit, what = tables, "table"
            if i < n_roots:
                limit, what = min(limit, 1 << mode.root_bits), "root table"
            if pa + size > limit:
                self.give_back(got)
                raise PhysicalAddressTooWideError(
                    f"the frame allocator gave PA {hx(pa)} for a {what}, but mode "
                    f"{mode.name} can only point to tables below {hx(limit)}; nothing "
                    "changed (give the space an allocator whose frames lie lower)"
                )
        ordered = sorted(got)
        start = 0
        for j in range(1, len(ordered) + 1):  # zero each run of adjacent frames at once
            if j == len(ordered) or ordered[j] != ordered[j - 1] + size:
                self.tables.mem.zero(ordered[start], ordered[j - 1] + size - ordered[start])
                start = j
        return got

    def alloc_owned(self, n: int, n_roots: int = 0) -> list[int]:
        """:meth:`alloc`, and the frames become this space's."""
        got = self.alloc(n, n_roots)
        self.owned.update(got)
        return got

    def give_back(self, frames: list[int]) -> None:
        """Return frames that were never owned (an allocation that failed part way)."""
        for pa in frames:
            self.allocator.free(pa, self.tables.table_bytes // FRAME_SIZE)

    def free(self, pa: int) -> bool:
        """Free the table frame at ``pa`` if this space owns it; whether it did."""
        if pa not in self.owned:
            return False
        self.owned.discard(pa)
        self.allocator.free(pa, self.tables.table_bytes // FRAME_SIZE)
        return True

    def free_all(self) -> None:
        """Free every owned table frame, lowest first."""
        for pa in sorted(self.owned):
            self.allocator.free(pa, self.tables.table_bytes // FRAME_SIZE)
        self.owned.clear()

    def keeps(self, r: int, i: int) -> bool:
        """Whether root entry ``i`` of root ``r`` is shared with a clone (tables stay)."""
        return (r, -1) in self.shared or (r, i) in self.shared

    def unshare(self, key: tuple[int, int]) -> bool:
        """One clone stopped sharing ``key``; True when it was the last one."""
        self.shared[key] -= 1
        if self.shared[key] > 0:
            return False
        del self.shared[key]
        return True
