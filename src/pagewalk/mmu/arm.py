"""AArch64 register rules: SCTLR_EL1 and PSTATE.PAN, who may access what, and the abort syndrome.

- Rights (Arm ARM D8.4): AP[2:1] with APTable restrictions; EL0 fetches obey UXN/UXNTable, EL1
  fetches PXN/PXNTable and never run EL0-writable memory; SCTLR_EL1.WXN makes writable memory
  execute-never; PSTATE.PAN forbids EL1 data accesses to EL0-accessible memory. A write to a
  writable-clean DBM entry is allowed when TCR_EL1.HD=1 (D8.5).
- Faults (D8.4-D8.5 and the ESR_ELx ISS encodings): a data or instruction abort whose fault
  status code is 0b0000LL (address size), 0b0001LL (translation), 0b0010LL (access flag),
  0b0011LL (permission) or 0b0101LL (external abort on a table walk), LL being the level, with
  FAR_EL1 = the address. With FEAT_LPA2 a walk can fault at level -1, which has codes of its own:
  0b101001 (address size), 0b101011 (translation) and 0b010011 (external abort on a table walk).
- TLB tags (D8.13): entries carry the ASID always; nG=0 entries are global. A fault leaves the
  TLB as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagewalk.errors import PageFault
from pagewalk.formats.base import PagingMode
from pagewalk.mmu.pagefault import BaseRules, Why, make_fault
from pagewalk.mmu.walker import Translation
from pagewalk.walk import Fault

#: SCTLR_EL1.M and SCTLR_EL1.WXN (bit 19, Arm ARM D8.4 "Write permission implies XN").
SCTLR_M = 1 << 0
SCTLR_WXN = 1 << 19
#: SCTLR_EL1.SPAN (bit 23); 0 means PSTATE.PAN is set on exception entry to EL1.
SCTLR_SPAN = 1 << 23
SCTLR_DEFAULT = 0x30D00801

#: fault status code bases; the level is added (Arm ARM, ESR_ELx.ISS DFSC/IFSC)
FSC_BASE = {
    "address-size": 0x00,
    "translation": 0x04,
    "access-flag": 0x08,
    "permission": 0x0C,
    "bad-table": 0x14,
}
#: fault status codes at level -1 (FEAT_LPA2; Arm ARM, ESR_ELx.ISS DFSC/IFSC)
FSC_LEVEL_M1 = {"address-size": 0b101001, "translation": 0b101011, "bad-table": 0b010011}


@dataclass
class ArmRegs:
    """SCTLR_EL1 and PSTATE.PAN (Arm ARM D8.4). TCR_EL1.HA/HD come from the mode."""

    sctlr: int = SCTLR_DEFAULT
    pan: bool = False

    @property
    def wxn(self) -> bool:
        """SCTLR_EL1.WXN: writable memory is execute-never."""
        return bool(self.sctlr & SCTLR_WXN)


def arm_refusal(t: Translation, access: str, user: bool, regs: ArmRegs) -> Why | None:
    """Why AArch64 refuses the access (Arm ARM D8.4), or None."""
    r = t.rights
    why = None
    if access == "exec":
        writable = r.writable and (r.user or not user)
        if user and r.xn_user:
            why = "an EL0 fetch from UXN memory (UXN or UXNTable)"
        elif not user and r.xn_priv:
            why = "an EL1 fetch from PXN memory (PXN, PXNTable, or writable at EL0)"
        elif regs.wxn and writable:
            why = "a fetch from writable memory with SCTLR_EL1.WXN=1"
    elif user and not r.user:
        why = "an EL0 access to memory without EL0 access (AP[1]=0 or APTable[0]=1)"
    elif not user and regs.pan and r.user:
        why = "an EL1 data access to EL0-accessible memory with PSTATE.PAN=1"
    elif access == "write" and not r.writable and not t.dbm:
        why = "a write to read-only memory (AP[2]=1 or APTable[1]=1)"
    return None if why is None else ("permission", why, False)


def arm_fault(
    va: int, kind: str, level: int | None, reason: str, access: str, user: bool, raw: int | None
) -> PageFault:
    """An AArch64 data or instruction abort with its fault status code."""
    if level == -1 and kind in FSC_LEVEL_M1:
        fsc = FSC_LEVEL_M1[kind]
    else:
        fsc = FSC_BASE.get(kind, 0x10) + (level or 0)
    ec = (0x20 if access == "exec" else 0x24) + (0 if user else 1)
    details = {"fsc": fsc, "ec": ec, "wnr": access == "write", "far": va}
    return make_fault(va, kind, level, reason, access, raw, fsc, details)


class ArmRules(BaseRules):
    """The AArch64 register rules as the MMU asks for them (see :class:`~.rules.ArchRules`)."""

    regs_type = ArmRegs

    def default_regs(self, mode: PagingMode, tlb_tags: bool = False) -> ArmRegs:
        return ArmRegs()

    def refusal(
        self, mode: PagingMode, t: Translation, access: str, user: bool, regs: object
    ) -> Why | None:
        assert isinstance(regs, ArmRegs)
        return arm_refusal(t, access, user, regs)

    def walk_fault(
        self, mode: PagingMode, regs: object, va: int, fault: Fault, access: str, user: bool
    ) -> PageFault:
        return arm_fault(va, fault.kind, fault.level, fault.reason, access, user, fault.raw)

    def rights_fault(
        self,
        mode: PagingMode,
        regs: object,
        va: int,
        access: str,
        user: bool,
        why: Why,
        level: int,
        raw: int,
    ) -> PageFault:
        return arm_fault(va, why[0], level, why[1], access, user, raw)
