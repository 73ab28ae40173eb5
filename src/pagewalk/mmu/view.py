"""What the MMU's checkers see of it: a structural type, so they need not import the MMU.

The stale-TLB detector (:mod:`pagewalk.mmu.stale`) and the break-before-make checker
(:mod:`pagewalk.mmu.bbm`) watch one MMU: its mode, memory, TLB (Intel SDM vol. 3A §4.10, Arm ARM
D8.13, RISC-V SFENCE.VMA) and a fresh walk to compare against. The MMU builds them; they hold it
through this protocol, which keeps the import graph a tree.
"""

from __future__ import annotations

from typing import Protocol

from pagewalk.errors import PageFault
from pagewalk.formats.base import PagingMode
from pagewalk.mmu.tlb import TLB
from pagewalk.mmu.walker import EntryMemory, Translation


class MMUView(Protocol):
    """The parts of :class:`~pagewalk.mmu.core.MMU` its checkers use."""

    mode: PagingMode
    mem: EntryMemory
    tlb: TLB

    @property
    def asid(self) -> int:
        """The current ASID/PCID."""
        ...

    def walk(self, va: int, *, update: bool = False) -> Translation | PageFault:
        """A fresh walk under the current roots."""
        ...
