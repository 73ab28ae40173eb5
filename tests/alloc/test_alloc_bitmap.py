"""PowerNex's bitmap allocator: formula, placement at KERNEL_END, next fit, real alignment."""

from __future__ import annotations

import pytest

from pagewalk.alloc import FRAME_SIZE, BitmapFrameAllocator, powernex_bitmap_bytes
from pagewalk.errors import AllocatorError, ConfigError, OutOfMemoryError
from pagewalk.memory.memmap import MemoryMap, MemoryRegion, RegionType
from pagewalk.memory.physical import PhysicalMemory


@pytest.mark.parametrize(
    ("kib", "size"),
    [
        (128 * 1024, (32768 // 64 + 1) * 8),  # 128 MiB: 513 words
        (4 * 1024 * 1024, (1 << 20) // 64 * 8 + 8),  # 4 GiB: 16385 words
        (256, 16),  # 64 frames: one word, plus PowerNex's spare word
        (252, 8),  # 63 frames: "+ 1" is the word for the remainder
    ],
)
def test_powernex_formula(kib: int, size: int) -> None:
    assert powernex_bitmap_bytes(kib) == size


def test_bitmap_sits_at_kernel_end_and_reserves_itself() -> None:
    alloc = BitmapFrameAllocator([(0, 128 << 20)], 0x200000)
    assert alloc.bitmap_pa == 0x200000
    assert alloc.bitmap_bytes == 4104
    assert alloc.free_start == 0x200000 + 4104
    # the kernel (0..KERNEL_END) and the bitmap's two frames are used; the next frame is free
    assert alloc.usage().used == 0x200000 // FRAME_SIZE + 2
    assert alloc.allocate() == 0x202000
    assert alloc.n_bits >= (128 << 20) // FRAME_SIZE
    assert alloc.bookkeeping_bytes() * 8 / alloc.n_bits == 1


def test_bitmap_words_live_in_simulated_ram() -> None:
    mem = PhysicalMemory(16 << 20)
    alloc = BitmapFrameAllocator([(0, 16 << 20)], 0x100000, memory=mem)
    pa = alloc.allocate()
    frame = pa // FRAME_SIZE
    word = mem.read_u64(0x100000 + 8 * (frame // 64))
    assert word >> (frame % 64) & 1
    alloc.free(pa)
    assert not mem.read_u64(0x100000 + 8 * (frame // 64)) >> (frame % 64) & 1


def test_bitmap_must_fit_in_ram() -> None:
    with pytest.raises(ConfigError, match="does not fit"):
        BitmapFrameAllocator([(0, 64 << 20)], 0xFFFC00, memory=PhysicalMemory(16 << 20))


def test_next_fit_keeps_going_forward() -> None:
    alloc = BitmapFrameAllocator([(0, 16 << 20)], 0x100000)
    first = alloc.allocate()
    second = alloc.allocate()
    alloc.free(first)
    assert alloc.allocate() == second + FRAME_SIZE


def test_512_frames_are_really_2mib_aligned() -> None:
    # Leave the cursor at a 64-frame (256 KiB) boundary that is not 2 MiB aligned: PowerNex's
    # alloc512 would return it.
    alloc = BitmapFrameAllocator([(0, 64 << 20)], 0x100000)
    while alloc.allocate() < 0x23F000:
        pass
    pa = alloc.alloc512()
    assert pa % 0x200000 == 0
    assert pa == 0x400000


def test_run_search_wraps_and_skips_holes() -> None:
    alloc = BitmapFrameAllocator([(0, 1 << 20), (2 << 20, 2 << 20)], 0x1000)
    high = alloc.allocate(300)
    assert high >= 2 << 20  # the low megabyte has no room for 300 frames after the kernel
    with pytest.raises(OutOfMemoryError, match="aligned to 0x200000"):
        alloc.allocate(512, 0x200000)


def test_from_memory_map_uses_the_kernel_region() -> None:
    memmap = MemoryMap(
        [
            MemoryRegion(0, 0x100000),
            MemoryRegion(0x100000, 0x80000, RegionType.KERNEL),
            MemoryRegion(0x180000, 0xE80000),
        ]
    )
    alloc = BitmapFrameAllocator.from_memory_map(memmap)
    assert alloc.bitmap_pa == 0x180000
    with pytest.raises(ConfigError, match="no kernel region"):
        BitmapFrameAllocator.from_memory_map(MemoryMap([MemoryRegion(0, 0x100000)]))


def test_errors_name_the_frames() -> None:
    alloc = BitmapFrameAllocator([(0, 16 << 20)], 0x100000)
    with pytest.raises(AllocatorError, match="0x1000-0x1fff: part of the range is reserved"):
        alloc.free(0x1000)
    with pytest.raises(AllocatorError, match="not usable RAM"):
        alloc.free(64 << 20)
    with pytest.raises(ConfigError, match="8-byte"):
        BitmapFrameAllocator([(0, 1 << 20)], 0x1001)
