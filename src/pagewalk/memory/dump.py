"""Read-only physical memory over a dump file: segments of guest-physical memory, mapped lazily.

A dump is a file whose bytes hold guest-physical memory in one or more segments (a raw image is
one segment at PA 0; an ELF core has one per ``PT_LOAD``, whose ``p_paddr`` is the guest-physical
address, System V gABI "Program Header"). The file is memory-mapped and viewed as a numpy array,
so nothing is read until a table is, and a 1 TiB sparse file costs nothing. Compressed dumps
(gzip, zstd) are inflated once into an unlinked temporary file, written sparsely in chunks, then
mapped the same way: memory stays bounded whatever the dump's size. Page tables are read as the
hardware reads them (Intel SDM vol. 3A §4.1, Arm ARM D8.2, RISC-V privileged spec §10.3).
"""

from __future__ import annotations

import bisect
import gzip
import itertools
import mmap
import os
import struct
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

from pagewalk.errors import DumpError, PhysicalMemoryError, hx
from pagewalk.memory.physical import Region

U64Array = npt.NDArray[np.uint64]
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ELF_MAGIC = b"\x7fELF"
#: bytes inflated per step (and the granularity of holes left in the temporary file)
CHUNK = 1 << 20


class Memory(Protocol):
    """What inspectors need from physical memory, simulated or dumped."""

    regions: tuple[Region, ...]
    end: int

    def read(self, pa: int, n: int) -> bytes: ...

    def read_entry(self, pa: int, entry_size: int) -> int: ...

    def read_table(self, pa: int, n_entries: int, entry_size: int) -> U64Array: ...

    def is_ram(self, pa: int, n: int = 1) -> bool: ...

    def is_ram_array(self, pas: U64Array, n: int) -> npt.NDArray[np.bool_]: ...

    def gather(self, pas: U64Array, entry_size: int) -> U64Array: ...


@dataclass(frozen=True, order=True)
class Segment:
    """``size`` bytes of guest-physical memory at ``pa``, stored at file ``offset``."""

    pa: int
    size: int
    offset: int


class FileMemory:
    """Physical memory made of file segments (read-only).

    Args:
        buf: the mapped file (kept open while this object lives).
        segments: where each run of physical memory sits in the file.
        source: the file name, for messages.

    Raises:
        DumpError: a segment beyond the end of the file, or segments that overlap.
    """

    def __init__(self, buf: mmap.mmap, segments: Sequence[Segment], source: str) -> None:
        segs = sorted(s for s in segments if s.size > 0)
        if not segs:
            raise DumpError(f"{source}: no physical memory in the dump")
        size = len(buf)
        for s in segs:
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
        self._buf = buf
        self._u8: npt.NDArray[np.uint8] = np.frombuffer(buf, dtype=np.uint8)
        self.segments = tuple(_coalesce(segs))
        self.regions = tuple(Region(s.pa, s.size) for s in self.segments)
        self.end = self.regions[-1].end
        self._starts = [s.pa for s in self.segments]
        self._np_starts = np.array(self._starts, dtype=np.uint64)
        self._np_ends = np.array([s.pa + s.size for s in self.segments], dtype=np.uint64)
        self._np_delta = np.array([s.offset - s.pa for s in self.segments], dtype=np.int64)
        self.writable = False

    @property
    def size(self) -> int:
        """Bytes of memory in the dump (holes excluded)."""
        return sum(s.size for s in self.segments)

    def _offset(self, pa: int, n: int, what: str) -> int:
        i = bisect.bisect_right(self._starts, pa) - 1
        if i >= 0 and pa >= 0:
            s = self.segments[i]
            if pa + n <= s.pa + s.size:
                return s.offset + (pa - s.pa)
        raise PhysicalMemoryError(
            f"{what} of {n} byte(s) at PA {hx(pa)} is outside the dump's memory "
            f"({len(self.segments)} segment(s) up to {hx(self.end)})"
        )

    def is_ram(self, pa: int, n: int = 1) -> bool:
        """Whether ``[pa, pa + n)`` lies inside one segment."""
        i = bisect.bisect_right(self._starts, pa) - 1
        return i >= 0 and pa >= 0 and pa + n <= self.segments[i].pa + self.segments[i].size

    def read(self, pa: int, n: int) -> bytes:
        """``n`` bytes at ``pa``."""
        off = self._offset(pa, n, "read")
        return bytes(self._buf[off : off + n])

    def read_entry(self, pa: int, entry_size: int) -> int:
        """One page-table entry of 4 or 8 bytes."""
        off = self._offset(pa, entry_size, "read")
        return int((_U64 if entry_size == 8 else _U32).unpack_from(self._buf, off)[0])

    def read_table(self, pa: int, n_entries: int, entry_size: int) -> U64Array:
        """A whole table as a uint64 array (one slice of the mapped file)."""
        n = n_entries * entry_size
        off = self._offset(pa, n, "table read")
        dtype = np.dtype("<u8") if entry_size == 8 else np.dtype("<u4")
        return self._u8[off : off + n].view(dtype).astype(np.uint64)

    def _seg_index(self, pas: U64Array) -> npt.NDArray[np.int64]:
        return np.searchsorted(self._np_starts, pas, side="right").astype(np.int64) - 1

    def is_ram_array(self, pas: U64Array, n: int) -> npt.NDArray[np.bool_]:
        """Vectorised :meth:`is_ram`."""
        i = self._seg_index(pas)
        inside: npt.NDArray[np.bool_] = (i >= 0) & (
            pas + np.uint64(n) <= self._np_ends[np.maximum(i, 0)]
        )
        return inside

    def gather(self, pas: U64Array, entry_size: int) -> U64Array:
        """The entries at every PA in ``pas`` (each inside the dump), as uint64."""
        i = np.maximum(self._seg_index(pas), 0)
        offs = (pas.astype(np.int64) + self._np_delta[i]).astype(np.int64)
        width = np.arange(entry_size, dtype=np.int64)
        raw = self._u8[offs[:, None] + width[None, :]]
        dtype = np.dtype("<u8") if entry_size == 8 else np.dtype("<u4")
        out: U64Array = np.ascontiguousarray(raw).view(dtype).reshape(-1).astype(np.uint64)
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


# --------------------------------------------------------------------------------- opening files
def map_file(f: IO[bytes], source: str) -> mmap.mmap:
    """Map an open file read-only (a shared read-only map: no commit charge, even for 1 TiB).

    Raises:
        DumpError: an empty file.
    """
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        raise DumpError(f"{source}: the file is empty")
    return mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)


def open_file(path: str | os.PathLike[str]) -> tuple[IO[bytes], str]:
    """Open a dump, inflating gzip or zstd into a temporary file; returns (file, kind).

    ``kind`` is ``gzip``, ``zstd`` or ``plain``. The caller closes the file.

    Raises:
        DumpError: the file cannot be opened or the compressed stream is corrupt.
    """
    source = os.fspath(path)
    try:
        f: IO[bytes] = open(path, "rb")  # noqa: SIM115 - the caller owns it
    except OSError as exc:
        raise DumpError(f"cannot open dump {source}: {exc.strerror}") from None
    head = f.read(4)
    f.seek(0)
    if head[:2] == GZIP_MAGIC:
        with f:
            return _inflate(gzip.GzipFile(fileobj=f), source, "gzip"), "gzip"
    if head == ZSTD_MAGIC:
        import zstandard

        with f:
            reader = zstandard.ZstdDecompressor().stream_reader(f)
            return _inflate(reader, source, "zstd"), "zstd"
    return f, "plain"


def _inflate(stream: Any, source: str, kind: str) -> IO[bytes]:
    """Copy a decompressed stream into an unlinked temporary file, leaving zero chunks as holes."""
    out = tempfile.TemporaryFile(prefix="pagewalk-dump-")  # noqa: SIM115 - returned open
    pos = 0
    try:
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            if chunk.count(0) != len(chunk):
                out.seek(pos)
                out.write(chunk)
            pos += len(chunk)
        out.truncate(pos)
    except Exception as exc:  # zlib, zstd and EOF errors all mean a corrupt stream
        out.close()
        raise DumpError(
            f"{source}: corrupt {kind} stream near uncompressed offset {hx(pos)} ({exc})"
        ) from None
    out.seek(0)
    return out


def sniff(f: IO[bytes]) -> str:
    """``elf`` or ``raw``, from the first bytes."""
    head = f.read(4)
    f.seek(0)
    return "elf" if head == ELF_MAGIC else "raw"


def data_extents(f: IO[bytes], limit: int | None = None) -> list[tuple[int, int]]:
    """(offset, size) runs of a sparse file that hold data (SEEK_DATA/SEEK_HOLE).

    Filesystems without hole support report the whole file as data.
    """
    size = os.fstat(f.fileno()).st_size if limit is None else limit
    fd = f.fileno()
    out: list[tuple[int, int]] = []
    pos = 0
    try:
        while pos < size:
            start = os.lseek(fd, pos, os.SEEK_DATA)
            if start >= size:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            out.append((start, end - start))
            pos = end
    except OSError:  # ENXIO: no data past pos; EINVAL: no hole support
        if not out and pos == 0:
            return [(0, size)]
    return out
