"""Frame ownership for the kernel: reference counts over any frame allocator.

Shared and copy-on-write frames must be freed only when their last user lets go. An allocator
that counts users itself (:class:`~pagewalk.alloc.base.RefCountedFrames`, the buddy allocator)
is used as it is; for the others the kernel keeps the counts beside them, as Linux keeps
``struct page`` counts beside its allocator. Frames are 4 KiB (Intel SDM vol. 3A §4.2; Arm ARM
D8.2 with a 4K granule; RISC-V privileged spec).
"""

from __future__ import annotations

from typing import Any

from pagewalk.alloc.base import FRAME_SIZE, FrameAllocator, RefCountedFrames
from pagewalk.errors import AllocatorError, hx


class FrameRefs:
    """Allocate data frames with a user count; free them when the count drops to zero."""

    def __init__(self, frames: FrameAllocator) -> None:
        self.frames = frames
        self._native = isinstance(frames, RefCountedFrames)
        self._counts: dict[int, int] = {}

    def alloc(self, n_frames: int = 1, align: int = FRAME_SIZE, **kwargs: Any) -> int:
        """``n_frames`` new frames, each with one user (``kwargs`` go to the allocator)."""
        pa = self.frames.allocate(n_frames, align, **kwargs)
        if not self._native:
            for i in range(n_frames):
                self._counts[pa + i * FRAME_SIZE] = 1
        return pa

    def share(self, pa: int) -> None:
        """One more user of the frame at ``pa``."""
        if self._native:
            self.frames.share(pa)  # type: ignore[attr-defined]
            return
        if pa not in self._counts:
            raise AllocatorError(f"frame {hx(pa)} is not a counted data frame")
        self._counts[pa] += 1

    def count(self, pa: int) -> int:
        """How many users the frame at ``pa`` has (0 if free)."""
        if self._native:
            return int(self.frames.refcount(pa))  # type: ignore[attr-defined]
        return self._counts.get(pa, 0)

    def release(self, pa: int) -> bool:
        """Drop one user; free the frame at the last. Returns whether it was freed."""
        if self._native:
            self.frames.free(pa, 1)
            return self.count(pa) == 0
        n = self._counts.get(pa, 0)
        if n <= 0:
            raise AllocatorError(f"frame {hx(pa)} has no users to release (double free?)")
        if n == 1:
            del self._counts[pa]
            self.frames.free(pa, 1)
            return True
        self._counts[pa] = n - 1
        return False
