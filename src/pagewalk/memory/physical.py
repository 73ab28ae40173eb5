"""Simulated physical memory: RAM regions with holes, committed lazily, saved as a raw image.

The whole physical address range up to the end of the highest region is one anonymous private
mapping (``MAP_NORESERVE``), viewed as a numpy array, so a 64 GiB machine costs only the pages
that are touched. Reads and writes outside the RAM regions raise :class:`PhysicalMemoryError`.
An image is a raw file whose offset is the physical address; it is written through
:mod:`pagewalk.safeio` (a temporary file, then a rename; never onto a link or a device), so a
crash never leaves half an image, and untouched memory is left as holes in a sparse file.
Loading maps the file copy-on-write, so nothing is read until it is used and the file is never
changed behind the user's back. Page tables are plain bytes here, as hardware sees
them (Intel SDM vol. 3A §4.1: tables live in physical memory; likewise Arm ARM D8 and RISC-V).
"""

from __future__ import annotations

import bisect
import itertools
import mmap
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pagewalk.errors import ConfigError, PhysicalMemoryError, hx
from pagewalk.safeio import Output, Source, replacing

MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)
#: granularity of the record of which memory was written (what `save` copies)
CHUNK_SHIFT = 21
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

U64Array = npt.NDArray[np.uint64]


@dataclass(frozen=True, order=True)
class Region:
    """A run of RAM: ``[base, base + size)``."""

    base: int
    size: int

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.base + self.size

    def __str__(self) -> str:
        return f"{hx(self.base)}-{hx(self.end - 1)}"


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


class PhysicalMemory:
    """Physical RAM made of regions, backed by one lazily committed mapping.

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
        self.regions: tuple[Region, ...] = tuple(spans)
        self.end = spans[-1].end
        self._starts = [r.base for r in spans]
        self._simple = len(spans) == 1 and spans[0].base == 0
        if _backing is None:
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE
            _backing = mmap.mmap(-1, self.end, flags=flags)
        self._mm = _backing
        self.writable = _writable
        self._u8: npt.NDArray[np.uint8] = np.frombuffer(_backing, dtype=np.uint8, count=self.end)
        self._touched = np.zeros((self.end >> CHUNK_SHIFT) + 1, dtype=np.bool_)

    # ------------------------------------------------------------------------- shape
    @property
    def size(self) -> int:
        """Bytes of RAM (holes excluded)."""
        return sum(r.size for r in self.regions)

    def is_ram(self, pa: int, n: int = 1) -> bool:
        """Whether ``[pa, pa + n)`` lies wholly inside one RAM region."""
        if self._simple:
            return pa >= 0 and pa + n <= self.end
        i = bisect.bisect_right(self._starts, pa) - 1
        return i >= 0 and pa + n <= self.regions[i].end

    def _check(self, pa: int, n: int, what: str) -> None:
        if self._simple:
            if pa >= 0 and pa + n <= self.end:
                return
        elif self.is_ram(pa, n):
            return
        raise PhysicalMemoryError(
            f"{what} of {n} byte(s) at PA {hx(pa)} is outside RAM "
            f"({', '.join(str(r) for r in self.regions)})"
        )

    def _mark(self, pa: int, n: int) -> None:
        if not self.writable:
            raise PhysicalMemoryError(f"write at PA {hx(pa)}: this memory is read-only")
        self._touched[pa >> CHUNK_SHIFT : ((pa + n - 1) >> CHUNK_SHIFT) + 1] = True

    # ------------------------------------------------------------------------- reads
    def read(self, pa: int, n: int) -> bytes:
        """``n`` bytes at ``pa``."""
        self._check(pa, n, "read")
        return self._mm[pa : pa + n]

    def read_u32(self, pa: int) -> int:
        """A little-endian 32-bit word."""
        self._check(pa, 4, "read")
        return int(_U32.unpack_from(self._mm, pa)[0])

    def read_u64(self, pa: int) -> int:
        """A little-endian 64-bit word."""
        self._check(pa, 8, "read")
        return int(_U64.unpack_from(self._mm, pa)[0])

    def read_entry(self, pa: int, entry_size: int) -> int:
        """One page-table entry of 4 or 8 bytes."""
        self._check(pa, entry_size, "read")
        return int((_U64 if entry_size == 8 else _U32).unpack_from(self._mm, pa)[0])

    def read_table(self, pa: int, n_entries: int, entry_size: int) -> npt.NDArray[np.uint64]:
        """A whole table as a uint64 array (one copy, one call)."""
        self._check(pa, n_entries * entry_size, "table read")
        raw = self._u8[pa : pa + n_entries * entry_size]
        dtype = np.dtype("<u8") if entry_size == 8 else np.dtype("<u4")
        return raw.view(dtype).astype(np.uint64)

    def gather(self, pas: U64Array, entry_size: int) -> U64Array:
        """The entries at every PA in ``pas`` (each aligned, each inside RAM), as uint64.

        The batch walker's one read per level. Callers check ``is_ram`` first.
        """
        usable = (self.end // entry_size) * entry_size
        words = self._u8[:usable].view(np.dtype("<u8") if entry_size == 8 else np.dtype("<u4"))
        out: U64Array = words[pas // np.uint64(entry_size)].astype(np.uint64)
        return out

    def is_ram_array(self, pas: U64Array, n: int) -> npt.NDArray[np.bool_]:
        """Vectorised :meth:`is_ram` for an array of addresses."""
        end = pas + np.uint64(n)
        if len(self.regions) == 1:
            r = self.regions[0]
            inside: npt.NDArray[np.bool_] = (pas >= np.uint64(r.base)) & (end <= np.uint64(r.end))
            return inside
        starts = np.array([r.base for r in self.regions], dtype=np.uint64)
        ends = np.array([r.end for r in self.regions], dtype=np.uint64)
        i = np.searchsorted(starts, pas, side="right").astype(np.int64) - 1
        found: npt.NDArray[np.bool_] = (i >= 0) & (end <= ends[np.maximum(i, 0)])
        return found

    def array(self) -> npt.NDArray[np.uint8]:
        """A read-only byte view of the whole physical range (holes read as zero)."""
        view = self._u8.view()
        view.flags.writeable = False
        return view

    # ------------------------------------------------------------------------ writes
    def write(self, pa: int, data: bytes | bytearray | memoryview) -> None:
        """Write bytes at ``pa``."""
        n = len(data)
        self._check(pa, n, "write")
        self._mark(pa, n)
        self._mm[pa : pa + n] = bytes(data)

    def write_u32(self, pa: int, value: int) -> None:
        """Write a little-endian 32-bit word."""
        self._check(pa, 4, "write")
        self._mark(pa, 4)
        _U32.pack_into(self._mm, pa, value)

    def write_u64(self, pa: int, value: int) -> None:
        """Write a little-endian 64-bit word."""
        self._check(pa, 8, "write")
        self._mark(pa, 8)
        _U64.pack_into(self._mm, pa, value)

    def write_entry(self, pa: int, entry_size: int, value: int) -> None:
        """Write one page-table entry of 4 or 8 bytes."""
        self._check(pa, entry_size, "write")
        self._mark(pa, entry_size)
        (_U64 if entry_size == 8 else _U32).pack_into(self._mm, pa, value)

    def write_table(self, pa: int, entries: npt.ArrayLike, entry_size: int) -> None:
        """Write consecutive entries from an array in one operation."""
        dtype = np.dtype("<u8") if entry_size == 8 else np.dtype("<u4")
        values = np.asarray(entries, dtype=np.uint64).astype(dtype)
        n = values.size * entry_size
        self._check(pa, n, "table write")
        self._mark(pa, n)
        self._u8[pa : pa + n] = values.view(np.uint8)

    def zero(self, pa: int, n: int) -> None:
        """Fill ``[pa, pa + n)`` with zeros."""
        self._check(pa, n, "zero")
        self._mark(pa, n)
        self._u8[pa : pa + n] = 0

    def copy(self, dst: int, src: int, n: int) -> None:
        """Copy ``n`` bytes from ``src`` to ``dst`` (a frame copy for copy-on-write)."""
        self._check(src, n, "copy source")
        self._check(dst, n, "copy destination")
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
