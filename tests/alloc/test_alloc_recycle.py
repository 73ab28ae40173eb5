"""Redox's BumpAllocator wrapped in a RecycleAllocator."""

from __future__ import annotations

import pytest

from pagewalk.alloc import FRAME_SIZE, BumpAllocator, RecycleAllocator, redox_allocator
from pagewalk.errors import AllocatorError, ConfigError, OutOfMemoryError

AREAS = [(0x1000, 0x9E000), (0x100000, 0x700000)]


def test_bump_walks_areas_in_order_and_skips_the_kernel() -> None:
    bump = BumpAllocator(AREAS, 0x100000, 0x200000)
    assert bump.allocate() == 0x1000
    assert bump.allocate(0x9D) == 0x2000  # the rest of low memory
    assert bump.allocate() == 0x200000  # past the kernel image
    assert bump.usage().used == 0x9E + 1 + 0x100


def test_bump_cannot_free_and_loses_skipped_frames() -> None:
    bump = BumpAllocator(AREAS, 0, 0)
    with pytest.raises(AllocatorError, match="never frees"):
        bump.free(0x1000)
    bump.allocate()
    bump.allocate(1, 0x10000)  # frames 0x2000..0xf000 are stepped over
    assert bump.usage().used == 16


def test_recycle_keeps_what_the_bump_skips() -> None:
    alloc = redox_allocator(AREAS, 0, 0)
    alloc.allocate()
    assert alloc.allocate(1, 0x10000) == 0x10000
    assert alloc.usage().used == 2
    assert alloc.allocate() == 0xF000  # served from the recycled padding, highest first


def test_recycle_merges_neighbours_and_serves_them_first() -> None:
    alloc = redox_allocator(AREAS, 0x100000, 0x200000)
    pages = [alloc.allocate() for _ in range(8)]
    for pa in pages[::2] + pages[1::2]:
        alloc.free(pa)
    assert list(alloc.recycled) == [(1, 9)]
    assert alloc.allocate(8) == 0x1000


def test_recycle_reserve_and_errors() -> None:
    alloc = redox_allocator(AREAS, 0x100000, 0x200000)
    pa = alloc.allocate()
    with pytest.raises(AllocatorError, match="in use"):
        alloc.reserve(pa, FRAME_SIZE)
    with pytest.raises(AllocatorError, match="not handed out"):
        alloc.free(0x150000)  # inside the kernel image
    with pytest.raises(AllocatorError, match="not handed out"):
        alloc.free(0x300000)  # beyond the bump frontier
    alloc.reserve(0x300000, 0x10000)
    frames = set()
    while True:
        try:
            frames.add(alloc.allocate())
        except OutOfMemoryError:
            break
    assert not {f for f in frames if 0x300000 <= f < 0x310000}


def test_recycle_wraps_any_bump() -> None:
    assert isinstance(RecycleAllocator(BumpAllocator(AREAS, 0, 0)).inner, BumpAllocator)
    with pytest.raises(ConfigError):
        BumpAllocator([(0x1001, 0x800)], 0, 0)
