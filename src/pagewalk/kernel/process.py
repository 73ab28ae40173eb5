"""What the kernel keeps per process: the address space, its ASID/PCID and its memory areas.

A process owns an :class:`~pagewalk.space.AddressSpace` (the kernel half shared or copied, the
user half its own), an ASID or PCID that tags its TLB entries (Intel SDM vol. 3A §4.10.1, Arm ARM
D8.13 ASIDs, the RISC-V privileged spec's satp.ASID), and a list of virtual memory areas: the
program, heap, stack, libraries, anonymous and shared mappings. An area records what the fault
handler needs to decide a fault (permissions, lazy or copy-on-write); shared memory is a block of
frames several spaces map. A fault the kernel's policy refuses becomes :class:`ProcessFault`,
carrying the architecture's fault and the full walk (Intel SDM vol. 3A §4.7, Arm ARM D8 fault
status codes, RISC-V page-fault causes). Nothing here depends on the kernel itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pagewalk.alloc.base import FRAME_SIZE
from pagewalk.errors import PageFault, PagingError
from pagewalk.formats import Perm
from pagewalk.space import AddressSpace
from pagewalk.walk import Walk


class ProcessFault(PagingError):
    """A fault the kernel's policy does not handle: the process would be killed."""

    def __init__(self, fault: PageFault, walk: Walk, why: str) -> None:
        super().__init__(f"{fault} ({why})")
        self.fault = fault
        self.walk = walk
        self.why = why


@dataclass
class SharedMemory:
    """Frames mapped in several spaces; freed when the last mapping and the name are gone."""

    id: int
    frames: list[int]
    linked: bool = True

    @property
    def size(self) -> int:
        """Bytes."""
        return len(self.frames) * FRAME_SIZE


@dataclass
class Vma:
    """A virtual memory area of a process.

    Attributes:
        kind: ``program``, ``heap``, ``stack``, ``lib``, ``anon``, ``shm`` or ``phys``.
        lazy: frames come on first touch (demand paging).
        cow: pages are shared read-only with another process until written.
    """

    start: int
    size: int
    perm: Perm
    kind: str
    name: str = ""
    lazy: bool = False
    cow: bool = False
    shm: SharedMemory | None = None

    @property
    def end(self) -> int:
        """One past the last VA."""
        return self.start + self.size

    def __contains__(self, va: int) -> bool:
        return self.start <= va < self.end


@dataclass
class Process:
    """A process: its address space, ASID/PCID and memory areas."""

    pid: int
    name: str
    space: AddressSpace
    asid: int
    vmas: list[Vma] = field(default_factory=list)
    alive: bool = True

    def vma_at(self, va: int) -> Vma | None:
        """The area that contains ``va``."""
        return next((v for v in self.vmas if va in v), None)


__all__ = ["Process", "ProcessFault", "SharedMemory", "Vma"]
