"""Foundation benchmarks (issue 2): map_range speed, scalar translate speed, host memory.

Run: ``python benchmarks/bench_foundation.py``. Each figure is a median; each ratio is against a
baseline measured in the same run (a per-page Python loop that calls ``map`` for map_range, a
bare ``struct.unpack_from`` 4-level walk for translate, the hardware's own bytes for memory).
"""

from __future__ import annotations

import gc
import random
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _util import median_time, report, rss_bytes
from pagewalk import AddressSpace, Perm, PhysicalMemory, make_mode
from pagewalk.alloc import SimpleFrameAllocator
from pagewalk.walk import translate

GIB = 1 << 30
BASE_VA = 0xFFFF888000000000


def fresh(ram: int = 3 * GIB) -> tuple[PhysicalMemory, AddressSpace]:
    mem = PhysicalMemory(ram)
    frames = SimpleFrameAllocator(2 * GIB, ram - 2 * GIB)
    return mem, AddressSpace(make_mode("x86_64"), mem, frames)


def bench_map_range() -> None:
    pages = GIB // 4096

    def fast() -> None:
        _, space = fresh()
        space.map_range(BASE_VA, 0, GIB, Perm.READ | Perm.WRITE, page_sizes=(4096,)).ignore()

    def slow_sample() -> None:  # per-page map() of 1/64 of the range, scaled below
        _, space = fresh()
        for i in range(pages // 64):
            space.map(BASE_VA + i * 4096, i * 4096).ignore()

    t_fast = median_time(fast)
    t_slow = median_time(slow_sample, repeat=3) * 64
    report("map_range 1 GiB in 4 KiB pages", pages / t_fast, "pages/s")
    report("  baseline: map() one page at a time (extrapolated)", pages / t_slow, "pages/s")
    report("  ratio map_range / per-page map", t_slow / t_fast, "x")


def bench_translate() -> None:
    mem, space = fresh()
    space.map_range(BASE_VA, 0, GIB, Perm.READ | Perm.WRITE, page_sizes=(4096,)).ignore()
    rng = random.Random(1)
    vas = [BASE_VA + rng.randrange(GIB) for _ in range(50_000)]
    mode, roots = space.mode, space.roots
    t = median_time(lambda: [translate(mem, mode, roots, va) for va in vas], repeat=3)
    raw = mem._mm  # the baseline reads the same bytes with no decoding at all
    unpack = struct.Struct("<Q").unpack_from

    def bare() -> None:
        for va in vas:
            table = roots[0]
            for shift in (39, 30, 21, 12):
                e = unpack(raw, table + ((va >> shift) & 511) * 8)[0]
                table = e & 0x000FFFFFFFFFF000

    t_bare = median_time(bare, repeat=3)
    report("scalar translate (x86_64, 4 levels, random VAs)", len(vas) / t, "calls/s")
    report("  baseline: bare struct walk, no decode/checks", len(vas) / t_bare, "calls/s")
    report("  ratio translate / bare walk", t_bare / t, "x")


def bench_memory() -> None:
    gc.collect()
    before = rss_bytes()
    _mem, space = fresh(ram=20 * GIB)
    gib = 16
    space.map_range(BASE_VA, 0, gib * GIB, Perm.READ | Perm.WRITE, page_sizes=(4096,)).ignore()
    after = rss_bytes()
    pages = gib * GIB // 4096
    tables = len(space.owned)
    hw = tables * 4096
    report(f"host RSS for {gib} GiB mapped in 4 KiB pages", (after - before) / 2**20, "MiB")
    report("  hardware tables (8 bytes/PTE + upper levels)", hw / 2**20, "MiB")
    report("  host bytes per mapped 4 KiB page", (after - before) / pages, "bytes")
    report("  ratio host / hardware", (after - before) / hw, "x")


if __name__ == "__main__":
    bench_map_range()
    bench_translate()
    bench_memory()
