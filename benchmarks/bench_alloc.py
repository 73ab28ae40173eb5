"""Allocator speed and bookkeeping, against naive baselines measured in the same run.

Run ``python benchmarks/bench_alloc.py`` (``--frames 100000`` for a quick pass). It prints:

- allocate then free throughput for N single frames (1 million by default) for every frame
  allocator, as the median of several rounds, with the ratio to a Python-set allocator;
- bookkeeping overhead in bits per frame (the bitmap's is 1 bit);
- virtual-range allocator operations per second with 1,000 / 10,000 / 100,000 live ranges, and
  the same for a linear first-fit list, to show the tree stays logarithmic.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from pagewalk.alloc import (
    FRAME_SIZE,
    BitmapFrameAllocator,
    BuddyFrameAllocator,
    ByteMapFrameAllocator,
    VirtualRangeAllocator,
    redox_allocator,
)


class SetAllocator:
    """The baseline: a Python set of free frames, one of used frames."""

    def __init__(self, n_frames: int) -> None:
        self._free = set(range(n_frames))
        self._used: set[int] = set()

    def allocate(self, n_frames: int = 1, align: int = FRAME_SIZE) -> int:
        frame = self._free.pop()
        self._used.add(frame)
        return frame * FRAME_SIZE

    def free(self, pa: int, n_frames: int = 1) -> None:
        frame = pa // FRAME_SIZE
        self._used.remove(frame)
        self._free.add(frame)


def frame_allocators(n: int) -> dict[str, Callable[[], object]]:
    """Allocators with ``n`` free frames above a 1 MiB kernel."""
    usable = [(0, (n + 512) * FRAME_SIZE)]
    return {
        "set baseline": lambda: SetAllocator(n),
        "bitmap": lambda: BitmapFrameAllocator(usable, 0x100000),
        "recycle": lambda: redox_allocator(usable, 0, 0x100000),
        "buddy": lambda: BuddyFrameAllocator(usable),
        "bytemap": lambda: ByteMapFrameAllocator(usable),
    }


def time_frames(make: Callable[[], object], n: int, rounds: int) -> tuple[float, float]:
    """Median seconds to allocate ``n`` frames, and to free them, over ``rounds`` rounds."""
    allocs, frees = [], []
    for _ in range(rounds):
        alloc = make()
        allocate, free = alloc.allocate, alloc.free  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        got = [allocate() for _ in range(n)]
        t1 = time.perf_counter()
        for pa in got:
            free(pa)
        t2 = time.perf_counter()
        allocs.append(t1 - t0)
        frees.append(t2 - t1)
    return statistics.median(allocs), statistics.median(frees)


def bench_frames(n: int, rounds: int) -> None:
    print(f"\n== frame allocators: {n:,} single frames, median of {rounds} ==")
    print(f"{'allocator':14} {'alloc/s':>12} {'free/s':>12} {'x baseline':>11} {'bits/frame':>11}")
    base = None
    for name, make in frame_allocators(n).items():
        t_alloc, t_free = time_frames(make, n, rounds)
        total = t_alloc + t_free
        base = base or total
        sample = make()
        bits = "-"
        if hasattr(sample, "bookkeeping_bytes"):
            frames = sample.usage().total  # type: ignore[attr-defined]
            bits = f"{sample.bookkeeping_bytes() * 8 / frames:.2f}"
        print(f"{name:14} {n / t_alloc:12,.0f} {n / t_free:12,.0f} {total / base:11.2f} {bits:>11}")


class LinearRanges:
    """The baseline virtual-range allocator: a sorted list of holes, scanned first fit."""

    def __init__(self, end: int) -> None:
        self.holes = [(0x1000, end - 0x1000)]

    def alloc(self, size: int) -> int:
        for i, (va, hole) in enumerate(self.holes):
            if hole >= size:
                self.holes[i] = (va + size, hole - size)
                return va
        raise MemoryError

    def free(self, va: int, size: int) -> None:
        import bisect

        bisect.insort(self.holes, (va, size))


def fragmented(make: Callable[[], object], live: int, rng: random.Random) -> list[tuple[int, int]]:
    """Fill an allocator with ``2 * live`` ranges and free every other one."""
    alloc = make()
    ranges = []
    for _ in range(2 * live):
        size = rng.randint(1, 8) * FRAME_SIZE
        ranges.append((alloc.alloc(size), size))  # type: ignore[attr-defined]
    for va, size in ranges[::2]:
        alloc.free(va, size)  # type: ignore[attr-defined]
    return [alloc, *ranges[1::2]]  # type: ignore[list-item]


def time_va(alloc: object, ops: int, rng: random.Random) -> float:
    """Operations per second for alloc + free pairs of 1 to 16 pages."""
    sizes = [rng.randint(1, 16) * FRAME_SIZE for _ in range(ops)]
    t0 = time.perf_counter()
    for size in sizes:
        va = alloc.alloc(size)  # type: ignore[attr-defined]
        alloc.free(va, size)  # type: ignore[attr-defined]
    return 2 * ops / (time.perf_counter() - t0)


def bench_va(rounds: int) -> None:
    print(f"\n== virtual ranges: alloc+free pairs, median of {rounds} ==")
    print(f"{'live ranges':>12} {'tree ops/s':>12} {'best-fit ops/s':>15} {'list ops/s':>12}")
    end = 1 << 47
    for live in (1_000, 10_000, 100_000):
        row = []
        for make in (
            lambda: VirtualRangeAllocator(0, end),
            lambda: VirtualRangeAllocator(0, end, best_fit=True),
            lambda: LinearRanges(end),
        ):
            rng = random.Random(live)
            alloc = fragmented(make, live, rng)[0]
            ops = 2000 if not isinstance(alloc, LinearRanges) else 200
            row.append(statistics.median(time_va(alloc, ops, rng) for _ in range(rounds)))
        print(f"{live:12,} {row[0]:12,.0f} {row[1]:15,.0f} {row[2]:12,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bench_frames(args.frames, args.rounds)
    bench_va(args.rounds)


if __name__ == "__main__":
    main()
