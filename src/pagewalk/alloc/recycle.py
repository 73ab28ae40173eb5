"""Redox's early frame allocator: a bump allocator wrapped by a recycle allocator.

Follows seeds/redox-pagination.rst ("Initialisation du module mémoire"): ``RecycleAllocator::new(
BumpAllocator::new(kernel_start, kernel_end, MemoryAreaIter::new(MEMORY_AREA_FREE)))``. The bump
allocator walks the free memory areas in address order and never hands out a frame between
``kernel_start`` and ``kernel_end``; it cannot free. The recycle allocator keeps freed ranges,
merges neighbours, and serves from them before asking the bump allocator. Frames the bump
allocator steps over (alignment padding, an area's tail too short for a run) are recycled too,
so none is lost. Bookkeeping is ranges only: no per-frame state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pagewalk.alloc._common import RangeSet, check_frame_range, check_request, out_of_memory
from pagewalk.alloc.base import FRAME_SIZE, Usage
from pagewalk.errors import AllocatorError, ConfigError, hx


def _frames(pa: int, size: int) -> tuple[int, int]:
    """Frames touching ``[pa, pa + size)``, rounded outward."""
    return max(0, pa // FRAME_SIZE), max(0, -(-(pa + size) // FRAME_SIZE))


class BumpAllocator:
    """Hands out frames in address order over the free areas, skipping the kernel image.

    Args:
        areas: usable RAM as ``(base, size)`` runs; partial frames at the edges are dropped.
        kernel_start: first byte of the kernel image.
        kernel_end: one past the kernel image's last byte.

    Attributes:
        on_skip: called with ``(first_frame, end_frame)`` for free frames stepped over; a
            :class:`RecycleAllocator` sets it to keep them.
    """

    def __init__(self, areas: Iterable[tuple[int, int]], kernel_start: int, kernel_end: int):
        spans = sorted((-(-b // FRAME_SIZE), (b + s) // FRAME_SIZE) for b, s in areas)
        self.areas = [(lo, hi) for lo, hi in spans if hi > lo]
        if not self.areas:
            raise ConfigError("a bump allocator needs at least one usable area")
        self.total = sum(hi - lo for lo, hi in self.areas)
        self.excluded = RangeSet()
        self._area = 0
        self.frontier = self.areas[0][0]
        self.free_count = self.total
        self.on_skip: Callable[[int, int], None] | None = None
        if kernel_end > kernel_start:
            self.reserve(kernel_start, kernel_end - kernel_start)

    def _managed(self, f0: int, f1: int) -> int:
        return sum(max(0, min(f1, hi) - max(f0, lo)) for lo, hi in self.areas)

    def _loose(self, f0: int, f1: int) -> list[tuple[int, int]]:
        """Runs of ``[f0, f1)`` (inside one area) that are not excluded."""
        if f1 <= f0:
            return []
        runs, cur = [], f0
        for s, e in self.excluded:
            if e <= cur or s >= f1:
                continue
            if s > cur:
                runs.append((cur, s))
            cur = max(cur, e)
        if cur < f1:
            runs.append((cur, f1))
        return runs

    def _plan(self, n: int, align: int) -> tuple[int, int, list[tuple[int, int]]] | None:
        """Where the next run would go: ``(start, area index, skipped runs)``, or None."""
        area, cur, skipped = self._area, self.frontier, []
        while area < len(self.areas):
            lo, hi = self.areas[area]
            cur = max(cur, lo)
            start = -(-cur // align) * align
            if start + n > hi:
                skipped += self._loose(cur, hi)
                area += 1
                continue
            if self.excluded.overlaps(start, start + n):
                past = max(e for s, e in self.excluded if s < start + n and e > start)
                skipped += self._loose(cur, min(past, hi))
                cur = past
                continue
            skipped += self._loose(cur, start)
            return start, area, skipped
        return None

    def allocate(self, n_frames: int = 1, align: int = FRAME_SIZE) -> int:
        """The next ``n_frames`` free frames aligned to ``align`` bytes.

        Raises:
            AllocatorError: for a bad count or alignment.
            OutOfMemoryError: when the areas are used up; nothing changes.
        """
        plan = self._plan(n_frames, check_request(n_frames, align))
        if plan is None:
            raise out_of_memory(n_frames, align, "the bump allocator's remaining areas")
        start, self._area, skipped = plan
        self.frontier = start + n_frames
        self.free_count -= n_frames + sum(e - s for s, e in skipped)
        for s, e in skipped:
            if self.on_skip is not None:
                self.on_skip(s, e)
        return start * FRAME_SIZE

    def free(self, pa: int, n_frames: int = 1) -> None:
        """A bump allocator cannot free (Redox's ``deallocate_frames`` does nothing).

        Raises:
            AllocatorError: always.
        """
        raise AllocatorError(
            f"cannot free {hx(pa)}: a bump allocator never frees (wrap it in RecycleAllocator)"
        )

    def reserve(self, pa: int, size: int) -> None:
        """Exclude frames not yet reached; frames behind the frontier must already be excluded.

        Raises:
            AllocatorError: if a frame of the range was already handed out; nothing changes.
        """
        f0, f1 = _frames(pa, size)
        behind = (f0, min(f1, self.frontier))
        if behind[1] > behind[0]:
            handed = self._managed(*behind) - self.excluded.overlap_count(*behind)
            if handed:
                raise AllocatorError(
                    f"cannot reserve {hx(pa)}+{hx(size)}: {handed} frame(s) were handed out"
                )
        self.reserve_ahead(max(f0, self.frontier), f1)

    def exclude(self, f0: int, f1: int) -> int:
        """Exclude the managed frames of ``[f0, f1)``; return how many were not excluded yet."""
        added = 0
        for lo, hi in self.areas:
            a, b = max(f0, lo), min(f1, hi)
            if b > a:
                added += (b - a) - self.excluded.overlap_count(a, b)
                self.excluded.remove(a, b)
                self.excluded.add(a, b)
        return added

    def reserve_ahead(self, f0: int, f1: int) -> None:
        """Exclude the managed frames of ``[f0, f1)``, all at or past the frontier."""
        self.free_count -= self.exclude(f0, f1)

    def usage(self) -> Usage:
        """Frames in the areas; skipped and excluded frames count as used."""
        return Usage(self.total, self.free_count, self.total - self.free_count)


class RecycleAllocator:
    """Serves freed ranges first, merged with their neighbours, then asks the bump allocator.

    Args:
        inner: the bump allocator to wrap; its skipped frames are recycled from now on.
    """

    def __init__(self, inner: BumpAllocator) -> None:
        self.inner = inner
        self.recycled = RangeSet()
        inner.on_skip = self.recycled.add

    def allocate(self, n_frames: int = 1, align: int = FRAME_SIZE) -> int:
        """Frames from the recycled ranges if any fits (first fit), else from the bump allocator.

        Raises:
            AllocatorError: for a bad count or alignment.
            OutOfMemoryError: if neither can serve the request; nothing changes.
        """
        align_frames = check_request(n_frames, align)
        if n_frames == 1 and align_frames == 1 and len(self.recycled):
            return self.recycled.pop_last() * FRAME_SIZE
        start = self.recycled.first_fit(n_frames, align_frames)
        if start is not None:
            self.recycled.remove(start, start + n_frames)
            return start * FRAME_SIZE
        return self.inner.allocate(n_frames, align)

    def _owned_error(self, f0: int, f1: int) -> str | None:
        inner = self.inner
        if f1 > inner.frontier or inner._managed(f0, f1) != f1 - f0:
            return "not handed out by this allocator"
        if inner.excluded.overlaps(f0, f1):
            return "part of the range is reserved"
        if self.recycled.overlaps(f0, f1):
            return "part of the range is already free (double free?)"
        return None

    def free(self, pa: int, n_frames: int = 1) -> None:
        """Return frames; they merge with free neighbours.

        Raises:
            AllocatorError: if a frame is unaligned, not handed out, reserved or already free;
                nothing changes.
        """
        f0 = check_frame_range(pa, n_frames, "free")
        problem = self._owned_error(f0, f0 + n_frames)
        if problem:
            end = hx((f0 + n_frames) * FRAME_SIZE - 1)
            raise AllocatorError(f"cannot free frames {hx(pa)}-{end}: {problem}")
        self.recycled.add(f0, f0 + n_frames)

    def reserve(self, pa: int, size: int) -> None:
        """Take the managed frames touching ``[pa, pa + size)`` out of the pool for good.

        Raises:
            AllocatorError: if one of them is allocated; nothing changes.
        """
        inner = self.inner
        f0, f1 = _frames(pa, size)
        b0, b1 = f0, min(f1, inner.frontier)
        if b1 > b0:
            idle = inner.excluded.overlap_count(b0, b1) + self.recycled.overlap_count(b0, b1)
            if inner._managed(b0, b1) != idle:
                raise AllocatorError(f"cannot reserve {hx(pa)}+{hx(size)}: part of it is in use")
            self.recycled.remove(b0, b1)
            inner.exclude(b0, b1)
        inner.reserve_ahead(max(f0, inner.frontier), f1)

    def usage(self) -> Usage:
        """The bump allocator's frames; recycled frames count as free."""
        inner = self.inner.usage()
        free = inner.free + self.recycled.count
        return Usage(inner.total, free, inner.total - free)

    def bookkeeping_bytes(self) -> int:
        """Approximate bytes of state: a few words per recycled or excluded range."""
        return 64 * (len(self.recycled) + len(self.inner.excluded)) + 64


def redox_allocator(
    areas: Iterable[tuple[int, int]], kernel_start: int, kernel_end: int
) -> RecycleAllocator:
    """``RecycleAllocator::new(BumpAllocator::new(kernel_start, kernel_end, areas))``."""
    return RecycleAllocator(BumpAllocator(areas, kernel_start, kernel_end))
