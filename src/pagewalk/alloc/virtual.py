"""The virtual-range allocator: one per address space, holes kept in balanced trees.

Follows seeds/comus-memory.md (a virtual address allocator with ``virtaddr_alloc`` and
``virtaddr_take``; Comus keeps a linked list) and Redox's hole list (best fit indexed by size),
with two balanced trees instead of lists so every operation stays O(log n) with 100,000 live
ranges: holes by address (each subtree knowing its largest hole, for first fit) and holes by
size (for best fit). ``take`` claims a fixed range, ``free`` coalesces with neighbouring holes.
Optional guard pages stay unmapped around each allocated range, and page 0 is never handed out
unless the allocator is told it may be (a null pointer must fault).
"""

from __future__ import annotations

from collections.abc import Iterator

from pagewalk.alloc._treap import Treap
from pagewalk.errors import AllocatorError, MisalignedAddressError, OutOfMemoryError, hx

#: candidates tried for an exact fit before falling back to a hole that fits any alignment
_ALIGN_TRIES = 32


class VirtualRangeAllocator:
    """Hands out page-aligned virtual ranges of ``[start, end)``.

    Args:
        start: lowest managed VA (page aligned).
        end: one past the highest managed VA (page aligned).
        page_size: the granule; sizes and alignments are multiples of it.
        guard_pages: unmapped pages kept free on each side of every ``alloc``.
        allow_page_zero: let page 0 be handed out (it is held back otherwise).
        best_fit: the default strategy of :meth:`alloc` (first fit when False).

    Raises:
        AllocatorError: for an empty or unaligned space, a page size that is not a power of two
            or a negative guard count.
    """

    def __init__(
        self,
        start: int,
        end: int,
        *,
        page_size: int = 4096,
        guard_pages: int = 0,
        allow_page_zero: bool = False,
        best_fit: bool = False,
    ) -> None:
        if page_size <= 0 or page_size & (page_size - 1):
            raise AllocatorError(f"page size {hx(page_size)} is not a power of two")
        if start % page_size or end % page_size or not 0 <= start < end:
            raise AllocatorError(f"VA space {hx(start)}-{hx(end)} is not whole pages")
        if guard_pages < 0:
            raise AllocatorError(f"guard_pages {guard_pages} is negative")
        self.start, self.end, self.page_size = start, end, page_size
        self.guard = guard_pages * page_size
        self.best_fit = best_fit
        self._by_addr = Treap(seed=1)
        self._by_size = Treap(seed=2)
        self._live: dict[int, tuple[int, int, int]] = {}
        self._free_bytes = 0
        low = page_size if start == 0 and not allow_page_zero else start
        if end > low:
            self._add_hole(low, end)

    # -------------------------------------------------------------------- holes
    def _add_hole(self, lo: int, hi: int) -> None:
        self._by_addr.insert(lo, hi - lo)
        self._by_size.insert((hi - lo) << 64 | lo, 0)
        self._free_bytes += hi - lo

    def _drop_hole(self, lo: int, size: int) -> None:
        self._by_addr.delete(lo)
        self._by_size.delete(size << 64 | lo)
        self._free_bytes -= size

    def _claim(self, hole: int, size: int, lo: int, hi: int) -> None:
        """Take ``[lo, hi)`` out of the hole ``[hole, hole + size)``."""
        self._drop_hole(hole, size)
        if lo > hole:
            self._add_hole(hole, lo)
        if hole + size > hi:
            self._add_hole(hi, hole + size)

    def _fit(self, hole: int, size: int, need: int, align: int) -> int | None:
        """Start of the claimed span (guards included) if it fits in the hole aligned."""
        lo = -(-(hole + self.guard) // align) * align - self.guard
        return lo if lo + need <= hole + size else None

    def _candidates(self, want: int, best: bool) -> Iterator[tuple[int, int]]:
        """Holes of at least ``want`` bytes: by address (first fit) or by size (best fit)."""
        if best:
            cursor = want << 64
            while (entry := self._by_size.ceiling(cursor)) is not None:
                cursor = entry[0] + 1
                yield entry[0] & ((1 << 64) - 1), entry[0] >> 64
        else:
            key = 0
            while (found := self._by_addr.first_at_least(want, key)) is not None:
                key = found[0] + 1
                yield found

    def _find(self, need: int, align: int, best: bool) -> tuple[int, int, int] | None:
        """``(hole, hole size, claim start)`` of the hole chosen for ``need`` bytes.

        The first :data:`_ALIGN_TRIES` candidates must fit once aligned; after that the search
        asks for ``need + align - page`` bytes, which fit under any alignment, so a call never
        walks more than a bounded number of holes.
        """
        for tries, (hole, size) in enumerate(self._candidates(need, best)):
            lo = self._fit(hole, size, need, align)
            if lo is not None:
                return hole, size, lo
            if tries >= _ALIGN_TRIES:
                break
        for hole, size in self._candidates(need + align - self.page_size, best):
            lo = self._fit(hole, size, need, align)
            return (hole, size, lo) if lo is not None else None
        return None

    # -------------------------------------------------------------------- checks
    def _check(self, va: int, size: int, what: str, *, placed: bool = True) -> None:
        if size <= 0:
            raise AllocatorError(f"cannot {what} {size} bytes at VA {hx(va)}: size must be > 0")
        if va % self.page_size or size % self.page_size:
            raise MisalignedAddressError(
                f"cannot {what} VA {hx(va)}+{hx(size)}: not aligned to {hx(self.page_size)} pages"
            )
        if placed and (va < self.start or va + size > self.end):
            raise AllocatorError(
                f"cannot {what} VA {hx(va)}-{hx(va + size - 1)}: outside the managed space "
                f"{hx(self.start)}-{hx(self.end - 1)}"
            )

    # -------------------------------------------------------------------- API
    def alloc(self, size: int, align: int | None = None, *, best_fit: bool | None = None) -> int:
        """Claim ``size`` bytes aligned to ``align`` (a page by default), with guard pages.

        Args:
            size: bytes, a positive multiple of the page size.
            align: a power-of-two multiple of the page size.
            best_fit: override the allocator's default strategy for this call.

        Returns:
            The VA of the usable range (guards lie just outside it).

        Raises:
            AllocatorError: for a zero size or a bad alignment.
            MisalignedAddressError: for a size that is not whole pages.
            OutOfMemoryError: if no hole fits; nothing changes.
        """
        align = self.page_size if align is None else align
        if align < self.page_size or align & (align - 1):
            raise AllocatorError(f"alignment {hx(align)} is not a power of two of whole pages")
        self._check(self.start, size, "allocate", placed=False)
        need = size + 2 * self.guard
        best = self.best_fit if best_fit is None else best_fit
        found = self._find(need, align, best)
        if found is None:
            raise OutOfMemoryError(
                f"no free virtual range of {hx(size)} bytes aligned to {hx(align)} in "
                f"{hx(self.start)}-{hx(self.end - 1)}"
            )
        hole, hole_size, lo = found
        self._claim(hole, hole_size, lo, lo + need)
        va = lo + self.guard
        self._live[va] = (size, lo, lo + need)
        return va

    def take(self, va: int, size: int) -> int:
        """Claim the fixed range ``[va, va + size)`` (no guard pages).

        Raises:
            AllocatorError: if any part of the range is in use (naming the first such VA), or
                for a zero size or a range outside the space.
            MisalignedAddressError: for an unaligned VA or size.
        """
        self._check(va, size, "take")
        hole = self._by_addr.floor(va)
        if hole is None or hole[0] + hole[1] < va + size:
            busy = va if hole is None or hole[0] + hole[1] <= va else hole[0] + hole[1]
            zero = " (page 0 is held back)" if busy < self.page_size else ""
            raise AllocatorError(
                f"cannot take VA {hx(va)}-{hx(va + size - 1)}: {hx(busy)} is in use{zero}"
            )
        self._claim(hole[0], hole[1], va, va + size)
        self._live[va] = (size, va, va + size)
        return va

    def free(self, va: int, size: int) -> None:
        """Release a range given by :meth:`alloc` or :meth:`take`, merging neighbouring holes.

        Raises:
            AllocatorError: if ``[va, va + size)`` is not exactly a live range; nothing changes.
        """
        self._check(va, size, "free")
        live = self._live.get(va)
        if live is None or live[0] != size:
            held = "" if live is None else f" (the live range there is {hx(live[0])} bytes)"
            raise AllocatorError(
                f"cannot free VA {hx(va)}-{hx(va + size - 1)}: not a live range{held}"
            )
        del self._live[va]
        _, lo, hi = live
        before = self._by_addr.floor(lo - 1) if lo > 0 else None
        if before is not None and before[0] + before[1] == lo:
            self._drop_hole(*before)
            lo = before[0]
        after = self._by_addr.get(hi)
        if after is not None:
            self._drop_hole(hi, after)
            hi += after
        self._add_hole(lo, hi)

    # -------------------------------------------------------------------- views
    def holes(self) -> Iterator[tuple[int, int]]:
        """Free ranges ``(va, size)`` in address order."""
        return self._by_addr.items()

    def live(self) -> Iterator[tuple[int, int]]:
        """Live ranges ``(va, size)`` (guards excluded) in address order."""
        return iter(sorted((va, rng[0]) for va, rng in self._live.items()))

    def __len__(self) -> int:
        return len(self._live)

    @property
    def free_bytes(self) -> int:
        """Bytes in holes (page 0 excluded when held back)."""
        return self._free_bytes
