"""Benchmark of the MMU: accesses per second on TLB hits and misses, and TLB hit rates.

One idea: measure what the MMU model costs against the bare walker measured in the same run
(``pagewalk.walk.translate``, no rights and no TLB), and how a set-associative TLB behaves with
4 KiB against 2 MiB pages on a strided and a random workload (Intel SDM vol. 3A §4.10.2 describes
the separate per-size TLB arrays this models). Run: ``python benchmarks/bench_mmu.py``.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from pagewalk import AddressSpace, PhysicalMemory, make_mode
from pagewalk.alloc.simple import SimpleFrameAllocator
from pagewalk.formats.base import Perm
from pagewalk.mmu import MMU, TLBConfig
from pagewalk.walk import translate

BASE = 0x4000_0000
SPAN = 64 << 20  # 64 MiB of VA: 16384 small pages or 32 large ones
RUNS = 5
N = 20_000


def build(page_size: int, config: TLBConfig | None = None) -> MMU:
    """An x86-64 MMU over ``SPAN`` bytes mapped with ``page_size`` pages."""
    mode = make_mode("x86_64")
    mem = PhysicalMemory(256 << 20)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(0x10_0000, 0xF0_0000))
    space.map_range(
        BASE, 0x1000_0000 - SPAN, SPAN, Perm.READ | Perm.WRITE, page_sizes=(page_size,)
    ).ignore()
    mmu = MMU(mem, mode, tlb=config)
    mmu.attach(space)
    return mmu


def rate(fn: Callable[[int], object], vas: list[int]) -> float:
    """Median calls per second of ``fn`` over ``vas``, over ``RUNS`` runs."""
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for va in vas:
            fn(va)
        samples.append(len(vas) / (time.perf_counter() - start))
    return statistics.median(samples)


def hit_rate(page_size: int, vas: list[int]) -> float:
    mmu = build(page_size)
    for va in vas:
        mmu.access(va)
    return mmu.tlb.stats.hit_rate


def main() -> None:
    rng = random.Random(1)
    small = build(4096)
    hot = [BASE + (i % 32) * 4096 + 8 for i in range(N)]  # 32 pages: always in the TLB
    cold = [BASE + ((i * 97) % (SPAN // 4096)) * 4096 for i in range(N)]
    mode, mem, roots = small.mode, small.mem, small.cpu.roots
    base = rate(lambda va: translate(mem, mode, roots, va), cold)
    for va in hot:
        small.access(va)
    hit = rate(small.access, hot)
    miss_mmu = build(4096, TLBConfig(arrays={4096: (1, 1)}))
    miss = rate(miss_mmu.access, cold)
    pwc_mmu = build(4096, TLBConfig(arrays={4096: (1, 1)}, pwc=True))
    pwc = rate(pwc_mmu.access, cold)
    print(f"median of {RUNS} runs x {N} accesses, x86-64, 4 KiB pages")
    print(f"  baseline walk.translate (no TLB, no rights) {base:>12,.0f} /s   1.00x")
    print(f"  MMU.access, TLB hit                         {hit:>12,.0f} /s   {hit / base:.2f}x")
    print(f"  MMU.access, TLB miss (walk + rights + A/D)  {miss:>12,.0f} /s   {miss / base:.2f}x")
    print(f"  MMU.access, TLB miss with walk cache        {pwc:>12,.0f} /s   {pwc / base:.2f}x")
    print(
        f"  reads per walk: {miss_mmu.tlb.stats.reads_per_walk:.2f} without, "
        f"{pwc_mmu.tlb.stats.reads_per_walk:.2f} with the paging-structure cache"
    )
    strided = [BASE + (i * 256) % SPAN for i in range(N)]
    paged = [BASE + (i * 4096) % SPAN for i in range(N)]
    randoms = [BASE + rng.randrange(SPAN) for _ in range(N)]
    print("TLB hit rate (default TLB: 16 sets x 4 ways per page size)")
    print("  workload                 4 KiB pages   2 MiB pages")
    for name, vas in (("stride 256 B", strided), ("stride 4 KiB", paged), ("random", randoms)):
        print(f"  {name:<22} {hit_rate(4096, vas):>11.1%} {hit_rate(2 << 20, vas):>13.1%}")


if __name__ == "__main__":
    main()
