"""Simulated physical memory: RAM regions with holes, committed lazily, saved as a raw image.

The whole physical address range up to the end of the highest region is one anonymous private
mapping (``MAP_NORESERVE``), viewed as a numpy array, so a 64 GiB machine costs only the pages
that are touched. Reads and writes outside the RAM regions raise :class:`PhysicalMemoryError`.
The reads are those of every segmented memory (:mod:`pagewalk.memory.segments`: each region is
a segment at its own PA); this module adds the writes and the image file.
An image is a raw file whose offset is the physical address; it is written through
:mod:`pagewalk.safeio` (a temporary file, then a rename; never onto a link or a device), so a
crash never leaves half an image, and untouched memory is left as holes in a sparse file.
Loading maps the file copy-on-write, so nothing is read until it is used and the file is never
changed behind the user's back. Page tables are plain bytes here, as hardware sees
them (Intel SDM vol. 3A §4.1: tables live in physical memory; likewise Arm ARM D8 and RISC-V).
"""

from __future__ import annotations

import itertools
import mmap
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from pagewalk.errors import ConfigError, PhysicalMemoryError, hx
from pagewalk.memory.protocols import Region, Segment
from pagewalk.memory.segments import SegmentedMemory

if TYPE_CHECKING:
    from pagewalk.safeio import Output, Source

MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)
#: granularity of the record of which memory was written (what `save` copies)
CHUNK_SHIFT = 21
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

U64Array = npt.NDArray[np.uint64]

__all__ = ["CHUNK_SHIFT", "PhysicalMemory", "Region", "parse_size"]


def parse_size(text: str | int) -> int:
    """Parse ``128M``, ``4GiB``, ``0x1000`` or a plain number of bytes."""
    if isinstance(text, int):
        return text
    t = text.strip().lower().replace("_", "")
    for suffix in ("ib", "b"):
        if t.endswith(suffix) and t[: -len(suffix)][-1:] in "kmgt":
            t = t[: -len(suffix)]
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    try:
        if t and t[-1] in scale:
            return int(float(t[:-1]) * scale[t[-1]])
        return int(t, 0)
    except ValueError:
        raise ConfigError(f"cannot read size {text!r} (try 128M, 4G, 0x1000)") from None


class PhysicalMemory(SegmentedMemory):
    """Physical RAM made of regions, backed by one lazily committed mapping.

    Each region is a segment at its own PA in the mapping (offset = PA); the reads are
    :class:`~pagewalk.memory.segments.SegmentedMemory`'s.

    Args:
        size: RAM size in bytes when ``regions`` is not given (one region from 0).
        regions: ``(base, size)`` pairs; the gaps between them are holes.
    """

    def __init__(
        self,
        size: int = 128 << 20,
        *,
        regions: Sequence[tuple[int, int]] | None = None,
        _backing: mmap.mmap | None = None,
        _writable: bool = True,
    ) -> None:
        spans = [Region(b, s) for b, s in (regions if regions is not None else [(0, size)])]
        spans.sort()
        for region in spans:
            if region.size <= 0 or region.base < 0:
                raise ConfigError(f"RAM region {hx(region.base)}+{hx(region.size)} is empty")
        for a, b in itertools.pairwise(spans):
            if b.base < a.end:
                raise ConfigError(f"RAM regions {a} and {b} overlap")
        if not spans:
            raise ConfigError("physical memory needs at least one RAM region")
        end = spans[-1].end
        if _backing is None:
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE
            _backing = mmap.mmap(-1, end, flags=flags)
        self._mm = _backing
        self._set_segments(_backing, [Segment(r.base, r.size, r.base) for r in spans], end)
        self.writable = _writable
        self._touched = np.zeros((self.end >> CHUNK_SHIFT) + 1, dtype=np.bool_)

    def _outside(self) -> str:
        return f"RAM ({', '.join(str(r) for r in self.regions)})"

    def _mark(self, pa: int, n: int) -> None:
        if not self.writable:
            raise PhysicalMemoryError(f"write at PA {hx(pa)}: this memory is read-only")
        self._touched[pa >> CHUNK_SHIFT : ((pa + n - 1) >> CHUNK_SHIFT) + 1] = True

    def array(self) -> npt.NDArray[np.uint8]:
        """A read-only byte view of the whole physical range (holes read as zero)."""
        return self.segment_view().buf

    # ------------------------------------------------------------------------ writes
    def write(self, pa: int, data: bytes | bytearray | memoryview) -> None:
        """Write bytes at ``pa``."""
        n = len(data)
        self._offset(pa, n, "write")
        self._mark(pa, n)
        self._mm[pa : pa + n] = bytes(data)

    def write_u32(self, pa: int, value: int) -> None:
        """Write a little-endian 32-bit word."""
        self._offset(pa, 4, "write")
        self._mark(pa, 4)
        _U32.pack_into(self._mm, pa, value)

    def write_u64(self, pa: int, value: int) -> None:
        """Write a little-endian 64-bit word."""
        self._offset(pa, 8, "write")
        self._mark(pa, 8)
        _U64.pack_into(self._mm, pa, value)

    def write_entry(self, pa: int, entry_size: int, value: int) -> None:
        """Write one page-table entry of 4 or 8 bytes."""
        self._offset(pa, entry_size, "write")
        self._mark(pa, entry_size)
        (_U64 if entry_size == 8 else _U32).pack_into(self._mm, pa, value)

    def write_table(self, pa: int, entries: npt.ArrayLike, entry_size: int) -> None:
        """Write consecutive entries from an array in one operation."""
        dtype = np.dtype("<u8") if entry_size == 8 else np.dtype("<u4")
        values = np.asarray(entries, dtype=np.uint64).astype(dtype)
        n = values.size * entry_size
        self._offset(pa, n, "table write")
        self._mark(pa, n)
        self._u8[pa : pa + n] = values.view(np.uint8)

    def zero(self, pa: int, n: int) -> None:
        """Fill ``[pa, pa + n)`` with zeros."""
        self._offset(pa, n, "zero")
        self._mark(pa, n)
        self._u8[pa : pa + n] = 0

    def copy(self, dst: int, src: int, n: int) -> None:
        """Copy ``n`` bytes from ``src`` to ``dst`` (a frame copy for copy-on-write)."""
        self._offset(src, n, "copy source")
        self._offset(dst, n, "copy destination")
        self._mark(dst, n)
        self._u8[dst : dst + n] = self._u8[src : src + n]

    # ------------------------------------------------------------------- persistence
    def touched_chunks(self) -> Iterator[tuple[int, int]]:
        """``(pa, size)`` of every chunk that may hold nonzero data."""
        chunk = 1 << CHUNK_SHIFT
        for index in np.flatnonzero(self._touched):
            start = int(index) << CHUNK_SHIFT
            yield start, min(chunk, self.end - start)

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        overwrite: bool = True,
        inputs: Iterable[Source] = (),
    ) -> None:
        """Write a raw image (offset = PA) through :func:`pagewalk.safeio.replacing`: a
        temporary file, then a rename; links, devices and ``inputs`` are refused.

        Args:
            overwrite: replace an existing regular file (the CLI passes ``--force``).
            inputs: files this image may not be written over.

        Raises:
            OutputError: a target that may not be written, or a failed write (full disk).
        """
        from pagewalk.safeio import replacing

        with replacing([path], inputs=inputs, force=overwrite) as (out,):
            self.write_image(out)

    def write_image(self, out: Output) -> None:
        """Write the raw image into ``out``; untouched and all-zero chunks stay holes."""
        out.truncate(self.end)
        for start, size in self.touched_chunks():
            block = self._u8[start : start + size]
            if block.any():
                out.pwrite(block.data, start)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        regions: Iterable[tuple[int, int]] | None = None,
        writable: bool = True,
    ) -> PhysicalMemory:
        """Map a raw image (offset = PA) copy-on-write; the file itself is never changed.

        Raises:
            PhysicalMemoryError: if the file cannot be opened or is empty.
        """
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    raise PhysicalMemoryError(f"image {path} is empty")
                backing = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)
        except OSError as exc:
            raise PhysicalMemoryError(f"cannot open image {path}: {exc.strerror}") from None
        spans = list(regions) if regions is not None else [(0, size)]
        if any(base + length > size for base, length in spans):
            backing.close()
            raise PhysicalMemoryError(f"image {path} ({hx(size)} bytes) is shorter than its RAM")
        mem = cls(_backing=backing, regions=spans, _writable=writable)
        mem._touched[:] = True
        return mem

    def __repr__(self) -> str:
        regions = ", ".join(str(r) for r in self.regions)
        return f"PhysicalMemory({regions})"
