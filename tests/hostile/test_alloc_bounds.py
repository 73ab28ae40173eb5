"""Every frame allocator stays inside the usable runs, to the last frame, whatever their edges.

Memory maps come from Hypothesis: usable runs of odd byte sizes with unaligned edges, sometimes
touching, with reserved regions between them, given to the allocators either as raw runs (each
allocator rounds inward itself) or through :meth:`MemoryMap.usable`. Each allocator (bitmap, in
RAM or not; byte map; buddy; bump alone and bump + recycle; simple with the holes reserved) is
drained: first with contiguous aligned runs, then frame by frame. No frame may lie outside the
usable whole frames or the allocator's own reservations, none may come twice, and together they
must be exactly every usable frame (a bump allocator alone loses what it skips, so it is only
held to the first two). This is what kills an off-by-one at a run's end.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pagewalk.alloc import (
    FRAME_SIZE,
    BitmapFrameAllocator,
    BuddyFrameAllocator,
    BumpAllocator,
    ByteMapFrameAllocator,
    FrameAllocator,
    SimpleFrameAllocator,
    redox_allocator,
)
from pagewalk.errors import OutOfMemoryError
from pagewalk.memory.memmap import MemoryMap, MemoryRegion, RegionType
from pagewalk.memory.physical import PhysicalMemory

Runs = list[tuple[int, int]]


@dataclass
class Built:
    """An allocator and the frames it must hand out (usable minus its own reservations)."""

    alloc: FrameAllocator
    frames: set[int]
    exact_runs: bool = True  # False: skipped frames are lost (a bump allocator alone)


def whole_frames(runs: Runs) -> set[int]:
    """Frame numbers lying wholly inside one run (each run rounded inward on its own)."""
    out: set[int] = set()
    for base, size in runs:
        out.update(range(-(-base // FRAME_SIZE), (base + size) // FRAME_SIZE))
    return out


def touching(lo: int, hi: int) -> set[int]:
    """Frame numbers touching the bytes ``[lo, hi)``."""
    return set(range(lo // FRAME_SIZE, -(-hi // FRAME_SIZE))) if hi > lo else set()


def _bitmap(runs: Runs, kernel_end: int, in_ram: bool) -> Built:
    top = max(b + s for b, s in runs)
    memory = None
    if in_ram:
        size = -(-max(top, kernel_end + 0x2000) // FRAME_SIZE) * FRAME_SIZE + 0x2000
        memory = PhysicalMemory(size)
    alloc = BitmapFrameAllocator(runs, kernel_end, memory=memory)
    return Built(alloc, whole_frames(runs) - touching(0, alloc.free_start))


def _redox(runs: Runs, kernel_end: int, bump_only: bool) -> Built:
    kernel_start = kernel_end // 2
    if bump_only:
        bump = BumpAllocator(runs, kernel_start, kernel_end)
        return Built(bump, whole_frames(runs) - touching(kernel_start, kernel_end), False)
    alloc = redox_allocator(runs, kernel_start, kernel_end)
    return Built(alloc, whole_frames(runs) - touching(kernel_start, kernel_end))


def _simple(runs: Runs, kernel_end: int) -> Built:
    frames = whole_frames(runs)
    lo, hi = min(frames), max(frames) + 1
    alloc = SimpleFrameAllocator(lo * FRAME_SIZE, (hi - lo) * FRAME_SIZE)
    for f in sorted(set(range(lo, hi)) - frames):  # the holes: reserved for good
        alloc.reserve(f * FRAME_SIZE, FRAME_SIZE)
    return Built(alloc, frames)


FACTORIES: dict[str, Callable[[Runs, int], Built]] = {
    "bitmap": lambda runs, k: _bitmap(runs, k, False),
    "bitmap-in-ram": lambda runs, k: _bitmap(runs, k, True),
    "bytemap": lambda runs, k: Built(ByteMapFrameAllocator(runs), whole_frames(runs)),
    "buddy": lambda runs, k: Built(BuddyFrameAllocator(runs), whole_frames(runs)),
    "buddy-order3": lambda runs, k: Built(
        BuddyFrameAllocator(runs, max_order=3), whole_frames(runs)
    ),
    "bump": lambda runs, k: _redox(runs, k, True),
    "recycle": lambda runs, k: _redox(runs, k, False),
    "simple": _simple,
}


@st.composite
def memory_map(draw: st.DrawFn) -> Runs:
    """Usable runs with odd sizes and unaligned edges, gaps of 0 bytes to a few frames."""
    cur = draw(st.integers(0, 3 * FRAME_SIZE))
    runs: Runs = []
    for _ in range(draw(st.integers(1, 4))):
        size = draw(st.integers(1, 90 * FRAME_SIZE + 7))
        runs.append((cur, size))
        cur += size + draw(st.sampled_from([0, 1, FRAME_SIZE - 1, FRAME_SIZE, 3 * FRAME_SIZE + 5]))
    return runs


def via_memmap(runs: Runs) -> Runs:
    """The same runs through a firmware map with reserved regions in the gaps."""
    regions = [MemoryRegion(b, s, RegionType.USABLE) for b, s in runs]
    for (b0, s0), (b1, _) in itertools.pairwise(runs):
        if b1 > b0 + s0:
            regions.append(MemoryRegion(b0 + s0, b1 - b0 - s0, RegionType.RESERVED))
    return MemoryMap(regions).usable()


#: a run ending on a bitmap word; one shrunk inward at both ends; two touching unaligned runs
EDGES: list[Runs] = [[(0x1000, 0x40000)], [(0x1001, 0x40FFF)], [(0x1800, 0x2000), (0x3800, 0x2FFF)]]
REQUESTS = st.lists(
    st.tuples(st.integers(1, 9), st.integers(0, 4)), min_size=0, max_size=3
)  # (frames, log2 of the alignment in frames)


def drain(built: Built, requests: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Allocate runs for each request until it fails, then single frames until exhaustion.

    Checks every answer on the way; returns every ``(pa, n_frames)`` handed out.
    """
    alloc, allowed = built.alloc, built.frames
    got: list[tuple[int, int]] = []
    held: set[int] = set()

    def take(pa: int, n: int, align: int) -> None:
        assert pa % align == 0, f"allocate({n}, {align:#x}) returned unaligned {pa:#x}"
        run = [pa // FRAME_SIZE + i for i in range(n)]
        outside = [f for f in run if f not in allowed]
        assert not outside, f"frame {outside[0] * FRAME_SIZE:#x} is outside the usable runs"
        twice = [f for f in run if f in held]
        assert not twice, f"frame {twice[0] * FRAME_SIZE:#x} was handed out twice"
        held.update(run)
        got.append((pa, n))

    limit = len(allowed) + 1
    for n, shift in requests:
        align = FRAME_SIZE << shift
        for _ in range(limit):
            before = alloc.usage()
            try:
                pa = alloc.allocate(n, align)
            except OutOfMemoryError:
                assert alloc.usage() == before, "a failed allocation changed usage"
                break
            take(pa, n, align)
    for _ in range(limit):
        try:
            pa = alloc.allocate()
        except OutOfMemoryError:
            break
        take(pa, 1, FRAME_SIZE)
    else:
        raise AssertionError(f"{len(allowed)} usable frames, yet allocation never ran out")
    return got


def check_all_handed_out(built: Built, got: list[tuple[int, int]]) -> None:
    frames = [pa // FRAME_SIZE + i for pa, n in got for i in range(n)]
    missing = sorted(built.frames - set(frames))
    assert not missing, f"usable frame {missing[0] * FRAME_SIZE:#x} was never handed out"
    assert len(frames) == len(built.frames)


@pytest.mark.parametrize("name", sorted(FACTORIES))
@given(
    runs=memory_map(),
    through_map=st.booleans(),
    kernel_end=st.sampled_from([0, 0x1008, 0x3000, 0x21000]),
    requests=REQUESTS,
    rng=st.randoms(use_true_random=False),
)
@example(runs=EDGES[0], through_map=False, kernel_end=0, requests=[], rng=random.Random(0))
@example(runs=EDGES[1], through_map=False, kernel_end=0, requests=[], rng=random.Random(1))
@example(runs=EDGES[2], through_map=False, kernel_end=0, requests=[(2, 1)], rng=random.Random(2))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_drains_exactly_the_usable_frames(
    name: str,
    runs: Runs,
    through_map: bool,
    kernel_end: int,
    requests: list[tuple[int, int]],
    rng: random.Random,
) -> None:
    given_runs = via_memmap(runs) if through_map else runs
    if len(whole_frames(given_runs)) < 2:
        return  # no allocator is built over less than a couple of frames
    built = FACTORIES[name](given_runs, kernel_end)
    assert built.alloc.usage().free == len(built.frames), (built.alloc.usage(), len(built.frames))
    got = drain(built, requests)
    assert built.alloc.usage().free == 0, built.alloc.usage()
    if built.exact_runs or not requests:
        check_all_handed_out(built, got)
    if name == "bump":
        return  # it never frees
    # Everything back in any order, then drained again: the same frames, no more, no fewer.
    rng.shuffle(got)
    for pa, n in got:
        built.alloc.free(pa, n)
    assert built.alloc.usage().free == len(built.frames), built.alloc.usage()
    check_all_handed_out(built, drain(built, list(reversed(requests))))
