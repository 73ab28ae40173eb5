"""Page faults with each architecture's details: x86 error codes, Arm fault status, RISC-V causes.

The details are each architecture's (Intel SDM vol. 3A §4.7 in :mod:`pagewalk.mmu.x86`, Arm ARM
D8.4-D8.5 and the ESR_ELx encodings in :mod:`pagewalk.mmu.arm`, the RISC-V privileged spec's
scause values in :mod:`pagewalk.mmu.riscv`); this module is the architecture-free entry point
that picks the rules for the mode (:func:`~pagewalk.mmu.rules.rules_for`).
"""

from __future__ import annotations

from pagewalk.errors import PageFault
from pagewalk.formats.base import PagingMode
from pagewalk.mmu.arm import FSC_BASE, arm_fault
from pagewalk.mmu.pagefault import Why
from pagewalk.mmu.riscv import RV_ACCESS_FAULT, RV_PAGE_FAULT
from pagewalk.mmu.rules import Regs, rules_for
from pagewalk.mmu.x86 import PF_I, PF_P, PF_PK, PF_RSVD, PF_U, PF_W, describe_x86_code
from pagewalk.walk import Fault


def walk_fault(
    mode: PagingMode, regs: Regs, va: int, fault: Fault, access: str, user: bool
) -> PageFault:
    """The architecture's fault for a walk that stopped (not present, reserved, translation...)."""
    return rules_for(mode).walk_fault(mode, regs, va, fault, access, user)


def rights_fault(
    mode: PagingMode,
    regs: Regs,
    va: int,
    access: str,
    user: bool,
    why: Why,
    level: int,
    raw: int,
) -> PageFault:
    """The fault for an access the translation's rights refuse.

    Args:
        why: ``(kind, reason, pk)``: the fault kind (``protection``, ``permission``,
            ``page-fault``, or ``access-flag`` for an Arm AF=0 entry), the sentence, and whether
            an x86 protection key caused it.
    """
    return rules_for(mode).rights_fault(mode, regs, va, access, user, why, level, raw)


__all__ = [
    "FSC_BASE",
    "PF_I",
    "PF_P",
    "PF_PK",
    "PF_RSVD",
    "PF_U",
    "PF_W",
    "RV_ACCESS_FAULT",
    "RV_PAGE_FAULT",
    "arm_fault",
    "describe_x86_code",
    "rights_fault",
    "walk_fault",
]
