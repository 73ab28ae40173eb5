"""Comus (x86-64), following seeds/comus-memory.md.

The document specifies:

- 4-level paging (PML4, PDPT, PD, PT) and the layout: BIOS reserved 0-1 MiB, the kernel from
  1 MiB to 129 MiB, then the user program, the user heap, and the user stack top at
  ``0x7fffffffffff``.
- A **physical page allocator**: a bitmap of ``uint64_t`` words, one bit per page (0 free, 1 in
  use), initialised from the Multiboot/UEFI memory map (:class:`BitmapFrameAllocator`).
- A **virtual address allocator** per memory context, starting as one node for the whole space,
  with ``virtaddr_alloc`` (first fit) and ``virtaddr_take`` (claim a given address or say it is
  taken).
- **Bootstrap page tables** that identity-map the kernel, then the **"paging page tables"** (mapped
  by the bootstrap tables, inside the kernel) used to reach other table frames.
- ``map_pages``, ``unmap_pages``, ``mem_map_pages_at`` (allocate frames and map them: normal
  allocations) and ``mem_map_addr`` (map a given physical address at a given or random VA: ACPI
  tables, the ramdisk).

Gaps filled here: the kernel's identity map covers 1-129 MiB with the largest pages that fit (so
Comus needs at least 256 MiB of RAM; that is its default); user programs start at 129 MiB, right
after the kernel, as the layout table lists them; a process's tables start as a copy of the
kernel's (the user half shares PML4 entry 0 with the kernel's identity map, so the kernel half
cannot be shared at the PML4 level); the virtual-address allocator keeps its free blocks in a
balanced tree rather than a linked list (same first-fit answers, O(log n)); the paging window is
the kernel's last page, ``0xFFFFFFFFFFFFF000``: before the functions edit a context's tables, its
root table frame is mapped (or remapped, with a one-page flush) there, and each use is counted, so
the window is a real, inspectable kernel mapping. Faults are fatal (the document
describes no demand paging). Intel SDM vol. 3A §4.5.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from pagewalk.alloc import BitmapFrameAllocator, VirtualRangeAllocator
from pagewalk.alloc.base import FRAME_SIZE, FrameAllocator
from pagewalk.errors import hx
from pagewalk.formats import Perm
from pagewalk.kernel.profile import MIB, RW, KernelView, KMap, Profile, UserLayout
from pagewalk.space import AddressSpace

if TYPE_CHECKING:
    from pagewalk.kernel.mm import Kernel
    from pagewalk.kernel.process import Process

KERNEL_START = 1 * MIB
KERNEL_END = 129 * MIB
USER_STACK_TOP = 0x7FFFFFFFF000  # the page below 0x7fffffffffff
PAGING_WINDOW = 0xFFFFFFFFFFFFF000
KERNEL_VA_POOL = (0xFFFF800000000000, 0xFFFF900000000000)


class ComusProfile(Profile):
    """Comus's layout, bitmap allocator, VA allocator and paging window."""

    name = "comus"
    mode = "x86_64"
    ram = 256 * MIB
    seed = "seeds/comus-memory.md"
    demand_paging = False
    cow = False
    user_layout = UserLayout(KERNEL_END, 1 * MIB, USER_STACK_TOP, 64 * 1024, 0x40000000, 0x60000000)

    def make_allocator(self, kernel: KernelView) -> FrameAllocator:
        return BitmapFrameAllocator(kernel.memmap.usable(), KERNEL_END, memory=kernel.mem)

    def early_mappings(self, kernel: KernelView) -> list[KMap]:
        return [
            KMap(
                "bootstrap identity",
                KERNEL_START,
                KERNEL_START,
                8 * MIB - KERNEL_START,
                RW | Perm.EXEC,
            )
        ]

    def kernel_mappings(self, kernel: KernelView) -> list[KMap]:
        size = KERNEL_END - KERNEL_START
        return [
            KMap("kernel identity", KERNEL_START, KERNEL_START, size, RW | Perm.EXEC | Perm.GLOBAL)
        ]

    def process_space(self, kernel: KernelView, kernel_space: AddressSpace) -> AddressSpace:
        return kernel_space.clone(share_kernel=False, user=True)


class ComusMemory:
    """Comus's paging functions over a running kernel.

    Each memory context (the kernel's, or a process's) gets its own virtual address allocator.
    """

    def __init__(self, kernel: Kernel, seed: int = 0) -> None:
        self.kernel = kernel
        self.rng = random.Random(seed)
        self.contexts: dict[int, VirtualRangeAllocator] = {}
        self.window_uses = 0

    def _ctx(self, space: AddressSpace, user: bool) -> VirtualRangeAllocator:
        if space.id not in self.contexts:
            lo, hi = (KERNEL_END, USER_STACK_TOP) if user else KERNEL_VA_POOL
            self.contexts[space.id] = VirtualRangeAllocator(lo, hi)
        return self.contexts[space.id]

    def virtaddr_alloc(self, space: AddressSpace, n_pages: int, *, user: bool = False) -> int:
        """The first free run of ``n_pages`` pages in the context."""
        return self._ctx(space, user).alloc(n_pages * FRAME_SIZE)

    def virtaddr_take(
        self, space: AddressSpace, va: int, n_pages: int, *, user: bool = False
    ) -> int:
        """Claim ``va``; raises if any page of it is taken."""
        return self._ctx(space, user).take(va, n_pages * FRAME_SIZE)

    def _through_window(self, space: AddressSpace) -> None:
        """Map ``space``'s root table at the paging window, as Comus reaches table frames."""
        kernel_space = self.kernel.kernel_space
        assert kernel_space is not None
        table = space.roots[0]
        if kernel_space.translate(PAGING_WINDOW) is None:
            self.kernel.flush(kernel_space.map(PAGING_WINDOW, table, FRAME_SIZE, RW))
        else:
            self.kernel.flush(kernel_space.remap(PAGING_WINDOW, table))
        if kernel_space.translate(PAGING_WINDOW) != table:
            raise AssertionError(f"paging window does not show table {hx(table)}")
        self.window_uses += 1

    def map_pages(self, space: AddressSpace, va: int, pa: int, n_pages: int, perm: Perm) -> None:
        """``map_pages``: map a run of pages at a phys/virt pair."""
        self._through_window(space)
        self.kernel.flush(
            space.map_range(va, pa, n_pages * FRAME_SIZE, perm, page_sizes=(FRAME_SIZE,))
        )

    def unmap_pages(self, space: AddressSpace, va: int, n_pages: int) -> None:
        """``unmap_pages``: the reverse of map_pages."""
        self._through_window(space)
        self.kernel.flush(space.unmap_range(va, n_pages * FRAME_SIZE))

    def mem_map_pages_at(self, proc: Process, va: int, n_pages: int, perm: Perm) -> int:
        """``mem_map_pages_at``: allocate frames and map them at ``va`` (normal allocations)."""
        self.virtaddr_take(proc.space, va, n_pages, user=True)
        self.kernel.mmap(proc, n_pages * FRAME_SIZE, perm, va=va, lazy=False)
        return va

    def mem_map_addr(self, pa: int, size: int, va: int | None = None, *, perm: Perm = RW) -> int:
        """``mem_map_addr``: map physical ``pa`` at ``va`` or at a random free kernel VA."""
        space = self.kernel.kernel_space
        assert space is not None
        offset = pa % FRAME_SIZE
        n_pages = -(-(size + offset) // FRAME_SIZE)
        if va is None:
            va = self._random_va(space, n_pages)
        else:
            self.virtaddr_take(space, va - va % FRAME_SIZE, n_pages)
        self.map_pages(space, va - va % FRAME_SIZE, pa - offset, n_pages, perm)
        self.kernel.log("comus", f"mem_map_addr {hx(pa)}+{hx(size)} at {hx(va)}")
        return va - va % FRAME_SIZE + offset

    def _random_va(self, space: AddressSpace, n_pages: int) -> int:
        lo, hi = KERNEL_VA_POOL
        for _ in range(64):
            va = lo + self.rng.randrange((hi - lo) // FRAME_SIZE - n_pages) * FRAME_SIZE
            try:
                return self.virtaddr_take(space, va, n_pages)
            except Exception:  # taken: try another random VA
                continue
        return self.virtaddr_alloc(space, n_pages)
