"""Read-only physical memory over a dump file: segments of guest-physical memory, mapped lazily.

A dump is a file whose bytes hold guest-physical memory in one or more segments (a raw image is
one segment at PA 0; an ELF core has one per ``PT_LOAD``, whose ``p_paddr`` is the guest-physical
address, System V gABI "Program Header"). The file is memory-mapped and viewed as a numpy array
(:mod:`pagewalk.memory.files` opens, inflates and maps it), so nothing is read until a table is,
and a 1 TiB sparse file costs nothing; scans read only the file's data extents, never its holes.
The reads are those of every segmented memory (:mod:`pagewalk.memory.segments`); page tables are
read as the hardware reads them (Intel SDM vol. 3A §4.1, Arm ARM D8.2, RISC-V privileged spec
§10.3).
"""

from __future__ import annotations

import itertools
import mmap
from collections.abc import Sequence

from pagewalk.errors import DumpError, hx
from pagewalk.memory.files import (
    CHUNK,
    ELF_MAGIC,
    GZIP_MAGIC,
    TEXT_LIMIT,
    ZSTD_MAGIC,
    ZSTD_STEP,
    MappedFile,
    data_extents,
    map_file,
    open_file,
    open_regular,
    read_regular_file,
    sniff,
)
from pagewalk.memory.protocols import Memory, Segment
from pagewalk.memory.segments import SegmentedMemory

_MASK64 = (1 << 64) - 1

# Memory, Segment and the file helpers are imported from here by older code: kept importable.
__all__ = [
    "CHUNK",
    "ELF_MAGIC",
    "GZIP_MAGIC",
    "TEXT_LIMIT",
    "ZSTD_MAGIC",
    "ZSTD_STEP",
    "FileMemory",
    "MappedFile",
    "Memory",
    "Segment",
    "data_extents",
    "map_file",
    "open_file",
    "open_regular",
    "read_regular_file",
    "sniff",
]


class FileMemory(SegmentedMemory):
    """Physical memory made of file segments (read-only).

    Args:
        buf: the mapped file (kept open while this object lives); a :class:`MappedFile` (what
            :func:`map_file` returns) also lets :meth:`data_spans` skip the file's holes.
        segments: where each run of physical memory sits in the file.
        source: the file name, for messages.

    Raises:
        DumpError: a segment that is not made of integers, lies outside the 64-bit physical
            address space or beyond the end of the file, or overlaps another.
    """

    def __init__(self, buf: mmap.mmap, segments: Sequence[Segment], source: str) -> None:
        for s in segments:
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in vars(s).values()):
                raise DumpError(f"{source}: segment {s} is not made of integers")
        segs = sorted(s for s in segments if s.size > 0)
        if not segs:
            raise DumpError(f"{source}: no physical memory in the dump")
        size = len(buf)
        for s in segs:
            if s.pa < 0 or s.pa + s.size > _MASK64:
                raise DumpError(
                    f"{source}: segment of {hx(s.size)} bytes at PA {hx(s.pa)} lies outside the "
                    "64-bit physical address space"
                )
            if s.offset < 0 or s.offset + s.size > size:
                raise DumpError(
                    f"{source}: segment for PA {hx(s.pa)} needs file bytes "
                    f"{hx(s.offset)}-{hx(s.offset + s.size)} but the file ends at {hx(size)} "
                    "(truncated dump?)"
                )
        for a, b in itertools.pairwise(segs):
            if b.pa < a.pa + a.size:
                raise DumpError(f"{source}: segments at PA {hx(a.pa)} and {hx(b.pa)} overlap")
        self.source = source
        self._set_segments(buf, _coalesce(segs))
        self.writable = False

    def _outside(self) -> str:
        return f"the dump's memory ({len(self.segments)} segment(s) up to {hx(self.end)})"

    def data_spans(self, align: int = 1 << 16) -> list[tuple[int, int]]:
        """``(pa, size)`` runs of memory whose file bytes hold data: what a scan must read.

        Holes in the file read as zeros and hold no table, so they are left out. Each run is
        widened outward to ``align`` (within its segment), so a table that starts in a hole
        but ends in data is kept; runs never cross a segment's edge. Without the file (a buffer
        that is no :class:`MappedFile`), or on a file system without hole support, every
        segment is one run.
        """
        fd = self._buf.fd if isinstance(self._buf, MappedFile) else None
        out: list[tuple[int, int]] = []
        for s in self.segments:
            runs = (
                [(s.offset, s.size)]
                if fd is None
                else data_extents(fd, s.offset, s.offset + s.size)
            )
            first = len(out)
            for off, n in runs:
                start = s.pa + (off - s.offset)
                lo = max(s.pa, start // align * align)
                hi = min(s.pa + s.size, -(-(start + n) // align) * align)
                if len(out) > first and lo <= out[-1][0] + out[-1][1]:
                    base = out[-1][0]
                    out[-1] = (base, max(hi, base + out[-1][1]) - base)
                else:
                    out.append((lo, hi - lo))
        return out

    def __repr__(self) -> str:
        return f"FileMemory({self.source}, {len(self.segments)} segment(s), end={hx(self.end)})"


def _coalesce(segs: list[Segment]) -> list[Segment]:
    """Join segments adjacent both in PA and in the file, so a table never straddles two."""
    out = [segs[0]]
    for s in segs[1:]:
        last = out[-1]
        if s.pa == last.pa + last.size and s.offset == last.offset + last.size:
            out[-1] = Segment(last.pa, last.size + s.size, last.offset)
        else:
            out.append(s)
    return out
