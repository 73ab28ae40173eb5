"""PowerNex's bitmap frame allocator: one bit per 4 KiB frame in 64-bit words at KERNEL_END.

Follows seeds/powernex-paging.md ("Paging classes requirements": the bitmap sits at
``KERNEL_END`` and is ``((maxMemoryKiB / 0x1000) / 64 + 1) * 8`` bytes; free physical memory
starts after it) and the bitmap allocator of seeds/comus-memory.md, built from the firmware map.
A set bit means the frame is in use, as in PowerNex. Searches run on numpy over whole words with
a next-fit cursor. Runs are aligned for real: 512 frames asked at 2 MiB come back 2 MiB aligned
(PowerNex's ``alloc512`` scans for 8 free words, which only guarantees 64-frame, 256 KiB,
alignment; that bug is not copied).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from pagewalk.alloc._common import (
    RangeSet,
    check_frame_range,
    check_request,
    first_run,
    out_of_memory,
    search_windows,
)
from pagewalk.alloc.base import FRAME_SIZE, Usage
from pagewalk.errors import AllocatorError, ConfigError, hx
from pagewalk.memory.memmap import MemoryMap, RegionType
from pagewalk.memory.physical import PhysicalMemory

ALL_ONES = (1 << 64) - 1
_SCAN_WORDS = 1 << 12


def powernex_bitmap_bytes(max_memory_kib: int) -> int:
    """Size of PowerNex's bitmap for ``max_memory_kib`` KiB of physical address space.

    The formula is ``((maxMemoryKiB / 0x1000) / 64 + 1) * 8``. Dividing by 0x1000 turns
    *bytes* into 4 KiB frames, so the memory size is converted to bytes first: applied to a KiB
    count literally, the formula would give one bit per 4 MiB and a bitmap 1024 times too small
    (PowerNex's own ``_bitmaps`` declaration divides a byte count). Each frame then gets one
    bit; ``/ 64`` counts 64-bit words, and ``+ 1`` adds a word for the frames left over when the
    frame count is not a multiple of 64 (it wastes one word when it is); ``* 8`` gives bytes.

    Example: 128 MiB is 131072 KiB, 32768 frames, 512 + 1 words, 4104 bytes.
    """
    frames = max_memory_kib * 1024 // FRAME_SIZE
    return (frames // 64 + 1) * 8


class BitmapFrameAllocator:
    """One bit per frame, in uint64 words placed at ``kernel_end``.

    Args:
        usable: usable RAM as ``(base, size)`` runs (e.g. :meth:`MemoryMap.usable`).
        kernel_end: KERNEL_END, where the bitmap is placed (8-byte aligned). Frames below the
            end of the bitmap are reserved: the kernel image and the allocator itself.
        memory: if given, the bitmap's words are kept in this simulated RAM at ``kernel_end``
            (written through after every change), as the kernel keeps them.

    Raises:
        ConfigError: for an unaligned ``kernel_end``, no usable RAM, or a bitmap that does not
            fit in ``memory``.
    """

    def __init__(
        self,
        usable: Iterable[tuple[int, int]],
        kernel_end: int,
        *,
        memory: PhysicalMemory | None = None,
    ) -> None:
        runs = [(b, s) for b, s in usable if s > 0]
        if not runs:
            raise ConfigError("a bitmap frame allocator needs some usable RAM")
        if kernel_end < 0 or kernel_end % 8:
            raise ConfigError(f"KERNEL_END {hx(kernel_end)} is not 8-byte aligned")
        top = max(b + s for b, s in runs)
        self.max_memory_kib = -(-top // 1024)
        self.bitmap_pa = kernel_end
        self.bitmap_bytes = powernex_bitmap_bytes(self.max_memory_kib)
        self.free_start = kernel_end + self.bitmap_bytes
        self._words: npt.NDArray[np.uint64] = np.full(
            self.bitmap_bytes // 8, ALL_ONES, dtype=np.uint64
        )
        self.n_bits = self._words.size * 64
        self._memory = memory
        if memory is not None and not memory.is_ram(kernel_end, self.bitmap_bytes):
            raise ConfigError(
                f"bitmap {hx(kernel_end)}+{hx(self.bitmap_bytes)} does not fit in {memory!r}"
            )
        self._usable = RangeSet()
        self._reserved = RangeSet()
        for base, size in runs:
            f0, f1 = -(-base // FRAME_SIZE), (base + size) // FRAME_SIZE
            if f1 > f0:
                self._usable.add(f0, f1)
                self._set(f0, f1, False)
        self.total = self._usable.count
        self._free = self.total
        self._cursor = 0
        self._sync(0, self._words.size)
        self.reserve(0, self.free_start)

    @classmethod
    def from_memory_map(
        cls, memmap: MemoryMap, kernel_end: int | None = None, **kwargs: PhysicalMemory
    ) -> BitmapFrameAllocator:
        """Build from a firmware map; ``kernel_end`` defaults to the end of its kernel region.

        Raises:
            ConfigError: if no ``kernel_end`` is given and the map has no kernel region.
        """
        if kernel_end is None:
            ends = [r.end for r in memmap if r.type is RegionType.KERNEL]
            if not ends:
                raise ConfigError("the memory map has no kernel region: give kernel_end")
            kernel_end = -(-max(ends) // 8) * 8
        return cls(memmap.usable(), kernel_end, **kwargs)

    # ------------------------------------------------------------------ bit helpers
    def _pieces(self, f0: int, f1: int) -> Iterable[tuple[int, int, int]]:
        """``(first_word, last_word_exclusive, mask)``: partial words alone, full words as 0."""
        w0, w1 = f0 >> 6, (f1 - 1) >> 6
        if w0 == w1:
            yield w0, w0 + 1, ((1 << (f1 - f0)) - 1) << (f0 & 63)
            return
        yield w0, w0 + 1, (ALL_ONES << (f0 & 63)) & ALL_ONES
        if w1 > w0 + 1:
            yield w0 + 1, w1, 0
        yield w1, w1 + 1, (1 << (((f1 - 1) & 63) + 1)) - 1

    def _set(self, f0: int, f1: int, value: bool) -> None:
        words = self._words
        for a, b, mask in self._pieces(f0, f1):
            if mask == 0:
                words[a:b] = ALL_ONES if value else 0
            else:
                old = int(words[a])
                words[a] = (old | mask) if value else (old & ~mask)

    def _count_set(self, f0: int, f1: int) -> int:
        total = 0
        for a, b, mask in self._pieces(f0, f1):
            if mask == 0:
                total += int(np.bitwise_count(self._words[a:b]).sum())
            else:
                total += (int(self._words[a]) & mask).bit_count()
        return total

    def _sync(self, w0: int, w1: int) -> None:
        if self._memory is not None:
            self._memory.write_table(self.bitmap_pa + 8 * w0, self._words[w0:w1], 8)

    def _free_mask(self, f0: int, f1: int) -> npt.NDArray[np.bool_]:
        """True where frames ``[f0, f1)`` are free; ``f0`` and ``f1`` are multiples of 64."""
        bits = np.unpackbits(self._words[f0 >> 6 : f1 >> 6].view(np.uint8), bitorder="little")
        free: npt.NDArray[np.bool_] = bits == 0
        return free

    # ------------------------------------------------------------------ protocol
    def allocate(self, n_frames: int = 1, align: int = FRAME_SIZE) -> int:
        """Hand out ``n_frames`` contiguous free frames aligned to ``align`` bytes (next fit).

        Raises:
            AllocatorError: for a bad count or alignment.
            OutOfMemoryError: if no such run is free; nothing changes.
        """
        align_frames = check_request(n_frames, align)
        if n_frames == 1 and align_frames == 1:
            frame = self._next_single()
        else:
            frame = self._next_run(n_frames, align_frames)
        if frame is None:
            raise out_of_memory(n_frames, align, f"the bitmap at {hx(self.bitmap_pa)}")
        self._set(frame, frame + n_frames, True)
        self._free -= n_frames
        self._cursor = (frame + n_frames) % self.n_bits
        self._sync(frame >> 6, ((frame + n_frames - 1) >> 6) + 1)
        return frame * FRAME_SIZE

    def alloc512(self) -> int:
        """PowerNex's ``alloc512``: 512 frames for a 2 MiB page, truly 2 MiB aligned."""
        return self.allocate(512, 512 * FRAME_SIZE)

    def _next_single(self) -> int | None:
        """The first free frame at or after the cursor, wrapping around once."""
        words, cursor = self._words, self._cursor
        word = int(words[cursor >> 6]) | ((1 << (cursor & 63)) - 1)
        if word != ALL_ONES:
            return (cursor & ~63) + (~word & (word + 1)).bit_length() - 1
        if self._free == 0:
            return None
        first = (cursor >> 6) + 1
        for lo, hi in ((first, words.size), (0, first)):
            for w in range(lo, hi, _SCAN_WORDS):
                hits = np.flatnonzero(words[w : min(hi, w + _SCAN_WORDS)] != ALL_ONES)
                if hits.size:
                    found = w + int(hits[0])
                    word = int(words[found])
                    return found * 64 + (~word & (word + 1)).bit_length() - 1
        return None

    def _next_run(self, n: int, align: int) -> int | None:
        if n > self._free:
            return None
        start = self._cursor & ~63
        for lo, hi in ((start, self.n_bits), (0, min(self.n_bits, start + n + align))):
            for a, b in search_windows(lo, hi, n, align):
                b = min(self.n_bits, -(-b // 64) * 64)
                found = first_run(self._free_mask(a, b), a, n, align)
                if found is not None:
                    return found
        return None

    def _check_allocated(self, f0: int, f1: int, verb: str) -> None:
        what = f"cannot {verb} frames {hx(f0 * FRAME_SIZE)}-{hx(f1 * FRAME_SIZE - 1)}"
        if f1 > self.n_bits or self._usable.overlap_count(f0, f1) != f1 - f0:
            raise AllocatorError(f"{what}: not usable RAM managed by this bitmap")
        if self._reserved.overlaps(f0, f1):
            raise AllocatorError(f"{what}: part of the range is reserved")
        if self._count_set(f0, f1) != f1 - f0:
            raise AllocatorError(f"{what}: part of the range is not allocated (double free?)")

    def free(self, pa: int, n_frames: int = 1) -> None:
        """Return frames to the pool.

        Raises:
            AllocatorError: if any frame is unaligned, not managed, reserved or already free;
                nothing changes.
        """
        f0 = check_frame_range(pa, n_frames, "free")
        if (
            n_frames == 1
            and f0 < self.n_bits
            and int(self._words[f0 >> 6]) >> (f0 & 63) & 1
            and self._usable.overlaps(f0, f0 + 1)
            and not self._reserved.overlaps(f0, f0 + 1)
        ):
            self._words[f0 >> 6] = int(self._words[f0 >> 6]) & ~(1 << (f0 & 63))
            self._free += 1
            self._sync(f0 >> 6, (f0 >> 6) + 1)
            return
        self._check_allocated(f0, f0 + n_frames, "free")
        self._set(f0, f0 + n_frames, False)
        self._free += n_frames
        self._sync(f0 >> 6, ((f0 + n_frames - 1) >> 6) + 1)

    def reserve(self, pa: int, size: int) -> None:
        """Take every managed frame touching ``[pa, pa + size)`` out of the pool for good.

        Raises:
            AllocatorError: if one of those frames is allocated; nothing changes.
        """
        f0, f1 = max(0, pa // FRAME_SIZE), min(self.n_bits, -(-(pa + size) // FRAME_SIZE))
        pieces = [(max(f0, s), min(f1, e)) for s, e in self._usable if s < f1 and e > f0]
        for a, b in pieces:
            in_use = self._count_set(a, b) - self._reserved.overlap_count(a, b)
            if in_use:
                raise AllocatorError(
                    f"cannot reserve {hx(a * FRAME_SIZE)}-{hx(b * FRAME_SIZE - 1)}: "
                    f"{in_use} frame(s) of it are allocated"
                )
        for a, b in pieces:
            self._free -= (b - a) - self._count_set(a, b)
            self._set(a, b, True)
            self._reserved.remove(a, b)
            self._reserved.add(a, b)
            self._sync(a >> 6, ((b - 1) >> 6) + 1)

    def usage(self) -> Usage:
        """Frame counts of usable RAM (reserved frames count as used)."""
        return Usage(self.total, self._free, self.total - self._free)

    def bookkeeping_bytes(self) -> int:
        """Bytes of per-frame state: the bitmap itself."""
        return self.bitmap_bytes
