"""An seL4-style AArch64 microkernel, following seeds/aarch64-sel4-style-mmu.md.

The document specifies:

- ``VirtAddr``/``PhysAddr``; entries that are invalid, a further table, or a page of a size.
- TTBR0 for user virtspaces and TTBR1 (``TTBR_EL1`` of the kernel) with all RAM mapped with the
  largest covering page sizes in the negative half, so the kernel reaches physical memory through
  it; a virtspace per process, switched per thread, each with an ASID.
- Invocations: on page-table caps ``map``/``unmap``; on frame caps ``map``/``remap``/``unmap``,
  cache maintenance (clean, invalidate, unify) and ``get address``, where a frame cap tracks one
  mapping ("to map a frame multiple times, one must make copies of the frame capability"); cache
  maintenance on page-directory caps.
- Minimum functionality: resolve VA to PA from a virtspace root; flush a page, a table or a whole
  virtspace; map/unmap a page table; map/unmap a frame; and, given a PageGlobalDirectory, find the
  kernel-physical address of the entry that holds a leaf.
- The howto steps 1-5 of the initial mapping (memory map, RAM regions, largest covering page
  sizes, table pages, kernel access to physical memory through the negative mapping).

Gaps filled here: RAM starts at ``0x40000000`` as on QEMU's ``virt`` board; the kernel image is
loaded at the start of RAM and linked at ``0xFFFFFFFF80000000``; the RAM window is at
``0xFFFF000000000000 + PA``. seL4 itself does not demand-page: a fault goes to the thread's fault
handler, which here means the fault is reported as fatal. Cache maintenance only counts
operations (there is no cache model). Arm ARM D8 (VMSAv8-64), D8.13 (TLB maintenance by VA and by
ASID).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pagewalk.alloc import BuddyFrameAllocator
from pagewalk.alloc.base import FRAME_SIZE, FrameAllocator
from pagewalk.errors import MappingError, hx
from pagewalk.flush import Flush
from pagewalk.formats import Perm
from pagewalk.kernel.profile import (
    MIB,
    RW,
    RX,
    KernelView,
    KMap,
    Profile,
    UserLayout,
    image_maps,
    pc_memory_map,
)
from pagewalk.memory.memmap import MemoryMap
from pagewalk.space import AddressSpace
from pagewalk.walk import walk

if TYPE_CHECKING:
    from pagewalk.kernel.mm import Kernel

RAM_BASE = 0x40000000
KERNEL_VIRT = 0xFFFFFFFF80000000
RAM_WINDOW = 0xFFFF000000000000


class Sel4Profile(Profile):
    """TTBR1 kernel window over all RAM, TTBR0 virtspaces with ASIDs, caps."""

    name = "sel4-aarch64"
    mode = "aarch64"
    seed = "seeds/aarch64-sel4-style-mmu.md"
    demand_paging = False
    cow = False
    user_layout = UserLayout(0x400000, 1 * MIB, 0x7FFFFFFFF000, 64 * 1024, 0x10000000, 0x20000000)

    def memory_map(self, ram: int) -> MemoryMap:
        return pc_memory_map(ram, base=RAM_BASE, bios=False)

    def make_allocator(self, kernel: KernelView) -> FrameAllocator:
        usable = kernel.memmap.usable()
        kernel_end = RAM_BASE + 4 * MIB
        runs = [
            (max(b, kernel_end), b + s - max(b, kernel_end))
            for b, s in usable
            if b + s > kernel_end
        ]
        return BuddyFrameAllocator(runs)

    def early_mappings(self, kernel: KernelView) -> list[KMap]:
        return [KMap("boot identity", RAM_BASE, RAM_BASE, 4 * MIB, RW | Perm.EXEC)]

    def kernel_mappings(self, kernel: KernelView) -> list[KMap]:
        sections = [("text", 1 * MIB, RX), ("rodata", 1 * MIB, Perm.READ), ("data", 2 * MIB, RW)]
        maps = image_maps(KERNEL_VIRT, RAM_BASE, sections)
        for region in kernel.mem.regions:
            maps.append(
                KMap(
                    "RAM window",
                    RAM_WINDOW + region.base,
                    region.base,
                    region.size,
                    RW | Perm.GLOBAL,
                )
            )
        return maps

    def asid_for(self, pid: int) -> int:
        return pid & 0xFFFF


@dataclass
class FrameCap:
    """A frame capability: one frame, at most one mapping (copy the cap to map it again)."""

    pa: int
    size: int = FRAME_SIZE
    mapped: tuple[AddressSpace, int] | None = None

    def get_address(self) -> int:
        """``get address``: the frame's physical address."""
        return self.pa


@dataclass
class PageTableCap:
    """A page-table capability: a table frame that can be mapped at one place."""

    pa: int
    mapped: tuple[AddressSpace, int] | None = None


@dataclass
class Sel4Mmu:
    """The AArch64 MMU invocations of an seL4-style kernel."""

    kernel: Kernel
    cache_ops: Counter[str] = field(default_factory=Counter)

    def new_frame(self) -> FrameCap:
        """Retype untyped memory into a zeroed frame cap."""
        pa = self.kernel.refs.alloc()
        self.kernel.mem.zero(pa, FRAME_SIZE)
        return FrameCap(pa)

    def copy_cap(self, cap: FrameCap) -> FrameCap:
        """A copy of a frame cap: the way to map one frame twice."""
        self.kernel.refs.share(cap.pa)
        return FrameCap(cap.pa, cap.size)

    def frame_map(self, cap: FrameCap, vspace: AddressSpace, va: int, rights: Perm) -> Flush:
        """Map the frame; a cap that is already mapped refuses (seL4 semantics)."""
        if cap.mapped is not None:
            raise MappingError(
                f"frame cap {hx(cap.pa)} already maps {hx(cap.mapped[1])}: copy the cap"
            )
        flush = vspace.map(va, cap.pa, cap.size, rights | Perm.USER)
        cap.mapped = (vspace, va)
        return flush

    def frame_remap(self, cap: FrameCap, rights: Perm) -> Flush:
        """Change the rights of the cap's mapping."""
        vspace, va = self._mapping(cap)
        return vspace.protect(va, rights | Perm.USER)

    def frame_unmap(self, cap: FrameCap) -> Flush:
        """Remove the cap's mapping."""
        vspace, va = self._mapping(cap)
        cap.mapped = None
        return vspace.unmap(va)

    def _mapping(self, cap: FrameCap) -> tuple[AddressSpace, int]:
        if cap.mapped is None:
            raise MappingError(f"frame cap {hx(cap.pa)} is not mapped")
        return cap.mapped

    def page_table_map(self, vspace: AddressSpace, va: int) -> PageTableCap:
        """Map a fresh L3 page table covering ``va``'s 2 MiB span (seL4: PageTable_Map)."""
        span = 2 * MIB
        start = va & ~(span - 1)
        trace = walk(self.kernel.mem, vspace.mode, vspace.roots, start)
        if trace.leaf is not None or any(st.level.number == 3 for st in trace.steps):
            raise MappingError(f"a page table or block already covers {hx(start)}")
        scratch = self.kernel.refs.alloc()
        self.kernel.flush(vspace.map(start, scratch, FRAME_SIZE, Perm.READ))
        entry_pa = walk(self.kernel.mem, vspace.mode, vspace.roots, start).leaf_entry_pa
        assert entry_pa is not None
        self.kernel.mem.write_entry(entry_pa, 8, 0)  # keep the table, drop the scratch page
        self.kernel.flush(self.flush_page(0, start))
        self.kernel.refs.release(scratch)
        return PageTableCap(entry_pa & ~(FRAME_SIZE - 1), (vspace, start))

    def page_table_unmap(self, cap: PageTableCap) -> Flush:
        """Unmap the table and everything it maps (seL4: PageTable_Unmap).

        The frames stay with their caps, as in seL4: only the translations go.
        """
        if cap.mapped is None:
            raise MappingError(f"page table cap {hx(cap.pa)} is not mapped")
        vspace, start = cap.mapped
        cap.mapped = None
        return vspace.unmap_range(start, 2 * MIB)

    def cache_maintenance(self, op: str, cap: FrameCap | AddressSpace) -> None:
        """Clean, invalidate or unify a frame's or a page directory's lines (counted)."""
        if op not in ("clean", "invalidate", "unify"):
            raise MappingError(f"unknown cache operation {op!r} (clean, invalidate, unify)")
        target = "frame" if isinstance(cap, FrameCap) else "page directory"
        self.cache_ops[f"{op} {target}"] += 1

    def virt2phys(self, vspace: AddressSpace, va: int) -> int | None:
        """Resolve ``va`` from the virtspace root (the PageGlobalDirectory)."""
        return walk(self.kernel.mem, vspace.mode, vspace.roots, va).pa

    def leaf_entry_pa(self, vspace: AddressSpace, va: int) -> int | None:
        """Given a PageGlobalDirectory, the kernel-physical address of the leaf entry for ``va``."""
        return walk(self.kernel.mem, vspace.mode, vspace.roots, va).leaf_entry_pa

    def flush_page(self, vspace_asid: int, va: int) -> Flush:
        """TLBI VAE1 for one page of one ASID."""
        return Flush(f"TLBI VAE1 asid {vspace_asid}", ((va & ~(FRAME_SIZE - 1), FRAME_SIZE),))

    def flush_table(self, va: int) -> Flush:
        """Flush a table's whole span (TLBI by VA over the 2 MiB a table covers)."""
        return Flush("TLBI table span", ((va & ~(2 * MIB - 1), 2 * MIB),), tables_freed=True)

    def flush_vspace(self, asid: int) -> Flush:
        """TLBI ASIDE1: a whole virtspace, on a switch that reuses an ASID."""
        return Flush(f"TLBI ASIDE1 asid {asid}", everything=True)
