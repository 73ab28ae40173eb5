"""Effective access rights: may this privilege read, write or execute through this translation?

The combined rights of a walk (:class:`~pagewalk.mmu.walker.Rights`) meet the control registers
at the moment of the access:

- x86, Intel SDM vol. 3A §4.6.1: user accesses need U/S=1 at every level, writes R/W=1 at every
  level; supervisor writes ignore R/W when CR0.WP=0; CR4.SMAP (unless EFLAGS.AC=1) forbids
  supervisor data accesses to user pages and CR4.SMEP supervisor fetches from them; with
  EFER.NXE=1 an XD bit at any level forbids fetches. §4.6.2: with CR4.PKE in 4- and 5-level
  paging, PKRU's AD bit for the leaf's key (bits 62:59) forbids data accesses to user pages and
  its WD bit forbids user writes and, when CR0.WP=1, supervisor writes. Fetches ignore keys.
- AArch64, Arm ARM D8.4: AP[2:1] with APTable restrictions; EL0 fetches obey UXN/UXNTable, EL1
  fetches PXN/PXNTable and never run EL0-writable memory; SCTLR_EL1.WXN makes writable memory
  execute-never; PSTATE.PAN forbids EL1 data accesses to EL0-accessible memory. A write to a
  writable-clean DBM entry is allowed when TCR_EL1.HD=1 (D8.5).
- RISC-V privileged spec: U-mode needs U=1; S-mode may touch U=1 pages only with mstatus.SUM and
  never executes them; loads need R (or X with mstatus.MXR), stores W, fetches X; under Svade an
  A=0 entry, or D=0 on a store, faults.

:func:`check_access` is the stand-alone entry point the CLI uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from pagewalk.errors import ConfigError, PageFault
from pagewalk.formats.base import PagingMode
from pagewalk.formats.x86 import X86Mode
from pagewalk.mmu.faults import rights_fault, walk_fault
from pagewalk.mmu.regs import (
    ArmRegs,
    Regs,
    RiscvRegs,
    X86Regs,
    access_kind,
    check_regs,
    default_regs,
    is_user,
)
from pagewalk.mmu.walker import EntryMemory, Translation, mark_leaf, walk_access
from pagewalk.walk import EntryReader

#: (fault kind, reason, caused by an x86 protection key)
Why = tuple[str, str, bool]


def x86_refusal(
    t: Translation, access: str, user: bool, regs: X86Regs, mode: X86Mode
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
    if access == "exec" or not r.user or not regs.pke or mode.name not in ("x86_64", "la57"):
        return None
    bits = regs.pkru >> (2 * r.pkey)
    if bits & 1:
        return ("protection", f"PKRU.AD{r.pkey}=1 forbids data access with key {r.pkey}", True)
    if access == "write" and bits & 2 and (user or regs.wp):
        return ("protection", f"PKRU.WD{r.pkey}=1 forbids writes with key {r.pkey}", True)
    return None


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


def refusal(mode: PagingMode, t: Translation, access: str, user: bool, regs: Regs) -> Why | None:
    """Why the architecture refuses ``access`` through ``t`` at this privilege, or None."""
    if isinstance(regs, X86Regs):
        assert isinstance(mode, X86Mode)
        return x86_refusal(t, access, user, regs, mode)
    if isinstance(regs, ArmRegs):
        return arm_refusal(t, access, user, regs)
    return riscv_refusal(t, access, user, regs)


def check_access(
    mem: EntryReader,
    mode: PagingMode,
    roots: Sequence[int],
    va: int,
    access: str,
    user: bool | str,
    regs: Regs | None = None,
    *,
    update: bool = False,
) -> int | PageFault:
    """Check one access with no TLB: the PA, or the fault the architecture raises.

    Args:
        mem: physical memory holding the tables.
        mode: the paging mode; roots: its root table PAs.
        va: the virtual address.
        access: ``read``, ``write`` or ``exec`` (``execute``).
        user: the unprivileged level (x86 CPL 3, EL0, U-mode), or a privilege name.
        regs: the control registers (default: those the mode was configured with).
        update: set A/D bits as the hardware would (off by default, for read-only dumps).

    Returns:
        The physical address, or a :class:`~pagewalk.errors.PageFault` (not raised) whose
        ``to_json()`` gives ``{"kind", "level"}`` plus ``"code"`` (x86 error code, Arm FSC or
        RISC-V cause).
    """
    kind, priv = access_kind(access), is_user(user)
    if update and not hasattr(mem, "write_entry"):
        raise ConfigError("update=True needs writable memory (A/D bits are written back)")
    writable = cast(EntryMemory, mem)  # written only when update=True, checked above
    regs = default_regs(mode) if regs is None else regs
    check_regs(mode, regs)
    pge = regs.pge if isinstance(regs, X86Regs) else True
    result = walk_access(writable, mode, roots, va, pge=pge, update=update)
    if not isinstance(result, Translation):
        return walk_fault(mode, regs, va, result, kind, priv)
    why = refusal(mode, result, kind, priv, regs)
    if why is not None:
        return rights_fault(mode, regs, va, kind, priv, why, result.level, result.leaf_raw)
    if update:
        mark_leaf(writable, mode, result, kind == "write", getattr(regs, "svadu", False))
    return result.pa_of(va)
