"""The control-register state that access checks read at the moment of each access.

Paging *formats* (levels, reserved bits) are fixed by the :class:`~pagewalk.formats.PagingMode`;
these registers only decide who may do what with a translation, and may change between accesses
without changing a single table entry. They follow Intel SDM vol. 3A §2.5 (CR0.WP, CR4.SMEP,
CR4.SMAP, CR4.PKE, CR4.PGE, CR4.PCIDE), §2.3 (EFLAGS.AC) and §4.6.2 (PKRU); Arm ARM D8.4
(SCTLR_EL1.WXN, PSTATE.PAN; TCR_EL1.HA/HD live in the mode because they change decoding); and the
RISC-V privileged spec (mstatus.SUM/MXR, and menvcfg.ADUE which selects Svadu over Svade).

Access kinds and privileges are spelled the way each manual spells them and normalised here:
``read``/``write``/``execute`` (``exec``), and ``user``/``supervisor``, ``EL0``/``EL1`` or
``U``/``S``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagewalk.errors import ConfigError
from pagewalk.formats.aarch64 import AArch64Mode
from pagewalk.formats.base import PagingMode
from pagewalk.formats.riscv import RiscVMode
from pagewalk.formats.x86 import (
    CR0_WP,
    CR4_PCIDE,
    CR4_PGE,
    CR4_PKE,
    CR4_SMAP,
    CR4_SMEP,
    X86Mode,
)

#: EFLAGS.AC (bit 18): with CR4.SMAP, lets supervisor code touch user pages (SDM §4.6.1).
EFLAGS_AC = 1 << 18
#: SCTLR_EL1.M and SCTLR_EL1.WXN (bit 19, Arm ARM D8.4 "Write permission implies XN").
SCTLR_M = 1 << 0
SCTLR_WXN = 1 << 19
#: SCTLR_EL1.SPAN (bit 23); 0 means PSTATE.PAN is set on exception entry to EL1.
SCTLR_SPAN = 1 << 23
SCTLR_DEFAULT = 0x30D00801

_KINDS = {"read": "read", "load": "read", "write": "write", "store": "write"}
_KINDS.update({"exec": "exec", "execute": "exec", "fetch": "exec", "x": "exec"})
_USER = {"user": True, "el0": True, "u": True, "supervisor": False, "el1": False, "s": False}
_USER.update({"kernel": False, "cpl3": True, "cpl0": False})


def access_kind(kind: str) -> str:
    """``read``, ``write`` or ``exec`` for any spelling the manuals use.

    Raises:
        ConfigError: for an unknown access kind.
    """
    try:
        return _KINDS[kind.lower()]
    except KeyError:
        raise ConfigError(f"unknown access kind {kind!r} (use read, write or execute)") from None


def is_user(privilege: str | bool) -> bool:
    """Whether ``privilege`` is the unprivileged level (x86 CPL 3, Arm EL0, RISC-V U).

    Raises:
        ConfigError: for an unknown privilege name.
    """
    if isinstance(privilege, bool):
        return privilege
    try:
        return _USER[privilege.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown privilege {privilege!r} (use user/supervisor, EL0/EL1 or U/S)"
        ) from None


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


@dataclass
class ArmRegs:
    """SCTLR_EL1 and PSTATE.PAN (Arm ARM D8.4). TCR_EL1.HA/HD come from the mode."""

    sctlr: int = SCTLR_DEFAULT
    pan: bool = False

    @property
    def wxn(self) -> bool:
        """SCTLR_EL1.WXN: writable memory is execute-never."""
        return bool(self.sctlr & SCTLR_WXN)


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


Regs = X86Regs | ArmRegs | RiscvRegs


def default_regs(mode: PagingMode) -> Regs:
    """The registers a freshly configured CPU in ``mode`` has.

    Raises:
        ConfigError: for a mode this module does not know.
    """
    if isinstance(mode, X86Mode):
        return X86Regs.from_mode(mode)
    if isinstance(mode, AArch64Mode):
        return ArmRegs()
    if isinstance(mode, RiscVMode):
        return RiscvRegs()
    raise ConfigError(f"no register model for mode {mode.name}")


def check_regs(mode: PagingMode, regs: Regs) -> None:
    """Raise :class:`ConfigError` if ``regs`` belong to another architecture than ``mode``."""
    want = {X86Mode: X86Regs, AArch64Mode: ArmRegs, RiscVMode: RiscvRegs}
    for mode_cls, regs_cls in want.items():
        if isinstance(mode, mode_cls) and not isinstance(regs, regs_cls):
            raise ConfigError(f"mode {mode.name} needs {regs_cls.__name__}, not {regs!r}")
