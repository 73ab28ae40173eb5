"""The live memory's cache: each chunk fetched once, runs of missing chunks in one request,
clipped to the RAM regions, and reads larger than the cache served around it."""

from __future__ import annotations

import pytest

from pagewalk.errors import PhysicalMemoryError
from pagewalk.live.memory import LiveMemory
from pagewalk.memory.protocols import Region

RAM = bytes((i * 7 + (i >> 12)) & 0xFF for i in range(0x40000))


def memory(limit: int = 1 << 20) -> tuple[LiveMemory, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []

    def fetch(pa: int, n: int) -> bytes:
        calls.append((pa, n))
        return RAM[pa : pa + n]

    regions = [Region(0x800, 0x1F000), Region(0x30000, 0x10000)]  # 0x800..0x1f800, 0x30000..
    return LiveMemory(fetch, regions, "test", chunk=0x1000, limit=limit), calls


def test_runs_of_missing_chunks_are_one_request_each() -> None:
    mem, calls = memory()
    assert mem.read(0x3000, 0x100) == RAM[0x3000:0x3100]
    assert mem.read(0x1000, 0x6000) == RAM[0x1000:0x7000]
    # chunk 3 was cached: the rest came as two runs, 1..2 and 4..6
    assert calls == [(0x3000, 0x1000), (0x1000, 0x2000), (0x4000, 0x3000)]
    assert mem.read(0x2FF8, 16) == RAM[0x2FF8:0x3008] and len(calls) == 3
    assert mem.stats.chunks == 6 and mem.stats.bytes == 0x6000


def test_chunks_clipped_to_the_region() -> None:
    mem, calls = memory()
    assert mem.read(0x800, 0x1000) == RAM[0x800:0x1800]
    assert calls == [(0x800, 0x1800)]  # chunk 0 starts at the region's base
    assert mem.read_entry(0x1F7F8, 8) == int.from_bytes(RAM[0x1F7F8:0x1F800], "little")
    assert calls[-1] == (0x1F000, 0x800)  # and the last one ends at its end
    with pytest.raises(PhysicalMemoryError, match="PA 0x1f800"):
        mem.read(0x1F800, 8)


def test_a_read_larger_than_the_cache_bypasses_it() -> None:
    mem, calls = memory(limit=0x4000)
    assert mem.read(0x30000, 0x10000) == RAM[0x30000:0x40000]
    assert calls == [(0x30000, 0x10000)]
    assert mem.read(0x30000, 8) == RAM[0x30000:0x30008]  # then cached as usual
    assert calls[-1] == (0x30000, 0x1000)
