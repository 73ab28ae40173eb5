"""Physical memory of a running machine, read through a cache of aligned chunks.

One idea: the :class:`~pagewalk.memory.protocols.Memory` ladder over a slow reader
(``fetch(pa, n) -> bytes``: the gdbstub's ``m`` or QMP's ``pmemsave``), so every walker and
inspector runs on a live machine unchanged. Reads go by aligned chunks (:data:`CHUNK`, 4 KiB),
each fetched once per command and kept in a bounded LRU cache (:data:`CACHE_LIMIT`, 256 MiB),
so a full ``maps`` reads each table once and nothing else; a larger read fetches its missing
chunks in one request per run, which the client pipelines (one larger than the cache bypasses
it). A read must lie inside the RAM layout learned from the machine (QEMU's ``info mtree -f``,
:mod:`pagewalk.live.machine_regs`), as in a dump. Tables are little-endian 4- or 8-byte
entries, read as the hardware reads them (Intel SDM vol. 3A §4.1, Arm ARM D8.2, RISC-V
privileged spec).

The memory is read only: a stopped machine's tables do not change under it, and nothing here
writes (:class:`~pagewalk.memory.protocols.EntryWriter` is deliberately missing).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pagewalk.errors import PhysicalMemoryError, hx
from pagewalk.memory.protocols import Region

U64Array = npt.NDArray[np.uint64]
#: bytes per cached chunk (aligned): one 4 KiB table, so a listing reads exactly its tables
CHUNK = 1 << 12
#: the most bytes the cache keeps before it drops the least recently used chunks
CACHE_LIMIT = 256 << 20


@dataclass
class ReadStats:
    """What the machine was asked for: chunks fetched, bytes fetched, reads served."""

    chunks: int = 0
    bytes: int = 0
    hits: int = 0


class LiveMemory:
    """Read-only physical memory over ``fetch``, cached by aligned chunks.

    Args:
        fetch: reads ``n`` bytes at ``pa`` from the machine (inside one RAM region).
        regions: the RAM, sorted and disjoint.
        source: the machine as messages name it (``gdbstub 127.0.0.1:1234``).
        chunk: bytes per cached chunk (a power of two).
        limit: the most bytes cached.
    """

    writable = False

    def __init__(
        self,
        fetch: Callable[[int, int], bytes],
        regions: Sequence[Region],
        source: str,
        chunk: int = CHUNK,
        limit: int = CACHE_LIMIT,
    ) -> None:
        if not regions:
            raise PhysicalMemoryError(f"{source}: the machine reports no RAM")
        self._fetch, self.source = fetch, source
        self.regions = tuple(sorted(regions))
        self.end = self.regions[-1].end
        self._starts = [r.base for r in self.regions]
        self._np_starts = np.array(self._starts, dtype=np.uint64)
        self._np_ends = np.array([r.end for r in self.regions], dtype=np.uint64)
        self.chunk, self.limit = chunk, max(limit, chunk)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cached = 0
        self.stats = ReadStats()

    def __repr__(self) -> str:
        return f"LiveMemory({self.source}, {len(self.regions)} region(s) up to {hx(self.end)})"

    # ------------------------------------------------------------------ layout
    def _region(self, pa: int, n: int) -> Region | None:
        i = bisect.bisect_right(self._starts, pa) - 1
        if i < 0 or pa < 0:
            return None
        r = self.regions[i]
        return r if pa + n <= r.end else None

    def is_ram(self, pa: int, n: int = 1) -> bool:
        """Whether ``[pa, pa + n)`` lies wholly inside one RAM region."""
        return self._region(pa, n) is not None

    def is_ram_array(self, pas: U64Array, n: int) -> npt.NDArray[np.bool_]:
        """Vectorised :meth:`is_ram` (an access that wraps past 2**64 is outside)."""
        ends = pas + np.uint64(n)
        i = np.searchsorted(self._np_starts, pas, side="right").astype(np.int64) - 1
        found: npt.NDArray[np.bool_] = (
            (i >= 0) & (ends >= pas) & (ends <= self._np_ends[np.maximum(i, 0)])
        )
        return found

    # ------------------------------------------------------------------ reads
    def read(self, pa: int, n: int) -> bytes:
        """``n`` bytes at ``pa``, inside one RAM region.

        Raises:
            PhysicalMemoryError: the read leaves the RAM (naming the address).
        """
        region = self._region(pa, n)
        if region is None:
            raise PhysicalMemoryError(
                f"read of {n} byte(s) at PA {hx(pa)} is outside the RAM of {self.source} "
                f"({len(self.regions)} region(s) up to {hx(self.end)})"
            )
        first, last = pa // self.chunk, (pa + n - 1) // self.chunk
        if (last - first + 1) * self.chunk > self.limit // 2:  # would evict its own chunks
            self.stats.bytes += n
            return self._fetch(pa, n)
        self._load(range(first, last + 1), region)
        if first == last:
            data = self._cache[first]
            off = pa - first * self.chunk
            return data[off : off + n]
        out = b"".join(self._cache[c] for c in range(first, last + 1))
        off = pa - first * self.chunk
        return out[off : off + n]

    def _load(self, chunks: range, region: Region) -> None:
        """Fetch the chunks not cached (clipped to ``region``): each run of missing chunks in
        one request, which the client pipelines (a large read costs one round of packets)."""
        missing: list[int] = []
        for c in chunks:
            if c in self._cache:
                self._cache.move_to_end(c)
                self.stats.hits += 1
            elif missing and missing[-1] == c - 1:
                missing.append(c)
            else:
                self._fetch_run(missing, region)
                missing = [c]
        self._fetch_run(missing, region)

    def _fetch_run(self, run: list[int], region: Region) -> None:
        if not run:
            return
        size = self.chunk
        lo = max(run[0] * size, region.base)
        hi = min((run[-1] + 1) * size, region.end)
        # pad the ends clipped by the region, so offsets stay chunk-relative
        data = bytes(lo - run[0] * size) + self._fetch(lo, hi - lo)
        data += bytes((run[-1] + 1) * size - hi)
        self.stats.chunks += len(run)
        self.stats.bytes += hi - lo
        for i, c in enumerate(run):
            self._cache[c] = data[i * size : (i + 1) * size]
            self._cached += size
        while self._cached > self.limit:
            _, old = self._cache.popitem(last=False)
            self._cached -= len(old)

    def read_entry(self, pa: int, entry_size: int) -> int:
        """One little-endian page-table entry of 4 or 8 bytes."""
        return int.from_bytes(self.read(pa, entry_size), "little")

    def read_table(self, pa: int, n_entries: int, entry_size: int) -> U64Array:
        """A whole table as a uint64 array."""
        raw = self.read(pa, n_entries * entry_size)
        dtype = np.dtype("<u8") if entry_size == 8 else np.dtype("<u4")
        return np.frombuffer(raw, dtype=dtype).astype(np.uint64)

    def gather(self, pas: U64Array, entry_size: int) -> U64Array:
        """The entries at every PA in ``pas`` (each inside RAM), as uint64, by chunk."""
        out = np.zeros(len(pas), dtype=np.uint64)
        if not len(pas):
            return out
        chunk_of = pas // np.uint64(self.chunk)
        for c in np.unique(chunk_of):
            sel = np.nonzero(chunk_of == c)[0]
            for j in sel:
                out[j] = self.read_entry(int(pas[j]), entry_size)
        return out
