"""The buddy allocator: orders, splitting, merging, and per-frame user counts."""

from __future__ import annotations

import pytest

from pagewalk.alloc import FRAME_SIZE, BuddyFrameAllocator, RefCountedFrames
from pagewalk.errors import AllocatorError, ConfigError, OutOfMemoryError

MIB16 = [(0, 16 << 20)]


def test_blocks_of_order_10_tile_memory() -> None:
    alloc = BuddyFrameAllocator(MIB16)
    assert alloc.free_blocks()[10] == 4
    assert sum(n for n in alloc.free_blocks().values()) == 4


def test_split_then_merge_back() -> None:
    alloc = BuddyFrameAllocator(MIB16)
    start = alloc.free_blocks()
    pa = alloc.allocate()
    blocks = alloc.free_blocks()
    assert [blocks[o] for o in range(10)] == [1] * 10  # one buddy left at every order
    alloc.free(pa)
    assert alloc.free_blocks() == start


def test_odd_runs_give_the_tail_back() -> None:
    alloc = BuddyFrameAllocator(MIB16)
    pa = alloc.allocate(3)
    assert alloc.usage().used == 3
    assert alloc.refcount(pa + 3 * FRAME_SIZE) == 0
    alloc.free(pa + FRAME_SIZE)  # frames of a run can be freed one by one
    alloc.free(pa, 1)
    alloc.free(pa + 2 * FRAME_SIZE)
    assert alloc.free_blocks()[10] == 4


def test_runs_are_naturally_aligned() -> None:
    alloc = BuddyFrameAllocator(MIB16)
    alloc.allocate()
    assert alloc.allocate(512) % 0x200000 == 0
    assert alloc.allocate(2, 0x100000) % 0x100000 == 0


def test_orders_above_the_max_cannot_be_served() -> None:
    alloc = BuddyFrameAllocator(MIB16)
    with pytest.raises(OutOfMemoryError, match="order 10"):
        alloc.allocate(1025)
    big = BuddyFrameAllocator(MIB16, max_order=12)
    assert big.allocate(1025) % (4096 * FRAME_SIZE) == 0
    with pytest.raises(ConfigError):
        BuddyFrameAllocator(MIB16, max_order=31)


def test_copy_on_write_frames_are_freed_by_the_last_user() -> None:
    alloc = BuddyFrameAllocator(MIB16)
    assert isinstance(alloc, RefCountedFrames)
    pa = alloc.allocate()
    alloc.share(pa)
    alloc.share(pa)
    assert alloc.refcount(pa) == 3
    alloc.free(pa)
    alloc.free(pa)
    assert alloc.usage().used == 1
    alloc.free(pa)
    assert alloc.usage().used == 0
    with pytest.raises(AllocatorError, match="double free"):
        alloc.free(pa)
    with pytest.raises(AllocatorError, match="not allocated"):
        alloc.share(pa)


def test_partly_shared_run_releases_only_unshared_frames() -> None:
    alloc = BuddyFrameAllocator(MIB16)
    pa = alloc.allocate(4)
    alloc.share(pa + FRAME_SIZE, 2)
    alloc.free(pa, 4)
    assert [alloc.refcount(pa + i * FRAME_SIZE) for i in range(4)] == [0, 1, 1, 0]
    assert alloc.usage().used == 2


def test_reserve_splits_free_blocks() -> None:
    alloc = BuddyFrameAllocator(MIB16)
    alloc.reserve(0x3000, 0x2000)
    assert alloc.usage().used == 2
    got = {alloc.allocate() for _ in range(alloc.usage().free)}
    assert 0x3000 not in got and 0x4000 not in got
    with pytest.raises(AllocatorError, match="reserved"):
        alloc.free(0x3000)
