"""atOS-RT (32-bit x86), following seeds/atos-rt-paging.md.

The document specifies a simple 32-bit paging scheme with process isolation:

- The kernel is linked at ``0x100000`` and identity-mapped; it owns all memory. The regions:
  misc ``0x00000000-0x00100000``, kernel image ``0x00100000-0x00550000``, kernel heap
  ``0x00550000-0x08550000``, kernel stack ``0x08560000-0x08570000``, framebuffer
  ``0x08580000-0x0B000000``, reserved for expansion ``0x0B000000-0x10000000``.
- User programs are linked at ``0x10000000`` and placed anywhere in physical
  ``0x10000000-0x20000000``; user libraries are linked at ``0x20000000`` and live in
  ``0x20000000-0x30000000``, shared by the processes that use them.
- A process's page directory starts as a copy of the kernel's mappings; its binary is then mapped
  so that its first page appears at ``0x10000000``. Processes see the kernel and system memory
  but not each other's memory.

Gaps filled here: "single-level" is read as the page directory alone holding the kernel's
identity map with 4 MiB pages (CR4.PSE) wherever a region allows; the regions' unaligned edges
use 4 KiB pages; the page at ``0x08550000-0x08560000`` between heap and stack and the one between
stack and framebuffer stay unmapped (the document's table leaves them out; they act as guards).
The framebuffer is uncached. 32-bit paging has no execute-disable bit, so the kernel's data is
executable and W^X holds only for writes (the image is mapped read-only and executable, the heap
and stack writable). Physical memory must reach ``0x30000000``, so the default RAM is 1 GiB
(committed lazily). The frame allocator is the byte map with page states (free, allocated,
reserved, user, library). Faults are fatal (no demand paging is described). Intel SDM vol. 3A
§4.3 (32-bit paging, 4-MByte pages).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pagewalk.alloc import ByteMapFrameAllocator, PageState
from pagewalk.alloc.base import FRAME_SIZE, FrameAllocator
from pagewalk.flush import Flush
from pagewalk.formats import MemType, Perm
from pagewalk.kernel.profile import MIB, RW, RX, KernelView, KMap, Profile, UserLayout
from pagewalk.space import AddressSpace

if TYPE_CHECKING:
    from pagewalk.kernel.mm import Kernel
    from pagewalk.kernel.process import Process

USER_BASE = 0x10000000
USER_END = 0x20000000
LIB_BASE = 0x20000000
LIB_END = 0x30000000

#: (name, start, end, perm, memtype) of the kernel's identity-mapped regions
REGIONS: tuple[tuple[str, int, int, Perm, MemType], ...] = (
    ("misc", 0x00000000, 0x00100000, RW, MemType.NORMAL),
    ("kernel image", 0x00100000, 0x00550000, RX, MemType.NORMAL),
    ("kernel heap", 0x00550000, 0x08550000, RW, MemType.NORMAL),
    ("kernel stack", 0x08560000, 0x08570000, RW, MemType.NORMAL),
    ("framebuffer", 0x08580000, 0x0B000000, RW, MemType.UNCACHED),
    ("reserved", 0x0B000000, 0x10000000, RW, MemType.NORMAL),
)


class AtosProfile(Profile):
    """atOS-RT's identity-mapped kernel, user and library zones, and copied page directories."""

    name = "atos"
    mode = "x86"
    ram = 1024 * MIB
    seed = "seeds/atos-rt-paging.md"
    demand_paging = False
    cow = False
    user_layout = UserLayout(USER_BASE, 256 * 1024, USER_END, 64 * 1024, 0x18000000, LIB_BASE)

    data_alloc_kwargs: ClassVar[dict[str, Any]] = {"state": PageState.USER}
    library_alloc_kwargs: ClassVar[dict[str, Any]] = {"state": PageState.LIBRARY}

    def make_allocator(self, kernel: KernelView) -> FrameAllocator:
        zones = {
            PageState.USER: (USER_BASE, USER_END),
            PageState.LIBRARY: (LIB_BASE, LIB_END),
            PageState.ALLOCATED: (LIB_END, kernel.memmap.top()),
        }
        alloc = ByteMapFrameAllocator(kernel.memmap.usable(), zones=zones)
        alloc.reserve(0, USER_BASE)  # the kernel owns everything below the user zone
        return alloc

    def early_mappings(self, kernel: KernelView) -> list[KMap]:
        return [KMap("boot identity", 0, 0, 0x00550000, RW | Perm.EXEC)]

    def kernel_mappings(self, kernel: KernelView) -> list[KMap]:
        return [KMap(n, lo, lo, hi - lo, p | Perm.EXEC, m) for n, lo, hi, p, m in REGIONS]

    def process_space(self, kernel: KernelView, kernel_space: AddressSpace) -> AddressSpace:
        # "Kernel mappings for memory are first copied into the process."
        return kernel_space.clone(share_kernel=False, user=True)

    def asid_for(self, pid: int) -> int:
        return 0  # 32-bit paging has no PCIDs

    def switch_flush(self, proc: Process) -> Flush:
        return Flush(f"CR3 write for pid {proc.pid}: all non-global entries", everything=True)


def load_library(kernel: Kernel, procs: list[Process], image: bytes, va: int = LIB_BASE) -> int:
    """Place a library in the library zone once and map it into each process at ``va``."""
    n = -(-len(image) // FRAME_SIZE)
    alloc = kernel.frames
    assert isinstance(alloc, ByteMapFrameAllocator)
    pa = alloc.allocate(n, state=PageState.LIBRARY)
    kernel.mem.zero(pa, n * FRAME_SIZE)
    kernel.mem.write(pa, image)
    for proc in procs:
        kernel.flush(proc.space.map_range(va, pa, n * FRAME_SIZE, RX | Perm.USER))
    return pa
