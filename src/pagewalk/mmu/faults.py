"""Page faults with each architecture's details: x86 error codes, Arm fault status, RISC-V causes.

x86 (Intel SDM vol. 3A §4.7): a #PF pushes an error code whose bits say P (0: not present, 1:
protection or reserved bit), W/R (a write), U/S (a user-mode access), RSVD (a reserved bit was
set), I/D (an instruction fetch, reported only when CR4.SMEP=1 or when PAE-or-wider paging runs
with EFER.NXE=1) and PK (a protection-key violation), and loads CR2 with the address. A
non-canonical address raises #GP(0) instead, with no CR2. AArch64 (Arm ARM D8.4/D8.5, and the
ESR_EL1 ISS encodings): a data or instruction abort whose fault status code is 0b0000LL (address
size), 0b0001LL (translation), 0b0010LL (access flag), 0b0011LL (permission) or 0b0101LL (external
abort on a table walk), LL being the level, with FAR_EL1 = the address. RISC-V (privileged spec,
"Supervisor Cause Register"): cause 12/13/15 for an instruction, load or store/AMO page fault, and
1/5/7 for the matching access faults, with stval = the address.
"""

from __future__ import annotations

from collections.abc import Mapping

from pagewalk.errors import PageFault
from pagewalk.formats.base import PagingMode
from pagewalk.formats.x86 import X86Mode
from pagewalk.mmu.regs import Regs, X86Regs
from pagewalk.mmu.walker import arch_of
from pagewalk.walk import Fault

# x86 #PF error-code bits (SDM vol. 3A figure 4-12).
PF_P = 1 << 0
PF_W = 1 << 1
PF_U = 1 << 2
PF_RSVD = 1 << 3
PF_I = 1 << 4
PF_PK = 1 << 5
_PF_NAMES = ((PF_P, "P"), (PF_W, "W/R"), (PF_U, "U/S"), (PF_RSVD, "RSVD"), (PF_I, "I/D"))

#: Arm fault status code bases; the level is added (Arm ARM, ESR_ELx.ISS DFSC/IFSC)
FSC_BASE = {
    "address-size": 0x00,
    "translation": 0x04,
    "access-flag": 0x08,
    "permission": 0x0C,
    "bad-table": 0x14,
}
#: RISC-V scause values per access kind
RV_PAGE_FAULT = {"exec": 12, "read": 13, "write": 15}
RV_ACCESS_FAULT = {"exec": 1, "read": 5, "write": 7}


def x86_error_code(
    mode: X86Mode, regs: X86Regs, access: str, user: bool, *, present: bool, rsvd: bool, pk: bool
) -> int:
    """The #PF error code for one fault (SDM §4.7)."""
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


def walk_fault(
    mode: PagingMode, regs: Regs, va: int, fault: Fault, access: str, user: bool
) -> PageFault:
    """The architecture's fault for a walk that stopped (not present, reserved, translation...)."""
    arch = arch_of(mode)
    if arch == "x86":
        assert isinstance(mode, X86Mode) and isinstance(regs, X86Regs)
        if fault.kind in ("non-canonical", "bad-table"):
            vector = 13 if fault.kind == "non-canonical" else None
            return _fault(va, fault.kind, fault.level, fault.reason, access, fault.raw, None,
                          {"vector": vector})  # fmt: skip
        rsvd = fault.kind == "reserved"
        code = x86_error_code(mode, regs, access, user, present=rsvd, rsvd=rsvd, pk=False)
        details = {"vector": 14, "cr2": va, "bits": describe_x86_code(code)}
        return _fault(va, fault.kind, fault.level, fault.reason, access, fault.raw, code, details)
    if arch == "arm":
        return arm_fault(va, fault.kind, fault.level, fault.reason, access, user, fault.raw)
    kind = "access-fault" if fault.kind == "bad-table" else "page-fault"
    cause = (RV_ACCESS_FAULT if kind == "access-fault" else RV_PAGE_FAULT)[access]
    details = {"cause": cause, "stval": va}
    return _fault(va, kind, fault.level, fault.reason, access, fault.raw, cause, details)


def arm_fault(
    va: int, kind: str, level: int | None, reason: str, access: str, user: bool, raw: int | None
) -> PageFault:
    """An AArch64 data or instruction abort with its fault status code."""
    fsc = FSC_BASE.get(kind, 0x10) + (level or 0)
    ec = (0x20 if access == "exec" else 0x24) + (0 if user else 1)
    details = {"fsc": fsc, "ec": ec, "wnr": access == "write", "far": va}
    return _fault(va, kind, level, reason, access, raw, fsc, details)


def _fault(
    va: int,
    kind: str,
    level: int | None,
    reason: str,
    access: str,
    raw: int | None,
    code: int | None,
    details: Mapping[str, object],
) -> PageFault:
    return PageFault(
        va=va,
        kind=kind,
        level=level,
        reason=reason,
        access=access,
        raw_entry=raw,
        code=code,
        details=dict(details),
    )


def rights_fault(
    mode: PagingMode,
    regs: Regs,
    va: int,
    access: str,
    user: bool,
    why: tuple[str, str, bool],
    level: int,
    raw: int,
) -> PageFault:
    """The fault for an access the translation's rights refuse.

    Args:
        why: ``(kind, reason, pk)``: the fault kind (``protection``, ``permission``,
            ``page-fault``, or ``access-flag`` for an Arm AF=0 entry), the sentence, and whether
            an x86 protection key caused it.
    """
    kind, reason, pk = why
    arch = arch_of(mode)
    if arch == "x86":
        assert isinstance(mode, X86Mode) and isinstance(regs, X86Regs)
        code = x86_error_code(mode, regs, access, user, present=True, rsvd=False, pk=pk)
        details = {"vector": 14, "cr2": va, "bits": describe_x86_code(code)}
        return _fault(va, kind, level, reason, access, raw, code, details)
    if arch == "arm":
        return arm_fault(va, kind, level, reason, access, user, raw)
    cause = RV_PAGE_FAULT[access]
    return _fault(va, kind, level, reason, access, raw, cause, {"cause": cause, "stval": va})
