"""What a kernel profile is: one seed kernel's paging design as data plus a few hooks.

A profile names the paging mode, the default RAM and firmware map, the frame allocator its
document describes, the early and final kernel mappings, how a process's address space is made
(sharing the kernel half or copying the kernel's entries), the ASID/PCID policy, the flush on a
context switch and the page-fault policy (demand paging, copy-on-write, or fatal). The generic
memory manager (:mod:`pagewalk.kernel.mm`) runs any profile; the hooks see only what
:class:`KernelView` names, so a profile does not depend on the manager. Flush rules follow Intel
SDM vol. 3A §4.10.4 (a CR3 write flushes non-global entries unless PCIDs are on), Arm ARM D8.13
(ASID-tagged TLB entries survive a TTBR0 switch) and the RISC-V privileged spec (SFENCE.VMA).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pagewalk.alloc.base import FrameAllocator
from pagewalk.flush import Flush
from pagewalk.formats import MemType, Perm
from pagewalk.memory.memmap import MemoryMap, MemoryRegion, RegionType
from pagewalk.space import AddressSpace

if TYPE_CHECKING:
    from pagewalk.kernel.process import Process
    from pagewalk.memory.physical import PhysicalMemory

MIB = 1 << 20
RX = Perm.READ | Perm.EXEC
RW = Perm.READ | Perm.WRITE


class KernelView(Protocol):
    """What a profile's hooks read from the kernel that runs them."""

    @property
    def memmap(self) -> MemoryMap:
        """The firmware memory map."""

    @property
    def mem(self) -> PhysicalMemory:
        """Physical memory (RAM runs in ``mem.regions``)."""

    @property
    def frames(self) -> FrameAllocator:
        """The frame allocator (set once :meth:`Profile.make_allocator` returned it)."""


@dataclass(frozen=True)
class KMap:
    """One kernel mapping: a named range with permissions and a memory type."""

    name: str
    va: int
    pa: int
    size: int
    perm: Perm
    memtype: MemType = MemType.NORMAL


@dataclass(frozen=True)
class UserLayout:
    """Where a process's pieces go."""

    program: int
    heap_size: int
    stack_top: int
    stack_size: int
    mmap_base: int
    libs: int


def pc_memory_map(ram: int, *, base: int = 0, bios: bool = True) -> MemoryMap:
    """A PC-like firmware map: low RAM, the BIOS hole below 1 MiB, RAM, ACPI tables at the top."""
    regions = []
    start = base
    if bios:
        regions += [
            MemoryRegion(0, 0x9F000, RegionType.USABLE, source_type="1"),
            MemoryRegion(0x9F000, 0x61000, RegionType.RESERVED, source_type="2"),
        ]
        start = 0x100000
    acpi = 0x10000
    regions.append(
        MemoryRegion(start, base + ram - acpi - start, RegionType.USABLE, source_type="1")
    )
    regions.append(
        MemoryRegion(base + ram - acpi, acpi, RegionType.ACPI_RECLAIMABLE, source_type="3")
    )
    return MemoryMap(regions)


def image_maps(virt: int, phys: int, sections: list[tuple[str, int, Perm]]) -> list[KMap]:
    """A kernel image as W^X sections: (name, size, perm) laid out from ``virt``/``phys``."""
    out, off = [], 0
    for name, size, perm in sections:
        out.append(KMap(name, virt + off, phys + off, size, perm | Perm.GLOBAL))
        off += size
    return out


class Profile(ABC):
    """A seed kernel's paging design."""

    #: profile name (``pagewalk boot --profile NAME``)
    name: str
    #: paging mode name
    mode: str
    #: default RAM in bytes
    ram: int = 128 * MIB
    #: the seed document this profile follows
    seed: str = ""
    #: whether faults on lazy areas are served (otherwise every fault is fatal)
    demand_paging: bool = False
    #: whether fork shares pages copy-on-write (otherwise it copies eagerly)
    cow: bool = False
    #: whether the early boot tables survive the switch
    keep_early: bool = False
    #: extra arguments for allocating a process's data frames (atOS-RT: the USER state)
    data_alloc_kwargs: ClassVar[dict[str, Any]] = {}
    user_layout: UserLayout = UserLayout(
        0x400000, 1 * MIB, 0x7FFFFFFFF000, 64 * 1024, 0x10000000, 0x20000000
    )

    #: extra arguments for allocating the shared library's frames (atOS-RT: the LIBRARY state)
    library_alloc_kwargs: ClassVar[dict[str, Any]] = {}

    def library_image(self) -> bytes:
        """The bytes of the shared library every process maps (two pages here)."""
        text = f"{self.name} shared library\n".encode()
        return text.ljust(2 * 4096, b"\xc3")

    def memory_map(self, ram: int) -> MemoryMap:
        """The default firmware map for ``ram`` bytes."""
        return pc_memory_map(ram)

    @abstractmethod
    def make_allocator(self, kernel: KernelView) -> FrameAllocator:
        """The frame allocator the design describes, built from ``kernel.memmap``."""

    @abstractmethod
    def early_mappings(self, kernel: KernelView) -> list[KMap]:
        """Mappings of the early (boot) tables."""

    @abstractmethod
    def kernel_mappings(self, kernel: KernelView) -> list[KMap]:
        """Mappings of the final kernel tables: image (W^X), direct map, heap."""

    def process_space(self, kernel: KernelView, kernel_space: AddressSpace) -> AddressSpace:
        """A new process's space: the kernel half shared, the user half empty."""
        return kernel_space.clone(share_kernel=True, user=False)

    def asid_for(self, pid: int) -> int:
        """The ASID/PCID of process ``pid`` (0 when the mode has none)."""
        return pid & 0xFFF

    def switch_flush(self, proc: Process) -> Flush:
        """The TLB effect of switching to ``proc``: none when entries are ASID-tagged."""
        return Flush.none(f"switch to pid {proc.pid} (ASID {proc.asid}: no flush needed)")

    def heap_frames(self, kernel: KernelView, size: int) -> int:
        """Frames for the kernel heap, taken from the allocator at boot."""
        return kernel.frames.allocate(size // 4096)
