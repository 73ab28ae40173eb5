"""What each virtualisation regime reports for a fault in a two-stage walk, as data.

A two-stage walk (:mod:`pagewalk.nested`) finds where it stops: which stage, which level, on
the final guest-physical address or on a read of a stage-1 table. This module turns that into
the registers each architecture fills, one :class:`Regime` per stage-2 kind (keyed by name, so
no code elsewhere tests a mode's class):

- ``ept``: Intel SDM vol. 3C §29.3.3 (EPT misconfiguration, exit reason 49; EPT violation, exit
  reason 48) and table 28-7 "Exit Qualification for EPT Violations": bits 0-2 the access (a
  guest paging-structure read is a data read, and a write as well when EPT A/D flags are on),
  bits 3-6 the AND of R, W, X (supervisor) and user-execute over the EPT entries used, bit 7
  guest-linear address valid, bit 8 set for the final translation and clear for a
  paging-structure access, bits 9-11 (advanced information) user, writable, execute-disable of
  the linear address. Stage-1 faults are guest #PF (SDM vol. 3A §4.7).
- ``npt``: AMD APM vol. 2 §15.25.6 "Nested versus Guest Page Faults": #VMEXIT(NPF), exit code
  0x400, EXITINFO1 a #PF-style error code (P, RW, US always 1, RSV, ID) with bit 32 (fault on
  the final GPA) or bit 33 (fault on a guest page-table access), EXITINFO2 the GPA. Guest
  page-table accesses are user writes (the A/D updates), as KVM's nested walker models them.
- ``arm``: Arm ARM D17 (ESR_EL2, HPFAR_EL2): a stage-2 abort from a lower EL, EC 0x24 (data)
  or 0x20 (instruction), DFSC/IFSC = kind and level (address size 0b0000LL, translation
  0b0001LL, access flag 0b0010LL, permission 0b0011LL), S1PTW (ISS bit 7) for a stage-1 table
  walk, WnR (bit 6), HPFAR_EL2.FIPA = IPA[51:12] in bits 43:4, FAR_EL2 the VA.
- ``riscv``: the privileged spec's hypervisor chapter: guest-page faults, cause 20
  (instruction), 21 (load), 23 (store/AMO) by the original access even when an implicit
  VS-stage PTE read faults; ``htval`` = GPA >> 2, ``stval`` the guest VA (``hstatus.GVA`` = 1),
  ``htinst`` the pseudoinstruction of an implicit PTE access (0x3000 64-bit read, 0x2000 32-bit
  read, +0x20 for a write) or 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pagewalk.formats.base import Rights

#: what nothing is allowed (a stage-2 regime refusing a privilege outright)
NO_RIGHTS = Rights(False, False, True, True, True)


@dataclass(frozen=True)
class FaultFacts:
    """Where a two-stage walk stopped, in the terms every regime's report is built from.

    Attributes:
        stage: 1 (the guest's own tables) or 2.
        kind: the walk's fault kind (``not-present``, ``reserved``, ``translation``...) or
            ``permission``; for stage 1, the guest's fault kind.
        level: the level number of the stage where the fault happened.
        access: ``read``, ``write`` or ``exec`` (the guest's access).
        user: the guest access is unprivileged.
        gva: the guest VA.
        gpa: the guest-physical address that stage 2 failed on (a table entry's IPA for a
            table walk), or None for a stage-1 fault.
        on_table: the fault happened on a read of a stage-1 table (Arm S1PTW).
        table_write: that read counts as a write (EPT A/D on; NPT).
        s2_rights: the AND of the stage-2 entries used, for a permission fault (else None).
        s1_rights: the stage-1 rights of the translation, when the stage-1 walk finished.
        code: the stage-1 fault's architecture code (#PF error code, FSC, scause).
        entry_size: the stage-1 entry size (RISC-V htinst).
    """

    stage: int
    kind: str
    level: int | None
    access: str
    user: bool
    gva: int
    gpa: int | None = None
    on_table: bool = False
    table_write: bool = False
    s2_rights: Rights | None = None
    s1_rights: Rights | None = None
    code: int | None = None
    entry_size: int = 8


@dataclass(frozen=True)
class Regime:
    """One stage-2 regime.

    Attributes:
        name: ``ept``, ``npt``, ``arm`` or ``riscv``.
        table_write: a read of a stage-1 table counts as a stage-2 write (given the mode's
            A/D setting: EPTP bit 6), else as a read.
        table_user: stage-2 checks of a table read are made as an unprivileged access.
        all_user: every guest access is checked as an unprivileged one (NPT, RISC-V G-stage).
        normalise: a stage-2 leaf's rights as the regime applies them.
        report: the registers the hardware fills.
    """

    name: str
    table_write: Callable[[bool], bool]
    table_user: bool
    all_user: bool
    normalise: Callable[[Rights], Rights]
    report: Callable[[FaultFacts], dict[str, Any]]


def allows(rights: Rights, access: str, user: bool) -> bool:
    """Whether ``rights`` allow ``access`` at this privilege (the stage-2 permission check)."""
    if access == "read":
        return rights.readable
    if access == "write":
        return rights.writable
    return not (rights.xn_user if user else rights.xn_priv)


def _bit(flag: bool, n: int) -> int:
    return (1 << n) if flag else 0


def _ept_report(f: FaultFacts) -> dict[str, Any]:
    if f.stage == 1:
        return {"exception": "#PF", "vector": 14, "error_code": f.code, "cr2": f.gva}
    if f.kind == "reserved":
        return {"exit": "EPT misconfiguration", "exit_reason": 49, "gpa": f.gpa}
    r = f.s2_rights
    q = _bit(f.access == "read" or f.on_table, 0)
    q |= _bit((f.access == "write" and not f.on_table) or (f.on_table and f.table_write), 1)
    q |= _bit(f.access == "exec" and not f.on_table, 2)
    if r is not None:
        q |= _bit(r.readable, 3) | _bit(r.writable, 4)
        q |= _bit(not r.xn_priv, 5) | _bit(not r.xn_user, 6)
    q |= 1 << 7  # the guest-linear address field is valid
    if not f.on_table:
        q |= 1 << 8
        s1 = f.s1_rights
        if s1 is not None:
            q |= _bit(s1.user, 9) | _bit(s1.writable, 10) | _bit(s1.xn_priv and s1.xn_user, 11)
    return {
        "exit": "EPT violation",
        "exit_reason": 48,
        "qualification": q,
        "gpa": f.gpa,
        "gla": f.gva,
    }


def _npt_report(f: FaultFacts) -> dict[str, Any]:
    if f.stage == 1:
        return {"exception": "#PF", "vector": 14, "error_code": f.code, "cr2": f.gva}
    info = _bit(f.kind in ("permission", "reserved"), 0)
    info |= _bit((f.access == "write" and not f.on_table) or f.on_table, 1)
    info |= 1 << 2  # every nested access is a user access
    info |= _bit(f.kind == "reserved", 3)
    info |= _bit(f.access == "exec" and not f.on_table, 4)
    info |= 1 << (33 if f.on_table else 32)
    return {"exit": "#VMEXIT(NPF)", "exit_code": 0x400, "exitinfo1": info, "exitinfo2": f.gpa}


_ARM_FSC = {"address-size": 0b000000, "translation": 0b000100, "access-flag": 0b001000,
            "permission": 0b001100}  # fmt: skip


def _arm_report(f: FaultFacts) -> dict[str, Any]:
    if f.stage == 1:
        return {"exception": "abort taken to EL1", "fsc": f.code, "far_el1": f.gva}
    ec = 0x20 if f.access == "exec" else 0x24
    wnr = f.table_write if f.on_table else f.access == "write"
    iss = _ARM_FSC.get(f.kind, 0b100001) | ((f.level or 0) & 3)
    iss |= _bit(f.on_table, 7) | _bit(wnr and ec == 0x24, 6)
    esr = (ec << 26) | (1 << 25) | iss
    return {
        "exception": "stage-2 " + ("instruction" if ec == 0x20 else "data") + " abort to EL2",
        "ec": ec,
        "esr_el2": esr,
        "s1ptw": f.on_table,
        "hpfar_el2": ((f.gpa or 0) >> 12) << 4,
        "far_el2": f.gva,
        "ipa": f.gpa,
    }


_RISCV_CAUSE = {"exec": 20, "read": 21, "write": 23}
_RISCV_PF = {"exec": 12, "read": 13, "write": 15}


def _riscv_report(f: FaultFacts) -> dict[str, Any]:
    if f.stage == 1:
        return {"exception": "page fault", "cause": _RISCV_PF[f.access], "stval": f.gva}
    htinst = 0
    if f.on_table:
        htinst = (0x3000 if f.entry_size == 8 else 0x2000) | (0x20 if f.table_write else 0)
    return {
        "exception": "guest-page fault",
        "cause": _RISCV_CAUSE[f.access],
        "stval": f.gva,
        "htval": (f.gpa or 0) >> 2,
        "htinst": htinst,
        "hstatus_gva": 1,
    }


def _npt_rights(r: Rights) -> Rights:
    # AMD APM vol. 2 §15.25.5: nested walks are user accesses, so U/S=0 allows nothing.
    return r if r.user else NO_RIGHTS


def _same(r: Rights) -> Rights:
    return r


REGIMES: dict[str, Regime] = {
    "ept": Regime("ept", lambda ad: ad, False, False, _same, _ept_report),
    "npt": Regime("npt", lambda ad: True, True, True, _npt_rights, _npt_report),
    "arm": Regime("arm", lambda ad: False, False, False, _same, _arm_report),
    "riscv": Regime("riscv", lambda ad: False, True, True, _same, _riscv_report),
}


def combine(s1: Rights, s2: Rights) -> Rights:
    """Stage 1 ∩ stage 2: an access must pass both (the privilege is stage 1's)."""
    return Rights(
        s1.readable and s2.readable,
        s1.writable and s2.writable,
        s1.user,
        s1.xn_user or s2.xn_user,
        s1.xn_priv or s2.xn_priv,
        s1.pkey,
    )
