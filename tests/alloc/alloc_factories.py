"""Small allocators of every design, over a map with a hole, for the shared suites."""

from __future__ import annotations

from collections.abc import Callable

from pagewalk.alloc import (
    BitmapFrameAllocator,
    BuddyFrameAllocator,
    ByteMapFrameAllocator,
    FrameAllocator,
    redox_allocator,
)
from pagewalk.memory.physical import PhysicalMemory

#: low memory below the VGA hole, then 15 MiB from 1 MiB (the kernel image is 1 MiB-1.5 MiB)
USABLE = [(0x1000, 0x9E000), (0x100000, 0xF00000)]
KERNEL_START, KERNEL_END = 0x100000, 0x180000


def bitmap_in_ram() -> BitmapFrameAllocator:
    """A bitmap whose words live in simulated RAM at KERNEL_END."""
    return BitmapFrameAllocator(USABLE, KERNEL_END, memory=PhysicalMemory(16 << 20))


FACTORIES: dict[str, Callable[[], FrameAllocator]] = {
    "bitmap": lambda: BitmapFrameAllocator(USABLE, KERNEL_END),
    "bitmap-in-ram": bitmap_in_ram,
    "recycle": lambda: redox_allocator(USABLE, KERNEL_START, KERNEL_END),
    "buddy": lambda: BuddyFrameAllocator(USABLE),
    "bytemap": lambda: ByteMapFrameAllocator(USABLE),
}
