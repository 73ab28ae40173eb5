"""atOS-RT's frame map: one byte per frame holding the frame's state.

Follows seeds/atos-rt-paging.md: the kernel owns all memory; user processes are placed anywhere
in ``0x10000000``-``0x20000000`` and libraries in ``0x20000000``-``0x30000000``, and their
memory can be shared around the system. A byte per frame (8 bits of bookkeeping, against the
bitmap's 1) buys a state: FREE, ALLOCATED, RESERVED, or the USER and LIBRARY variants of
allocated, so a dump of the map says who holds each frame. An optional zone per state keeps
user and library frames in their regions (:data:`ATOS_ZONES`). Searches are first fit with a
low-water hint, on numpy.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from pagewalk.alloc._common import (
    WINDOW,
    check_frame_range,
    check_request,
    first_run,
    out_of_memory,
    search_windows,
)
from pagewalk.alloc.base import FRAME_SIZE, Usage
from pagewalk.errors import AllocatorError, ConfigError, hx


class PageState(enum.IntEnum):
    """The byte stored for each frame."""

    FREE = 0
    ALLOCATED = 1
    RESERVED = 2
    USER = 3
    LIBRARY = 4
    ABSENT = 0xFF  # not RAM: never counted, never handed out


HELD = (PageState.ALLOCATED, PageState.USER, PageState.LIBRARY)
#: atOS-RT's physical regions for process images and for libraries (seeds/atos-rt-paging.md)
ATOS_ZONES: Mapping[PageState, tuple[int, int]] = {
    PageState.USER: (0x1000_0000, 0x2000_0000),
    PageState.LIBRARY: (0x2000_0000, 0x3000_0000),
}


class ByteMapFrameAllocator:
    """One byte per frame, first fit.

    Args:
        usable: usable RAM as ``(base, size)`` runs; partial frames at the edges are dropped.
        zones: optional ``state -> (base, end)`` byte ranges that allocations of that state
            must come from (e.g. :data:`ATOS_ZONES`).

    Raises:
        ConfigError: for no usable RAM or a zone for a state that cannot be allocated.
    """

    def __init__(
        self,
        usable: Iterable[tuple[int, int]],
        *,
        zones: Mapping[PageState, tuple[int, int]] | None = None,
    ) -> None:
        spans = [(-(-b // FRAME_SIZE), (b + s) // FRAME_SIZE) for b, s in usable]
        spans = [(lo, hi) for lo, hi in spans if hi > lo]
        if not spans:
            raise ConfigError("a byte-map allocator needs some usable RAM")
        self._map: npt.NDArray[np.uint8] = np.full(
            max(hi for _, hi in spans), PageState.ABSENT, dtype=np.uint8
        )
        for lo, hi in spans:
            self._map[lo:hi] = PageState.FREE
        self._zones: dict[PageState, tuple[int, int]] = {}
        for state, (base, end) in (zones or {}).items():
            if state not in HELD:
                raise ConfigError(f"a zone for {state.name} frames makes no sense")
            self._zones[state] = (base // FRAME_SIZE, min(self._map.size, end // FRAME_SIZE))
        self.total = int(np.count_nonzero(self._map != PageState.ABSENT))
        self._free = self.total
        self._hint = 0

    def _find(self, n: int, align: int, lo: int, hi: int) -> int | None:
        if n == 1 and align == 1:
            if lo < hi and self._map[lo] == PageState.FREE:
                return lo
            near = np.flatnonzero(self._map[lo : min(hi, lo + 64)] == PageState.FREE)
            if near.size:
                return lo + int(near[0])
            for a in range(lo, hi, WINDOW):
                hits = np.flatnonzero(self._map[a : min(hi, a + WINDOW)] == PageState.FREE)
                if hits.size:
                    return a + int(hits[0])
            return None
        for a, b in search_windows(lo, hi, n, align):
            found = first_run(self._map[a:b] == PageState.FREE, a, n, align)
            if found is not None:
                return found
        return None

    def allocate(
        self, n_frames: int = 1, align: int = FRAME_SIZE, *, state: PageState = PageState.ALLOCATED
    ) -> int:
        """The lowest run of ``n_frames`` free frames aligned to ``align`` bytes, marked ``state``.

        Raises:
            AllocatorError: for a bad count, alignment or state.
            OutOfMemoryError: if no such run is free (in the state's zone); nothing changes.
        """
        align_frames = check_request(n_frames, align)
        if state not in HELD:
            raise AllocatorError(f"cannot allocate frames as {PageState(state).name}")
        lo, hi = self._zones.get(state, (0, self._map.size))
        frame = None
        if n_frames <= self._free:
            frame = self._find(n_frames, align_frames, max(lo, self._hint), hi)
        if frame is None:
            where = f"{hx(lo * FRAME_SIZE)}-{hx(hi * FRAME_SIZE - 1)}"
            raise out_of_memory(n_frames, align, f"the byte map's {state.name} range {where}")
        if n_frames == 1:
            self._map[frame] = state
        else:
            self._map[frame : frame + n_frames] = state
        self._free -= n_frames
        if frame == self._hint and state not in self._zones:
            self._hint = frame + n_frames
        return frame * FRAME_SIZE

    def free(self, pa: int, n_frames: int = 1) -> None:
        """Mark allocated, user or library frames free again.

        Raises:
            AllocatorError: if a frame is unaligned, not managed, reserved or free; nothing
                changes.
        """
        f0 = check_frame_range(pa, n_frames, "free")
        f1 = f0 + n_frames
        if n_frames == 1 and f0 < self._map.size and self._map[f0] in HELD:
            self._map[f0] = PageState.FREE
            self._free += 1
            self._hint = min(self._hint, f0)
            return
        what = f"cannot free frames {hx(pa)}-{hx(f1 * FRAME_SIZE - 1)}"
        states = self._map[f0:f1]
        if f1 > self._map.size or (states == PageState.ABSENT).any():
            raise AllocatorError(f"{what}: not RAM managed by this byte map")
        if (states == PageState.RESERVED).any():
            raise AllocatorError(f"{what}: part of the range is reserved")
        if (states == PageState.FREE).any():
            raise AllocatorError(f"{what}: part of the range is not allocated (double free?)")
        states[:] = PageState.FREE
        self._free += n_frames
        self._hint = min(self._hint, f0)

    def reserve(self, pa: int, size: int) -> None:
        """Mark the managed free frames touching ``[pa, pa + size)`` RESERVED.

        Raises:
            AllocatorError: if one of them is allocated; nothing changes.
        """
        f0 = max(0, pa // FRAME_SIZE)
        f1 = min(self._map.size, -(-(pa + size) // FRAME_SIZE))
        states = self._map[f0 : max(f0, f1)]
        if np.isin(states, HELD).any():
            raise AllocatorError(f"cannot reserve {hx(pa)}+{hx(size)}: part of it is allocated")
        free = states == PageState.FREE
        self._free -= int(np.count_nonzero(free))
        states[free] = PageState.RESERVED

    def state(self, pa: int) -> PageState:
        """The state of the frame holding ``pa`` (ABSENT outside RAM)."""
        frame = pa // FRAME_SIZE
        if pa < 0 or frame >= self._map.size:
            return PageState.ABSENT
        return PageState(int(self._map[frame]))

    def counts(self) -> dict[PageState, int]:
        """Frames in each state."""
        tally = np.bincount(self._map, minlength=256)
        return {s: int(tally[s]) for s in PageState}

    def usage(self) -> Usage:
        """Frame counts of RAM (reserved frames count as used)."""
        return Usage(self.total, self._free, self.total - self._free)

    def bookkeeping_bytes(self) -> int:
        """Bytes of state: the byte map."""
        return int(self._map.nbytes)
