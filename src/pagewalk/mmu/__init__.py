"""The CPU side: translation registers, access checks, faults and the TLB model.

:class:`MMU` checks accesses (Intel SDM vol. 3A §4.6-4.8, Arm ARM D8.4-D8.5, RISC-V privileged
spec), keeps a :class:`TLB` with flushes as the manuals define them (SDM §4.10, Arm ARM D8.13,
SFENCE.VMA), and can check for stale TLB use and AArch64 break-before-make violations.
:func:`check_access` is the TLB-less entry point for one access (the CLI's ``translate``).
"""

from pagewalk.mmu.access import check_access
from pagewalk.mmu.bbm import BBMViolation, BreakBeforeMake
from pagewalk.mmu.core import MMU
from pagewalk.mmu.cpu import CPU
from pagewalk.mmu.regs import ArmRegs, RiscvRegs, X86Regs, default_regs
from pagewalk.mmu.stale import StaleDetector, StaleTranslationError, StaleUse
from pagewalk.mmu.tlb import TLB, TLBConfig, TLBStats
from pagewalk.mmu.walker import Rights, Translation

__all__ = [
    "CPU",
    "MMU",
    "TLB",
    "ArmRegs",
    "BBMViolation",
    "BreakBeforeMake",
    "Rights",
    "RiscvRegs",
    "StaleDetector",
    "StaleTranslationError",
    "StaleUse",
    "TLBConfig",
    "TLBStats",
    "Translation",
    "X86Regs",
    "check_access",
    "default_regs",
]
