"""Read-only physical memory over a dump file: segments of guest-physical memory, mapped lazily.

A dump is a file whose bytes hold guest-physical memory in one or more segments (a raw image is
one segment at PA 0; an ELF core has one per ``PT_LOAD``, whose ``p_paddr`` is the guest-physical
address, System V gABI "Program Header"). The file is memory-mapped and viewed as a numpy array,
so nothing is read until a table is, and a 1 TiB sparse file costs nothing; scans read only the
file's data extents (``lseek`` ``SEEK_DATA``/``SEEK_HOLE``), never its holes. Compressed dumps
(gzip, RFC 1952; zstd, RFC 8878, every frame) are inflated once into an unlinked temporary file,
written sparsely, in pieces of bounded size; a stream cut short or corrupt is an error that names
the offset. Every input is opened only if it is a regular file (symbolic links followed), checked
before the open so a FIFO or a device never blocks or wakes up, and text inputs (register files,
memory maps, specs) are read whole only up to :data:`TEXT_LIMIT`. Page tables are read as the
hardware reads them (Intel SDM vol. 3A §4.1, Arm ARM D8.2, RISC-V privileged spec §10.3).
"""

from __future__ import annotations

import bisect
import errno
import gzip
import itertools
import mmap
import os
import stat
import struct
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Protocol

import numpy as np
import numpy.typing as npt

from pagewalk.errors import DumpError, PagingError, PhysicalMemoryError, hx
from pagewalk.memory.physical import Region

U64Array = npt.NDArray[np.uint64]
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_MASK64 = (1 << 64) - 1
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ELF_MAGIC = b"\x7fELF"
#: bytes inflated per step (and the granularity of holes left in the temporary file)
CHUNK = 1 << 20
#: compressed bytes fed to zstd per call: zstd inflates at most ~32768:1 (a 128 KiB RLE block
#: in 4 bytes), so one call never yields more than ~32 MiB, whatever the input
ZSTD_STEP = 1 << 10
#: the largest text input read whole: a register file, a memory map, a spec
TEXT_LIMIT = 16 << 20


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
        self._buf = buf
        self._u8: npt.NDArray[np.uint8] = np.frombuffer(buf, dtype=np.uint8)
        self.segments = tuple(_coalesce(segs))
        self.regions = tuple(Region(s.pa, s.size) for s in self.segments)
        self.end = self.regions[-1].end
        self._starts = [s.pa for s in self.segments]
        self._np_starts = np.array(self._starts, dtype=np.uint64)
        self._np_ends = np.array([s.pa + s.size for s in self.segments], dtype=np.uint64)
        # file offset - PA, modulo 2**64 (a segment high in PA has a "negative" delta)
        self._np_delta = np.array(
            [(s.offset - s.pa) & _MASK64 for s in self.segments], dtype=np.uint64
        )
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
        """Vectorised :meth:`is_ram` (an access that wraps past 2**64 is outside)."""
        i = self._seg_index(pas)
        ends = pas + np.uint64(n)
        inside: npt.NDArray[np.bool_] = (
            (i >= 0) & (ends >= pas) & (ends <= self._np_ends[np.maximum(i, 0)])
        )
        return inside

    def gather(self, pas: U64Array, entry_size: int) -> U64Array:
        """The entries at every PA in ``pas`` (each inside the dump), as uint64."""
        i = np.maximum(self._seg_index(pas), 0)
        offs = (pas + self._np_delta[i]).astype(np.int64)  # wraps modulo 2**64, as it should
        width = np.arange(entry_size, dtype=np.int64)
        raw = self._u8[offs[:, None] + width[None, :]]
        dtype = np.dtype("<u8") if entry_size == 8 else np.dtype("<u4")
        out: U64Array = np.ascontiguousarray(raw).view(dtype).reshape(-1).astype(np.uint64)
        return out

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


# ----------------------------------------------------------------------------- regular files
def _kind(mode: int) -> str:
    """What a file that is not regular is, for messages."""
    kinds = (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def open_regular(
    path: str | os.PathLike[str], what: str = "file", error: type[PagingError] = DumpError
) -> IO[bytes]:
    """Open ``path`` for reading if it is a regular file (a symbolic link to one is fine).

    The type is checked before the open, so a FIFO (whose open blocks until a writer comes) or
    a device (whose open may act) is never opened; the open itself does not block either
    (``O_NONBLOCK``), and the type is checked again on the open descriptor, so a file swapped
    in between is caught too.

    Raises:
        error: the file cannot be opened, or is a FIFO, a device, a directory or a socket (the
            message names the path and what it is).
    """
    name = os.fspath(path)
    try:
        mode = os.stat(name).st_mode
        if stat.S_ISREG(mode):
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise error(f"cannot read {what} {name}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise error(f"{name} is {_kind(mode)}, not a regular file")
    f = os.fdopen(fd, "rb")
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # swapped for something else between the stat and the open
        f.close()
        raise error(f"{name} is {_kind(mode)}, not a regular file")
    os.set_blocking(fd, True)
    return f


def read_regular_file(
    path: str | os.PathLike[str],
    what: str = "file",
    *,
    limit: int = TEXT_LIMIT,
    error: type[PagingError] = DumpError,
) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes (a register file, a map, a spec).

    Raises:
        error: the file is not regular (see :func:`open_regular`), cannot be read, or is
            larger than ``limit``.
    """
    name = os.fspath(path)
    too_big = f"{name}: the {what} is larger than the {limit >> 20} MiB pagewalk reads"
    with open_regular(name, what, error) as f:
        try:
            if os.fstat(f.fileno()).st_size > limit:
                raise error(too_big)
            data = f.read(limit + 1)
        except OSError as exc:
            raise error(f"cannot read {what} {name}: {exc.strerror}") from None
    if len(data) > limit:  # it grew while we read
        raise error(too_big)
    return data


# --------------------------------------------------------------------------------- opening files
class MappedFile(mmap.mmap):
    """A read-only mapping that keeps its own descriptor of the file, to ask where its holes
    are (:func:`data_extents`) after the file object is closed."""

    fd: int


def map_file(f: IO[bytes], source: str) -> MappedFile:
    """Map an open file read-only (a shared read-only map: no commit charge, even for 1 TiB).

    Raises:
        DumpError: an empty file, or one that cannot be mapped.
    """
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        raise DumpError(f"{source}: the file is empty")
    try:
        buf = MappedFile(f.fileno(), size, access=mmap.ACCESS_READ)
    except (OSError, ValueError, OverflowError) as exc:
        raise DumpError(f"{source}: cannot map {hx(size)} bytes ({exc})") from None
    buf.fd = os.dup(f.fileno())
    weakref.finalize(buf, os.close, buf.fd)
    return buf


def open_file(path: str | os.PathLike[str]) -> tuple[IO[bytes], str]:
    """Open a dump, inflating gzip or zstd into a temporary file; returns (file, kind).

    ``kind`` is ``gzip``, ``zstd`` or ``plain``. The caller closes the file.

    Raises:
        DumpError: the file is not a regular file or cannot be opened, or the compressed
            stream is truncated or corrupt (the message gives the offsets).
    """
    source = os.fspath(path)
    f = open_regular(source, "dump")
    head = f.read(4)
    f.seek(0)
    if head[:2] == GZIP_MAGIC:
        with f:
            return _inflate(_gunzip(f), f, source, "gzip"), "gzip"
    if head == ZSTD_MAGIC:
        with f:
            return _inflate(_unzstd(f), f, source, "zstd"), "zstd"
    return f, "plain"


def _gunzip(f: IO[bytes]) -> Iterator[bytes]:
    """Every member's bytes; EOFError if the input ends inside a member."""
    stream = gzip.GzipFile(fileobj=f)
    while chunk := stream.read(CHUNK):
        yield chunk


def _unzstd(f: IO[bytes]) -> Iterator[bytes]:
    """Every frame's bytes (skippable frames skip); EOFError if the input ends inside a frame."""
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    frame = None
    while data := f.read(ZSTD_STEP):
        while data:
            if frame is None:
                frame = dctx.decompressobj()
            yield frame.decompress(data)
            if not frame.eof:
                break
            data, frame = frame.unused_data, None
    if frame is not None:
        raise EOFError("the input ends inside a frame")


class _SparseFile:
    """An unlinked temporary file written front to back, with all-zero pieces left as holes."""

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.TemporaryFile(prefix="pagewalk-dump-")  # noqa: SIM115
        self.size = 0
        self._at = 0

    def add(self, data: bytes) -> None:
        view = memoryview(data)
        for lo in range(0, len(view), CHUNK):
            part = view[lo : lo + CHUNK]
            if np.frombuffer(part, dtype=np.uint8).any():
                if self._at != self.size:
                    self.file.seek(self.size)
                self.file.write(part)
                self._at = self.size + len(part)
            self.size += len(part)

    def finish(self) -> IO[bytes]:
        self.file.truncate(self.size)
        self.file.seek(0)
        return self.file


def _inflate(pieces: Iterator[bytes], f: IO[bytes], source: str, kind: str) -> IO[bytes]:
    """Inflate ``pieces`` into a sparse temporary file; nothing is left behind on error."""
    out = _SparseFile()
    try:
        try:
            for piece in pieces:
                try:
                    out.add(piece)
                except OSError as exc:
                    raise DumpError(
                        f"cannot inflate {source} into a temporary file: {exc.strerror or exc}"
                    ) from None
            return out.finish()
        except DumpError:
            raise
        except EOFError:
            size = os.fstat(f.fileno()).st_size
            unit = "member" if kind == "gzip" else "frame"
            raise DumpError(
                f"{source}: truncated {kind} stream: the file ends at offset {hx(size)} inside "
                f"a {unit}, after {hx(out.size)} uncompressed bytes"
            ) from None
        except Exception as exc:  # zlib, gzip and zstd errors all mean a corrupt stream
            raise DumpError(
                f"{source}: corrupt {kind} stream near compressed offset {hx(f.tell())}, "
                f"after {hx(out.size)} uncompressed bytes ({exc})"
            ) from None
    except BaseException:
        out.file.close()
        raise


def sniff(f: IO[bytes]) -> str:
    """``elf`` or ``raw``, from the first bytes."""
    head = f.read(4)
    f.seek(0)
    return "elf" if head == ELF_MAGIC else "raw"


def data_extents(
    f: IO[bytes] | int, start: int = 0, end: int | None = None
) -> list[tuple[int, int]]:
    """``(offset, size)`` runs of ``[start, end)`` of a file that hold data, holes skipped.

    Uses ``lseek`` ``SEEK_DATA``/``SEEK_HOLE``: ENXIO from ``SEEK_DATA`` means there is no data
    at or after the offset (so a wholly sparse file has no runs at all); any other error means
    the file system cannot tell holes (EINVAL, EOPNOTSUPP), and the rest of the range counts
    as data. Moves the file position.
    """
    fd = f if isinstance(f, int) else f.fileno()
    if end is None:
        end = os.fstat(fd).st_size
    out: list[tuple[int, int]] = []
    pos = start
    while pos < end:
        try:
            lo = os.lseek(fd, pos, os.SEEK_DATA)
            if lo >= end:
                break
            hi = min(os.lseek(fd, lo, os.SEEK_HOLE), end)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break
            out.append((pos, end - pos))
            break
        out.append((lo, hi - lo))
        pos = hi
    return out
