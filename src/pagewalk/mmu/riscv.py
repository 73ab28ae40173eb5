"""RISC-V register rules: mstatus.SUM/MXR and Svade/Svadu, who may access what, and scause.

- Rights (privileged spec, "Virtual Address Translation Process"): U-mode needs U=1; S-mode may
  touch U=1 pages only with mstatus.SUM and never executes them; loads need R (or X with
  mstatus.MXR), stores W, fetches X; under Svade an A=0 entry, or D=0 on a store, faults; under
  Svadu (menvcfg.ADUE=1) the hardware sets them.
- Faults ("Supervisor Cause Register"): cause 12/13/15 for an instruction, load or store/AMO
  page fault, and 1/5/7 for the matching access faults, with stval = the address.
- TLB tags: entries carry the ASID; G=1 entries (or below a G=1 pointer) are global. SFENCE.VMA
  is the only invalidation; a fault leaves the TLB as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagewalk.errors import PageFault
from pagewalk.formats.base import PagingMode
from pagewalk.mmu.pagefault import BaseRules, Why, make_fault
from pagewalk.mmu.walker import Translation
from pagewalk.walk import Fault

#: scause values per access kind
RV_PAGE_FAULT = {"exec": 12, "read": 13, "write": 15}
RV_ACCESS_FAULT = {"exec": 1, "read": 5, "write": 7}


@dataclass
class RiscvRegs:
    """mstatus.SUM/MXR and the A/D policy (RISC-V privileged spec; Svade vs Svadu).

    Attributes:
        sum: S-mode may read and write U pages (never execute them).
        mxr: loads from execute-only pages succeed.
        svadu: hardware sets A and D (menvcfg.ADUE=1); False is Svade: a page fault instead.
    """

    sum: bool = False
    mxr: bool = False
    svadu: bool = False


def riscv_refusal(t: Translation, access: str, user: bool, regs: RiscvRegs) -> Why | None:
    """Why RISC-V refuses the access (privileged spec, Sv32-57 translation), or None."""
    r = t.rights
    why = None
    if user and not r.user:
        why = "a U-mode access to a page with U=0"
    elif not user and r.user and access == "exec":
        why = "an S-mode fetch from a U=1 page (never allowed)"
    elif not user and r.user and not regs.sum:
        why = "an S-mode access to a U=1 page with mstatus.SUM=0"
    elif access == "read" and not (r.readable or (regs.mxr and not r.xn_user)):
        why = "a load from a page with R=0" + ("" if regs.mxr else " (mstatus.MXR=0)")
    elif access == "write" and not r.writable:
        why = "a store to a page with W=0"
    elif access == "exec" and r.xn_user:
        why = "a fetch from a page with X=0"
    elif not regs.svadu and (not t.accessed or (access == "write" and not t.dirty)):
        bit = "A" if not t.accessed else "D"
        why = f"{bit}=0 under Svade (software must set it; menvcfg.ADUE=0)"
    return None if why is None else ("page-fault", why, False)


class RiscvRules(BaseRules):
    """The RISC-V register rules as the MMU asks for them (see :class:`~.rules.ArchRules`)."""

    regs_type = RiscvRegs

    def default_regs(self, mode: PagingMode, tlb_tags: bool = False) -> RiscvRegs:
        return RiscvRegs()

    def svadu(self, regs: object) -> bool:
        assert isinstance(regs, RiscvRegs)
        return regs.svadu

    def refusal(
        self, mode: PagingMode, t: Translation, access: str, user: bool, regs: object
    ) -> Why | None:
        assert isinstance(regs, RiscvRegs)
        return riscv_refusal(t, access, user, regs)

    def walk_fault(
        self, mode: PagingMode, regs: object, va: int, fault: Fault, access: str, user: bool
    ) -> PageFault:
        kind = "access-fault" if fault.kind == "bad-table" else "page-fault"
        cause = (RV_ACCESS_FAULT if kind == "access-fault" else RV_PAGE_FAULT)[access]
        details = {"cause": cause, "stval": va}
        return make_fault(va, kind, fault.level, fault.reason, access, fault.raw, cause, details)

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
        cause = RV_PAGE_FAULT[access]
        details = {"cause": cause, "stval": va}
        return make_fault(va, why[0], level, why[1], access, raw, cause, details)
