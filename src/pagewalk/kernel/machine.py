"""The simulated machine a kernel boots on: RAM runs from the firmware map, the CPU's registers.

The firmware map lists regions (usable, reserved, ACPI, ...); physical memory is every region,
with adjacent ones merged into runs and holes left as holes. The kernel's CPU starts from the
registers the paging mode was configured with and turns on TLB tagging where the architecture
has it, as the manuals' context-switch rules expect: PCIDs, so a switch keeps other processes'
entries (Intel SDM vol. 3A §4.10.1), and global pages, so kernel entries survive root-register
writes (§4.10.2.4). AArch64 ASIDs and global (nG=0) entries need no enable bit (Arm ARM D8.13),
nor do RISC-V's satp.ASID and G bit (privileged spec, SFENCE.VMA), so their defaults stand.
"""

from __future__ import annotations

from pagewalk.formats import PagingMode
from pagewalk.memory.memmap import MemoryMap
from pagewalk.mmu.regs import Regs, default_regs


def ram_runs(memmap: MemoryMap) -> list[tuple[int, int]]:
    """The firmware map's regions as (base, size) RAM runs, adjacent ones merged."""
    out: list[tuple[int, int]] = []
    for base, size in sorted((r.base, r.length) for r in memmap.regions):
        if out and out[-1][0] + out[-1][1] == base:
            out[-1] = (out[-1][0], out[-1][1] + size)
        else:
            out.append((base, size))
    return out


def kernel_regs(mode: PagingMode) -> Regs:
    """The kernel CPU's control registers: ``mode``'s defaults with TLB tagging turned on.

    With CR4.PCIDE a context switch keeps other processes' entries, tagged by PCID, so no flush
    is needed (Intel SDM vol. 3A §4.10.1); CR4.PGE keeps global kernel entries across CR3 writes
    (§4.10.2.4). Which of the two the mode has is the register rules' business.
    """
    return default_regs(mode, tlb_tags=True)


__all__ = ["kernel_regs", "ram_runs"]
