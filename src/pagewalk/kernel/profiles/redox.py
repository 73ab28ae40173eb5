"""Redox (x86-64), following seeds/redox-pagination.rst.

The document specifies:

- Each process has its own address space; a frame may back pages of several processes (shared
  libraries, shared data), so frames can be shared.
- **No demand paging**: a page fault is a fatal error (reported here with the full walk).
- ``static mut MEMORY_MAP: [MemoryArea; 512]``, each ``MemoryArea { base_addr: u64, length:
  u64, _type: u32, acpi: u32 }``, every entry initialised with base address ``0x500``; then the
  allocator is ``RecycleAllocator::new(BumpAllocator::new(kernel_start, kernel_end,
  MemoryAreaIter::new(MEMORY_AREA_FREE)))`` with ``kernel_start = 0`` and ``kernel_end`` the end
  of the kernel image.
- ``Mapper::map(page, flags) -> MapperFlush`` maps a page to the *next free frame*, and
  ``Mapper::translate_page(page) -> Option<Frame>``; an entry is a ``u64`` whose bits 12 to 51
  hold the physical address.

Gaps filled here: the firmware map is copied into MEMORY_MAP's first entries (the rest keep base
``0x500`` and length 0), type 1 is free memory (``MEMORY_AREA_FREE``); the kernel is loaded at
1 MiB and ends at 4 MiB; the kernel lives at ``0xFFFFFF0000000000`` and the physical map at
``0xFFFF800000000000`` (Redox's historical KERNEL_OFFSET and PHYS_OFFSET). ``fork`` copies
eagerly because copy-on-write needs the fault handler Redox's document rules out. Intel SDM
vol. 3A §4.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pagewalk.alloc import redox_allocator
from pagewalk.alloc.base import FrameAllocator
from pagewalk.errors import hx
from pagewalk.flush import Flush
from pagewalk.formats import Perm
from pagewalk.kernel.profile import MIB, RW, RX, KernelView, KMap, Profile, image_maps
from pagewalk.memory.memmap import RegionType
from pagewalk.space import AddressSpace

if TYPE_CHECKING:
    from pagewalk.kernel.mm import Kernel

KERNEL_START = 0
KERNEL_PHYS = 0x100000
KERNEL_END = 0x400000
KERNEL_OFFSET = 0xFFFFFF0000000000
PHYS_OFFSET = 0xFFFF800000000000
MEMORY_AREA_FREE = 1
ENTRY_ADDRESS_MASK = ((1 << 52) - 1) & ~0xFFF  # bits 12..51


@dataclass
class MemoryArea:
    """Redox's ``MemoryArea``: base, length, type and ACPI attributes."""

    base_addr: int = 0x500
    length: int = 0
    type: int = 0
    acpi: int = 0


def memory_map(kernel: KernelView) -> list[MemoryArea]:
    """``MEMORY_MAP``: 512 areas at base 0x500, the firmware's regions copied in front."""
    areas = [MemoryArea() for _ in range(512)]
    codes = {RegionType.USABLE: 1, RegionType.RESERVED: 2, RegionType.ACPI_RECLAIMABLE: 3}
    for i, region in enumerate(kernel.memmap.regions[:512]):
        areas[i] = MemoryArea(region.base, region.length, codes.get(region.type, 2), region.acpi)
    return areas


class RedoxProfile(Profile):
    """Redox's bump+recycle allocator, Mapper, and fatal page faults."""

    name = "redox"
    mode = "x86_64"
    seed = "seeds/redox-pagination.rst"
    demand_paging = False
    cow = False

    def make_allocator(self, kernel: KernelView) -> FrameAllocator:
        self.memory_areas = memory_map(kernel)
        free = [
            (a.base_addr, a.length)
            for a in self.memory_areas
            if a.type == MEMORY_AREA_FREE and a.length
        ]
        return redox_allocator(free, KERNEL_START, KERNEL_END)

    def early_mappings(self, kernel: KernelView) -> list[KMap]:
        return [KMap("identity 0-4M", 0, 0, KERNEL_END, RW | Perm.EXEC)]

    def kernel_mappings(self, kernel: KernelView) -> list[KMap]:
        sections = [("text", 1 * MIB, RX), ("rodata", 1 * MIB, Perm.READ), ("data", 1 * MIB, RW)]
        maps = image_maps(KERNEL_OFFSET + KERNEL_PHYS, KERNEL_PHYS, sections)
        for region in kernel.mem.regions:
            maps.append(
                KMap(
                    "physmap", PHYS_OFFSET + region.base, region.base, region.size, RW | Perm.GLOBAL
                )
            )
        heap = 1 * MIB
        maps.append(
            KMap(
                "heap",
                KERNEL_OFFSET + 0x40000000,
                self.heap_frames(kernel, heap),
                heap,
                RW | Perm.GLOBAL,
            )
        )
        return maps


class Mapper:
    """Redox's ``Mapper`` over an address space of the running kernel."""

    def __init__(self, kernel: Kernel, space: AddressSpace) -> None:
        self.kernel = kernel
        self.space = space

    def map(self, page: int, flags: Perm) -> Flush:
        """Map ``page`` to the next free frame; returns the ``MapperFlush``."""
        frame = self.kernel.refs.alloc()
        self.kernel.mem.zero(frame, 4096)
        return self.space.map(page, frame, 4096, flags)

    def map_to(self, page: int, frame: int, flags: Perm) -> Flush:
        """Map ``page`` to a given ``frame`` (frames may be shared between processes)."""
        return self.space.map(page, frame, 4096, flags)

    def translate_page(self, page: int) -> int | None:
        """``translate_page``: the frame (bits 12..51 of the PTE) or None."""
        result = self.space.walk(page)
        if result.leaf is None or result.fault is not None:
            return None
        return (result.leaf.raw & ENTRY_ADDRESS_MASK) + (page & (result.leaf.size - 1) & ~0xFFF)

    def unmap(self, page: int) -> Flush:
        """Unmap ``page`` and give its frame back when this was its last user."""
        frame = self.translate_page(page)
        if frame is None:
            from pagewalk.errors import NotMappedError

            raise NotMappedError(f"page {hx(page)} is not mapped", va=page)
        flush = self.space.unmap(page)
        self.kernel.refs.release(frame)
        return flush
