"""The simplest frame allocator: a bump pointer over one range plus a free list.

It is what :class:`~pagewalk.space.AddressSpace` uses until a kernel profile picks one of the
designed allocators. Frames are 4 KiB (Intel SDM vol. 3A §4.2; RISC-V privileged spec).
"""

from __future__ import annotations

from pagewalk.alloc.base import FRAME_SIZE, Usage
from pagewalk.errors import AllocatorError, OutOfMemoryError, hx


class SimpleFrameAllocator:
    """Bump allocation over ``[base, base + size)``, reusing freed single frames first.

    Args:
        base: the first frame's PA (frame-aligned).
        size: bytes to manage (a multiple of 4 KiB).
    """

    def __init__(self, base: int, size: int) -> None:
        if base % FRAME_SIZE or size % FRAME_SIZE or size <= 0:
            raise AllocatorError(f"range {hx(base)}+{hx(size)} is not whole 4 KiB frames")
        self.base = base
        self.end = base + size
        self._next = base
        self._free: list[int] = []
        self._free_set: set[int] = set()
        self._reserved: set[int] = set()
        self._total = size // FRAME_SIZE

    def allocate(self, n_frames: int = 1, align: int = FRAME_SIZE) -> int:
        """Hand out ``n_frames`` contiguous frames aligned to ``align`` bytes."""
        if n_frames < 1 or align < FRAME_SIZE or align & (align - 1):
            raise AllocatorError(f"bad request: {n_frames} frame(s) aligned to {hx(align)}")
        if n_frames == 1 and self._free:
            for i in range(len(self._free) - 1, -1, -1):
                if self._free[i] % align == 0:
                    pa = self._free.pop(i)
                    self._free_set.discard(pa)
                    return pa
        start = -(-self._next // align) * align
        while True:
            end = start + n_frames * FRAME_SIZE
            if end > self.end:
                raise OutOfMemoryError(
                    f"no {n_frames} free frame(s) aligned to {hx(align)} in "
                    f"{hx(self.base)}-{hx(self.end - 1)}"
                )
            clash = [f for f in range(start, end, FRAME_SIZE) if f in self._reserved]
            if not clash:
                break
            start = -(-(clash[-1] + FRAME_SIZE) // align) * align
        for pa in range(self._next, start, FRAME_SIZE):
            if pa not in self._reserved:
                self._free.append(pa)
                self._free_set.add(pa)
        self._next = end
        return start

    def free(self, pa: int, n_frames: int = 1) -> None:
        """Return frames; a frame that is not allocated raises and nothing changes."""
        if n_frames < 1:
            raise AllocatorError(f"cannot free {n_frames} frames at {hx(pa)}")
        frames = [pa + i * FRAME_SIZE for i in range(n_frames)]
        for f in frames:
            if (
                f % FRAME_SIZE
                or not self.base <= f < self._next
                or f in self._free_set
                or f in self._reserved
            ):
                raise AllocatorError(f"frame {hx(f)} is not allocated (double free?)")
        for f in frames:
            self._free.append(f)
            self._free_set.add(f)

    def reserve(self, pa: int, size: int) -> None:
        """Take ``[pa, pa + size)`` out of the pool for good (only frames not yet handed out)."""
        first = pa - pa % FRAME_SIZE
        for f in range(first, pa + size, FRAME_SIZE):
            if not self.base <= f < self.end or f in self._reserved:
                continue
            if f < self._next and f not in self._free_set:
                raise AllocatorError(f"cannot reserve frame {hx(f)}: it is allocated")
            self._free_set.discard(f)
            self._reserved.add(f)
        self._free = [f for f in self._free if f in self._free_set]

    def usage(self) -> Usage:
        """Frame counts."""
        free = (self.end - self._next) // FRAME_SIZE + len(self._free_set)
        free -= sum(1 for f in self._reserved if f >= self._next)
        used = self._total - free
        return Usage(self._total, free, used)
