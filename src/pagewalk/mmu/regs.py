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

from pagewalk.errors import ConfigError
from pagewalk.formats.base import PagingMode
from pagewalk.mmu.arm import SCTLR_DEFAULT, SCTLR_M, SCTLR_SPAN, SCTLR_WXN, ArmRegs
from pagewalk.mmu.riscv import RiscvRegs
from pagewalk.mmu.rules import Regs, rules_for
from pagewalk.mmu.x86 import EFLAGS_AC, X86Regs

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


def default_regs(mode: PagingMode, *, tlb_tags: bool = False) -> Regs:
    """The registers a freshly configured CPU in ``mode`` has.

    With ``tlb_tags``, also the enables a kernel turns on so TLB entries survive root switches
    (x86 CR4.PGE, and CR4.PCIDE in long mode, SDM §4.10.1-4.10.2).

    Raises:
        ConfigError: for a mode this module does not know.
    """
    return rules_for(mode).default_regs(mode, tlb_tags)


def check_regs(mode: PagingMode, regs: Regs) -> None:
    """Raise :class:`ConfigError` if ``regs`` belong to another architecture than ``mode``."""
    want = rules_for(mode).regs_type
    if not isinstance(regs, want):
        raise ConfigError(f"mode {mode.name} needs {want.__name__}, not {regs!r}")


__all__ = [
    "EFLAGS_AC",
    "SCTLR_DEFAULT",
    "SCTLR_M",
    "SCTLR_SPAN",
    "SCTLR_WXN",
    "ArmRegs",
    "Regs",
    "RiscvRegs",
    "X86Regs",
    "access_kind",
    "check_regs",
    "default_regs",
    "is_user",
]
