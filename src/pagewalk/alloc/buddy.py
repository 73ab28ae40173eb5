"""A binary buddy frame allocator with a reference count per frame, as Redox's kernel uses today.

Free memory is kept as naturally aligned blocks of ``2**order`` frames, orders 0 to
``max_order`` (10 by default: 4 MiB blocks), one set of block starts per order. Allocation splits
the smallest block that fits; freeing merges a block with its buddy (the block whose start
differs in bit ``order``) while the buddy is free. A request of ``n`` frames takes a
``2**ceil(log2 n)`` block and gives the tail back, so a 512-frame run is a 2 MiB-aligned order-9
block (Intel SDM vol. 3A §4.5). Each frame carries a user count (seeds/redox-pagination.rst: "un
cadre peut correspondre à plusieurs pages" - shared and copy-on-write frames), so ``free`` drops
one user and a frame returns to the pool only when its last user lets go.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import numpy.typing as npt

from pagewalk.alloc._common import check_frame_range, check_request, out_of_memory
from pagewalk.alloc.base import FRAME_SIZE, Usage
from pagewalk.errors import AllocatorError, ConfigError, hx

#: per-frame states above the user counts
RESERVED = 0xFFFE
ABSENT = 0xFFFF
MAX_USERS = RESERVED - 1


def _runs(mask: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``[lo, hi)`` index runs where ``mask`` is True."""
    edges = np.flatnonzero(np.diff(np.concatenate(([False], mask, [False])).astype(np.int8)))
    return [(int(lo), int(hi)) for lo, hi in zip(edges[::2], edges[1::2], strict=True)]


class BuddyFrameAllocator:
    """Buddy blocks of orders 0..``max_order`` with a uint16 user count per frame.

    Args:
        usable: usable RAM as ``(base, size)`` runs; partial frames at the edges are dropped.
        max_order: the largest block is ``2**max_order`` frames.

    Raises:
        ConfigError: for no usable RAM or a ``max_order`` outside 0..30.
    """

    def __init__(self, usable: Iterable[tuple[int, int]], *, max_order: int = 10) -> None:
        if not 0 <= max_order <= 30:
            raise ConfigError(f"buddy max_order {max_order} is outside 0..30")
        spans = [(-(-b // FRAME_SIZE), (b + s) // FRAME_SIZE) for b, s in usable]
        spans = [(lo, hi) for lo, hi in spans if hi > lo]
        if not spans:
            raise ConfigError("a buddy allocator needs some usable RAM")
        self.max_order = max_order
        self._refs: npt.NDArray[np.uint16] = np.full(
            max(hi for _, hi in spans), ABSENT, dtype=np.uint16
        )
        self._free: list[set[int]] = [set() for _ in range(max_order + 1)]
        self.total = 0
        self._free_count = 0
        for lo, hi in spans:
            if (self._refs[lo:hi] != ABSENT).any():
                raise ConfigError(f"usable runs overlap at {hx(lo * FRAME_SIZE)}")
            self._refs[lo:hi] = 0
            self.total += hi - lo
            self._release(lo, hi)

    # ---------------------------------------------------------------- blocks
    def _blocks(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """The maximal aligned blocks ``(start, order)`` that tile ``[lo, hi)``."""
        while lo < hi:
            order = min(self.max_order, (hi - lo).bit_length() - 1)
            if lo:
                order = min(order, (lo & -lo).bit_length() - 1)
            yield lo, order
            lo += 1 << order

    def _insert(self, block: int, order: int) -> None:
        """Add a free block, merging it with its buddy as far as possible."""
        free = self._free
        while order < self.max_order:
            buddy = block ^ (1 << order)
            bucket = free[order]
            if buddy not in bucket:
                break
            bucket.remove(buddy)
            block &= ~(1 << order)
            order += 1
        free[order].add(block)

    def _release(self, lo: int, hi: int) -> None:
        """Put the frames ``[lo, hi)`` (already marked free) back as blocks."""
        for block, order in self._blocks(lo, hi):
            self._insert(block, order)
        self._free_count += hi - lo

    def _containing(self, frame: int) -> tuple[int, int]:
        """The free block ``(start, order)`` holding a free frame."""
        for order in range(self.max_order + 1):
            start = frame & ~((1 << order) - 1)
            if start in self._free[order]:
                return start, order
        raise AssertionError(f"free frame {hx(frame * FRAME_SIZE)} is in no free block")

    # ---------------------------------------------------------------- protocol
    def allocate(self, n_frames: int = 1, align: int = FRAME_SIZE) -> int:
        """Split the smallest block that holds ``n_frames`` aligned to ``align`` bytes.

        Raises:
            AllocatorError: for a bad count or alignment.
            OutOfMemoryError: if no block is large enough (or the request needs a block above
                ``max_order``); nothing changes.
        """
        align_frames = check_request(n_frames, align)
        need = max((n_frames - 1).bit_length(), align_frames.bit_length() - 1)
        order = next((o for o in range(need, self.max_order + 1) if self._free[o]), None)
        if order is None:
            where = f"buddy blocks up to order {self.max_order}"
            raise out_of_memory(n_frames, align, where)
        block = self._free[order].pop()
        while order > need:
            order -= 1
            self._free[order].add(block + (1 << order))
        self._free_count -= 1 << need
        self._refs[block : block + n_frames] = 1
        if n_frames < 1 << need:
            self._release(block + n_frames, block + (1 << need))
        return block * FRAME_SIZE

    def _users(self, pa: int, n_frames: int, verb: str) -> npt.NDArray[np.uint16]:
        f0 = check_frame_range(pa, n_frames, verb)
        what = f"cannot {verb} frames {hx(pa)}-{hx(pa + n_frames * FRAME_SIZE - 1)}"
        users = self._refs[f0 : f0 + n_frames]
        if f0 + n_frames > self._refs.size or (users == ABSENT).any():
            raise AllocatorError(f"{what}: not RAM managed by this allocator")
        if (users == RESERVED).any():
            raise AllocatorError(f"{what}: part of the range is reserved")
        if (users == 0).any():
            raise AllocatorError(f"{what}: part of the range is not allocated (double free?)")
        return users

    def free(self, pa: int, n_frames: int = 1) -> None:
        """Drop one user of each frame; frames left with none go back to the pool.

        Raises:
            AllocatorError: if a frame is unaligned, not managed, reserved or free; nothing
                changes.
        """
        if n_frames == 1 and pa % FRAME_SIZE == 0 and 0 <= pa // FRAME_SIZE < self._refs.size:
            frame = pa // FRAME_SIZE
            users = int(self._refs[frame])
            if 0 < users < RESERVED:
                self._refs[frame] = users - 1
                if users == 1:
                    self._insert(frame, 0)
                    self._free_count += 1
                return
        run = self._users(pa, n_frames, "free")
        run -= 1
        for lo, hi in _runs(run == 0):
            self._release(pa // FRAME_SIZE + lo, pa // FRAME_SIZE + hi)

    def share(self, pa: int, n_frames: int = 1) -> None:
        """Add a user to each allocated frame of the run (a shared or copy-on-write mapping).

        Raises:
            AllocatorError: if a frame is not allocated or already has the most users.
        """
        users = self._users(pa, n_frames, "share")
        if (users >= MAX_USERS).any():
            raise AllocatorError(f"frame at {hx(pa)} already has {MAX_USERS} users")
        users += 1

    def refcount(self, pa: int) -> int:
        """Users of the frame at ``pa``: 0 when it is free, reserved or not managed."""
        frame = pa // FRAME_SIZE
        if pa < 0 or frame >= self._refs.size:
            return 0
        users = int(self._refs[frame])
        return users if users < RESERVED else 0

    def reserve(self, pa: int, size: int) -> None:
        """Take the managed frames touching ``[pa, pa + size)`` out of the pool for good.

        Raises:
            AllocatorError: if one of them is allocated; nothing changes.
        """
        f0 = max(0, pa // FRAME_SIZE)
        f1 = min(self._refs.size, -(-(pa + size) // FRAME_SIZE))
        if f1 <= f0:
            return
        users = self._refs[f0:f1]
        if ((users > 0) & (users < RESERVED)).any():
            raise AllocatorError(f"cannot reserve {hx(pa)}+{hx(size)}: part of it is allocated")
        for lo, hi in _runs(users == 0):
            self._carve(f0 + lo, f0 + hi)
        users[users == 0] = RESERVED

    def _carve(self, lo: int, hi: int) -> None:
        """Remove the free frames ``[lo, hi)`` from their blocks, keeping the rest free."""
        frame = lo
        while frame < hi:
            start, order = self._containing(frame)
            end = start + (1 << order)
            self._free[order].remove(start)
            self._free_count -= end - start
            if start < lo:
                self._release(start, lo)
            if end > hi:
                self._release(hi, end)
            frame = end

    def usage(self) -> Usage:
        """Frame counts of usable RAM (reserved frames count as used)."""
        return Usage(self.total, self._free_count, self.total - self._free_count)

    def free_blocks(self) -> dict[int, int]:
        """Number of free blocks per order."""
        return {order: len(bucket) for order, bucket in enumerate(self._free)}

    def bookkeeping_bytes(self) -> int:
        """Bytes of state: the per-frame user counts plus one set entry per free block."""
        return int(self._refs.nbytes) + 8 * sum(len(b) for b in self._free)
