"""x86 register rules: CR0/CR4/EFLAGS/PKRU, who may access what, and the #PF error code.

- Rights (Intel SDM vol. 3A §4.6.1): user accesses need U/S=1 at every level, writes R/W=1 at
  every level; supervisor writes ignore R/W when CR0.WP=0; CR4.SMAP (unless EFLAGS.AC=1) forbids
  supervisor data accesses to user pages and CR4.SMEP supervisor fetches from them; with
  EFER.NXE=1 an XD bit at any level forbids fetches. §4.6.2: with CR4.PKE in 4- and 5-level
  paging, PKRU's AD bit for the leaf's key forbids data accesses to user pages and its WD bit
  forbids user writes and, when CR0.WP=1, supervisor writes. Fetches ignore keys.
- Faults (§4.7): a #PF pushes an error code whose bits say P (0: not present, 1: protection or
  reserved bit), W/R, U/S, RSVD, I/D (reported only when CR4.SMEP=1 or EFER.NXE=1) and PK, and
  loads CR2. A non-canonical address raises #GP(0) instead, with no CR2.
- TLB tags (§4.10.1-4.10.2): entries carry the PCID only with CR4.PCIDE=1; G=1 leaves are global
  only with CR4.PGE=1. A page fault drops the faulting VA's cached entries (§4.10.4.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from pagewalk.errors import PageFault
from pagewalk.formats.base import PagingMode
from pagewalk.formats.x86 import X86Mode
from pagewalk.formats.x86_bits import CR0_WP, CR4_PCIDE, CR4_PGE, CR4_PKE, CR4_SMAP, CR4_SMEP
from pagewalk.mmu.pagefault import BaseRules, Why, make_fault
from pagewalk.mmu.walker import Translation
from pagewalk.walk import Fault

#: EFLAGS.AC (bit 18): with CR4.SMAP, lets supervisor code touch user pages (SDM §4.6.1).
EFLAGS_AC = 1 << 18

# #PF error-code bits (SDM vol. 3A figure 4-12).
PF_P = 1 << 0
PF_W = 1 << 1
PF_U = 1 << 2
PF_RSVD = 1 << 3
PF_I = 1 << 4
PF_PK = 1 << 5
_PF_NAMES = ((PF_P, "P"), (PF_W, "W/R"), (PF_U, "U/S"), (PF_RSVD, "RSVD"), (PF_I, "I/D"))


@dataclass
class X86Regs:
    """CR0, CR4, EFLAGS and PKRU as access checks see them (Intel SDM vol. 3A §4.6).

    EFER.NXE and CR4.PSE/PAE/LA57 are part of the mode, because they change how entries decode.
    """

    cr0: int = CR0_WP | 1 | (1 << 31)
    cr4: int = 0
    eflags: int = 0x2
    pkru: int = 0

    @classmethod
    def from_mode(cls, mode: X86Mode) -> X86Regs:
        """The registers the mode was configured with (EFLAGS.AC=0, PKRU=0)."""
        return cls(cr0=mode.cr0, cr4=mode.cr4)

    @property
    def wp(self) -> bool:
        """CR0.WP: supervisor writes obey R/W."""
        return bool(self.cr0 & CR0_WP)

    @property
    def smep(self) -> bool:
        """CR4.SMEP: no supervisor fetches from user pages."""
        return bool(self.cr4 & CR4_SMEP)

    @property
    def smap(self) -> bool:
        """CR4.SMAP with EFLAGS.AC=0: no supervisor data accesses to user pages."""
        return bool(self.cr4 & CR4_SMAP) and not self.eflags & EFLAGS_AC

    @property
    def pke(self) -> bool:
        """CR4.PKE: protection keys for user pages."""
        return bool(self.cr4 & CR4_PKE)

    @property
    def pge(self) -> bool:
        """CR4.PGE: global pages survive CR3 writes."""
        return bool(self.cr4 & CR4_PGE)

    @property
    def pcide(self) -> bool:
        """CR4.PCIDE: TLB entries are tagged with CR3[11:0]."""
        return bool(self.cr4 & CR4_PCIDE)


def x86_refusal(
    t: Translation, access: str, user: bool, regs: X86Regs, mode: PagingMode
) -> Why | None:
    """Why x86 refuses the access (SDM §4.6), or None."""
    r = t.rights
    why = None
    if user:
        if not r.user:
            why = "a user-mode access to a supervisor page (U/S=0 at some level)"
        elif access == "write" and not r.writable:
            why = "a user-mode write to a read-only page (R/W=0 at some level)"
        elif access == "exec" and r.xn_user:
            why = "an instruction fetch from an XD page (XD=1 at some level, EFER.NXE=1)"
    elif access == "exec":
        if r.user and regs.smep:
            why = "a supervisor fetch from a user page with CR4.SMEP=1"
        elif r.xn_priv:
            why = "an instruction fetch from an XD page (XD=1 at some level, EFER.NXE=1)"
    elif r.user and regs.smap:
        why = "a supervisor data access to a user page with CR4.SMAP=1 and EFLAGS.AC=0"
    elif access == "write" and not r.writable and regs.wp:
        why = "a supervisor write to a read-only page with CR0.WP=1"
    if why is not None:
        return ("protection", why, False)
    if access == "exec" or not r.user or not regs.pke or not mode.facts.protection_keys:
        return None
    bits = regs.pkru >> (2 * r.pkey)
    if bits & 1:
        return ("protection", f"PKRU.AD{r.pkey}=1 forbids data access with key {r.pkey}", True)
    if access == "write" and bits & 2 and (user or regs.wp):
        return ("protection", f"PKRU.WD{r.pkey}=1 forbids writes with key {r.pkey}", True)
    return None


def x86_error_code(
    mode: PagingMode,
    regs: X86Regs,
    access: str,
    user: bool,
    *,
    present: bool,
    rsvd: bool,
    pk: bool,
) -> int:
    """The #PF error code for one fault (SDM §4.7)."""
    assert isinstance(mode, X86Mode)
    code = PF_P if present else 0
    code |= PF_W if access == "write" else 0
    code |= PF_U if user else 0
    code |= PF_RSVD if rsvd else 0
    if access == "exec" and (regs.smep or mode.nxe):
        code |= PF_I
    return code | (PF_PK if pk else 0)


def describe_x86_code(code: int) -> str:
    """``P|W/R|U/S``-style names of the set bits (``0`` for none)."""
    names = [n for bit, n in (*_PF_NAMES, (PF_PK, "PK")) if code & bit]
    return "|".join(names) or "0"


class X86Rules(BaseRules):
    """The x86 register rules as the MMU asks for them (see :class:`~.rules.ArchRules`)."""

    regs_type = X86Regs
    drops_on_fault = True

    def default_regs(self, mode: PagingMode, tlb_tags: bool = False) -> X86Regs:
        assert isinstance(mode, X86Mode)
        regs = X86Regs.from_mode(mode)
        if tlb_tags:  # global pages always; PCIDs only in long mode (§4.10.1)
            regs.cr4 |= CR4_PGE | (CR4_PCIDE if mode.facts.pcid else 0)
        return regs

    def asid(self, regs: object, cpu_asid: int) -> int:
        assert isinstance(regs, X86Regs)
        return cpu_asid if regs.pcide else 0

    def pge(self, regs: object) -> bool:
        assert isinstance(regs, X86Regs)
        return regs.pge

    def refusal(
        self, mode: PagingMode, t: Translation, access: str, user: bool, regs: object
    ) -> Why | None:
        assert isinstance(regs, X86Regs)
        return x86_refusal(t, access, user, regs, mode)

    def walk_fault(
        self, mode: PagingMode, regs: object, va: int, fault: Fault, access: str, user: bool
    ) -> PageFault:
        assert isinstance(regs, X86Regs)
        if fault.kind in ("non-canonical", "bad-table"):
            vector = 13 if fault.kind == "non-canonical" else None
            return make_fault(va, fault.kind, fault.level, fault.reason, access, fault.raw,
                              None, {"vector": vector})  # fmt: skip
        rsvd = fault.kind == "reserved"
        code = x86_error_code(mode, regs, access, user, present=rsvd, rsvd=rsvd, pk=False)
        details = {"vector": 14, "cr2": va, "bits": describe_x86_code(code)}
        return make_fault(va, fault.kind, fault.level, fault.reason, access, fault.raw, code,
                          details)  # fmt: skip

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
        assert isinstance(regs, X86Regs)
        kind, reason, pk = why
        code = x86_error_code(mode, regs, access, user, present=True, rsvd=False, pk=pk)
        details = {"vector": 14, "cr2": va, "bits": describe_x86_code(code)}
        return make_fault(va, kind, level, reason, access, raw, code, details)
