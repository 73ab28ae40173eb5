"""Opening the files pagewalk reads: regular files only, compressed dumps inflated, holes known.

Every input is opened only if it is a regular file (symbolic links followed), checked before
the open so a FIFO or a device never blocks or wakes up, and text inputs (register files,
memory maps, specs) are read whole only up to :data:`TEXT_LIMIT`. A dump is mapped read-only
(:func:`map_file`), so nothing is read until it is used; compressed dumps (gzip, RFC 1952; zstd,
RFC 8878, every frame) are inflated once into an unlinked temporary file, written sparsely, in
pieces of bounded size; a stream cut short or corrupt is an error that names the offset. Scans
ask the file system where the data is (``lseek`` ``SEEK_DATA``/``SEEK_HOLE``,
:func:`data_extents`) and never read the holes. What the bytes mean as physical memory is
:mod:`pagewalk.memory.dump`'s business (Intel SDM vol. 3A §4.1, Arm ARM D8.2, RISC-V privileged
spec: tables live in physical memory).
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import weakref
from collections.abc import Iterator
from typing import IO

import numpy as np

from pagewalk.errors import DumpError, PagingError, hx

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
    import gzip

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
        import tempfile

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
