"""Physical memory as segments of one byte buffer: the read side of simulated RAM and of dumps.

One idea: physical memory is a sorted set of segments, each ``size`` bytes of physical address
space at ``pa`` stored at ``offset`` in one buffer (a memory mapping, viewed as a numpy array).
Simulated RAM (:class:`pagewalk.memory.physical.PhysicalMemory`) keeps every byte at its own PA
(offset = PA, the gaps are holes); a dump (:class:`pagewalk.memory.dump.FileMemory`) keeps each
run where the file has it. :class:`SegmentedMemory` gives both the same reads, scalar and
vectorised, and the same view for the compiled walker (:meth:`SegmentedMemory.segment_view`).
A read must lie wholly inside one segment. Entries are little-endian 4- or 8-byte words, read
as the hardware reads them (Intel SDM vol. 3A §4.1, Arm ARM D8.2, RISC-V privileged spec).
"""

from __future__ import annotations

import bisect
import mmap
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from pagewalk.errors import PhysicalMemoryError, hx
from pagewalk.memory.protocols import Region, Segment, SegmentView

U64Array = npt.NDArray[np.uint64]
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_MASK64 = (1 << 64) - 1
#: a buffer the reads can slice and ``struct.unpack_from`` (an mmap, or bytes in tests)
Buffer = mmap.mmap | bytes | bytearray


def _dtype(entry_size: int) -> np.dtype[np.unsignedinteger[Any]]:
    return np.dtype("<u8") if entry_size == 8 else np.dtype("<u4")


class SegmentedMemory:
    """The read side of memory made of segments of one buffer (see the module docstring).

    Subclasses call :meth:`_set_segments` once, with segments sorted, non-empty, disjoint and
    inside the buffer, and may override :meth:`_outside` to word the error of a bad read.
    """

    regions: tuple[Region, ...]
    segments: tuple[Segment, ...]
    end: int
    writable: bool = False

    def _set_segments(self, buf: Buffer, segments: Sequence[Segment], count: int = -1) -> None:
        """Adopt ``buf`` (its first ``count`` bytes; -1: all) and its ``segments``."""
        self._buf = buf
        self._u8: npt.NDArray[np.uint8] = np.frombuffer(buf, dtype=np.uint8, count=count)
        self.segments = tuple(segments)
        self.regions = tuple(Region(s.pa, s.size) for s in self.segments)
        self.end = self.regions[-1].end
        self._starts = [s.pa for s in self.segments]
        first = self.segments[0]
        # one segment from PA 0 at offset 0: the buffer is the memory, no search needed
        self._simple = len(self.segments) == 1 and first.pa == 0 and first.offset == 0
        # every byte at its own PA (simulated RAM): the buffer can be indexed by PA
        self._identity = all(s.offset == s.pa for s in self.segments)
        self._np_starts = np.array(self._starts, dtype=np.uint64)
        self._np_ends = np.array([s.pa + s.size for s in self.segments], dtype=np.uint64)
        # offset - PA, modulo 2**64 (a segment high in PA has a "negative" delta)
        self._np_delta = np.array(
            [(s.offset - s.pa) & _MASK64 for s in self.segments], dtype=np.uint64
        )

    # ----------------------------------------------------------------------------- shape
    @property
    def size(self) -> int:
        """Bytes of memory (holes excluded)."""
        return sum(s.size for s in self.segments)

    def _outside(self) -> str:
        """What a read outside the segments missed, for the error message."""
        return f"the memory ({len(self.segments)} segment(s) up to {hx(self.end)})"

    def _offset(self, pa: int, n: int, what: str) -> int:
        """The buffer offset of ``[pa, pa + n)``, which must lie inside one segment.

        Raises:
            PhysicalMemoryError: naming ``what`` (read, write, ...), the address and the RAM.
        """
        if self._simple:
            if pa >= 0 and pa + n <= self.end:
                return pa
        else:
            i = bisect.bisect_right(self._starts, pa) - 1
            if i >= 0 and pa >= 0:
                s = self.segments[i]
                if pa + n <= s.pa + s.size:
                    return s.offset + (pa - s.pa)
        raise PhysicalMemoryError(
            f"{what} of {n} byte(s) at PA {hx(pa)} is outside {self._outside()}"
        )

    def is_ram(self, pa: int, n: int = 1) -> bool:
        """Whether ``[pa, pa + n)`` lies wholly inside one segment."""
        if self._simple:
            return pa >= 0 and pa + n <= self.end
        i = bisect.bisect_right(self._starts, pa) - 1
        return i >= 0 and pa >= 0 and pa + n <= self.segments[i].pa + self.segments[i].size

    def _seg_index(self, pas: U64Array) -> npt.NDArray[np.int64]:
        return np.searchsorted(self._np_starts, pas, side="right").astype(np.int64) - 1

    def is_ram_array(self, pas: U64Array, n: int) -> npt.NDArray[np.bool_]:
        """Vectorised :meth:`is_ram` (an access that wraps past 2**64 is outside)."""
        ends = pas + np.uint64(n)
        if len(self.segments) == 1:
            inside: npt.NDArray[np.bool_] = (
                (pas >= self._np_starts[0]) & (ends >= pas) & (ends <= self._np_ends[0])
            )
            return inside
        i = self._seg_index(pas)
        found: npt.NDArray[np.bool_] = (
            (i >= 0) & (ends >= pas) & (ends <= self._np_ends[np.maximum(i, 0)])
        )
        return found

    # ----------------------------------------------------------------------------- reads
    def read(self, pa: int, n: int) -> bytes:
        """``n`` bytes at ``pa``."""
        off = self._offset(pa, n, "read")
        return bytes(self._buf[off : off + n])

    def read_u32(self, pa: int) -> int:
        """A little-endian 32-bit word."""
        return int(_U32.unpack_from(self._buf, self._offset(pa, 4, "read"))[0])

    def read_u64(self, pa: int) -> int:
        """A little-endian 64-bit word."""
        return int(_U64.unpack_from(self._buf, self._offset(pa, 8, "read"))[0])

    def read_entry(self, pa: int, entry_size: int) -> int:
        """One page-table entry of 4 or 8 bytes."""
        off = self._offset(pa, entry_size, "read")
        return int((_U64 if entry_size == 8 else _U32).unpack_from(self._buf, off)[0])

    def read_table(self, pa: int, n_entries: int, entry_size: int) -> U64Array:
        """A whole table as a uint64 array (one copy, one call)."""
        n = n_entries * entry_size
        off = self._offset(pa, n, "table read")
        return self._u8[off : off + n].view(_dtype(entry_size)).astype(np.uint64)

    def gather(self, pas: U64Array, entry_size: int) -> U64Array:
        """The entries at every PA in ``pas`` (each inside one segment), as uint64.

        The batch walker's one read per level; callers check :meth:`is_ram_array` first. Where
        the buffer is indexed by PA and every entry is aligned, the buffer is read as words.
        """
        dtype = _dtype(entry_size)
        esize = np.uint64(entry_size)
        if self._identity and not (pas & np.uint64(entry_size - 1)).any():
            usable = (self.end // entry_size) * entry_size
            words: U64Array = self._u8[:usable].view(dtype)[pas // esize].astype(np.uint64)
            return words
        i = np.maximum(self._seg_index(pas), 0)
        offs = (pas + self._np_delta[i]).astype(np.int64)  # wraps modulo 2**64, as it should
        width = np.arange(entry_size, dtype=np.int64)
        raw = self._u8[offs[:, None] + width[None, :]]
        out: U64Array = np.ascontiguousarray(raw).view(dtype).reshape(-1).astype(np.uint64)
        return out

    def segment_view(self) -> SegmentView:
        """The bytes (read-only) and ``(start, end, offset - start)`` per segment, for the
        compiled walker (:mod:`pagewalk.fast`), which reads them directly."""
        view = self._u8.view()
        view.flags.writeable = False
        spans = tuple((s.pa, s.pa + s.size, s.offset - s.pa) for s in self.segments)
        return SegmentView(view, spans)
