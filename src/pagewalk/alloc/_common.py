"""Helpers every frame allocator shares: argument checks, run search, and a set of ranges.

The run search finds the first run of ``n`` free frames whose first frame index is a multiple
of the alignment, with numpy prefix sums over a window instead of a Python loop per frame, so a
request for 512 frames aligned to 2 MiB really returns a 2 MiB-aligned PA (Intel SDM vol. 3A
§4.5: a 2 MiB page's frame must be 2 MiB aligned). :class:`RangeSet` keeps disjoint frame ranges
sorted for the allocators whose bookkeeping is ranges rather than per-frame state.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from pagewalk.alloc.base import FRAME_SIZE
from pagewalk.errors import AllocatorError, OutOfMemoryError, hx

BoolArray = npt.NDArray[np.bool_]
#: frames searched per numpy step; large enough to amortise the call, small enough for caches
WINDOW = 1 << 18


def check_request(n_frames: int, align: int) -> int:
    """Check an ``allocate`` request and return the alignment in frames.

    Raises:
        AllocatorError: for a count below one or an alignment that is not a power of two of at
            least one frame.
    """
    if not isinstance(n_frames, int) or n_frames < 1:
        raise AllocatorError(f"cannot allocate {n_frames!r} frames: the count must be at least 1")
    if align < FRAME_SIZE or align & (align - 1):
        raise AllocatorError(
            f"alignment {hx(align)} is not a power of two of at least {hx(FRAME_SIZE)}"
        )
    return align // FRAME_SIZE


def check_frame_range(pa: int, n_frames: int, verb: str) -> int:
    """Check a ``free``/``share`` argument and return the first frame index.

    Raises:
        AllocatorError: for an unaligned PA or a count below one.
    """
    if pa < 0 or pa % FRAME_SIZE:
        raise AllocatorError(f"cannot {verb} PA {hx(pa)}: it is not a 4 KiB-aligned frame")
    if n_frames < 1:
        raise AllocatorError(f"cannot {verb} {n_frames} frames at PA {hx(pa)}")
    return pa // FRAME_SIZE


def out_of_memory(n_frames: int, align: int, where: str) -> OutOfMemoryError:
    """The error every allocator raises when a request cannot be met."""
    return OutOfMemoryError(f"no run of {n_frames} free frame(s) aligned to {hx(align)} in {where}")


def first_run(free: BoolArray, base: int, n: int, align: int) -> int | None:
    """Index (absolute frame number) of the first aligned run of ``n`` free frames, or None.

    Args:
        free: True where a frame is free; ``free[0]`` is frame ``base``.
        base: frame number of ``free[0]``.
        n: frames wanted.
        align: alignment in frames (a power of two).
    """
    first = (-base) % align
    last = free.size - n
    if first > last:
        return None
    starts = np.arange(first, last + 1, align)
    if n == 1:
        ok = free[starts]
    else:
        used = np.empty(free.size + 1, dtype=np.int64)
        used[0] = 0
        np.cumsum(~free, out=used[1:])
        ok = used[starts + n] == used[starts]
    hits = np.flatnonzero(ok)
    return base + int(starts[hits[0]]) if hits.size else None


def search_windows(lo: int, hi: int, n: int, align: int) -> Iterator[tuple[int, int]]:
    """Windows ``[a, b)`` covering ``[lo, hi)`` that overlap enough to see every aligned run."""
    step = max(WINDOW, align)
    a = lo
    while a < hi:
        b = min(hi, a + step + n + align)
        yield a, b
        a += step


class RangeSet:
    """Disjoint half-open frame ranges ``[start, end)``, sorted, neighbours merged on insert.

    Lookups are binary searches. Inserting a range that does not merge shifts the sorted list
    (a C memmove), which stays cheap because freed neighbours merge back into few ranges.
    """

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: dict[int, int] = {}
        self.count = 0

    def __len__(self) -> int:
        return len(self._starts)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((s, self._ends[s]) for s in self._starts)

    def overlaps(self, start: int, end: int) -> bool:
        """Whether any frame of ``[start, end)`` is in the set."""
        i = bisect.bisect_left(self._starts, end) - 1
        return i >= 0 and self._ends[self._starts[i]] > start

    def overlap_count(self, start: int, end: int) -> int:
        """How many frames of ``[start, end)`` are in the set."""
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        total = 0
        while i < len(self._starts) and self._starts[i] < end:
            s = self._starts[i]
            total += max(0, min(end, self._ends[s]) - max(start, s))
            i += 1
        return total

    def add(self, start: int, end: int) -> None:
        """Insert ``[start, end)``, merging with touching neighbours (no overlap allowed)."""
        self.count += end - start
        i = bisect.bisect_left(self._starts, start)
        if i < len(self._starts) and self._starts[i] == end:
            end = self._ends.pop(self._starts.pop(i))
        if i > 0 and self._ends[self._starts[i - 1]] == start:
            self._ends[self._starts[i - 1]] = end
            return
        self._starts.insert(i, start)
        self._ends[start] = end

    def remove(self, start: int, end: int) -> None:
        """Take every frame of ``[start, end)`` that is in the set out of it, splitting ranges."""
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        while i < len(self._starts) and self._starts[i] < end:
            s = self._starts[i]
            e = self._ends[s]
            if e <= start:
                i += 1
                continue
            del self._starts[i], self._ends[s]
            self.count -= e - s
            for a, b in ((s, min(start, e)), (max(end, s), e)):
                if b > a:
                    self._starts.insert(i, a)
                    self._ends[a] = b
                    self.count += b - a
                    i += 1

    def pop_last(self) -> int:
        """Take the last frame of the highest range (O(1)); the set must not be empty."""
        s = self._starts[-1]
        e = self._ends[s] - 1
        self.count -= 1
        if e == s:
            self._starts.pop()
            del self._ends[s]
        else:
            self._ends[s] = e
        return e

    def first_fit(self, n: int, align: int) -> int | None:
        """Lowest aligned start of ``n`` frames inside one range, or None."""
        for s in self._starts:
            start = -(-s // align) * align
            if start + n <= self._ends[s]:
                return start
        return None
