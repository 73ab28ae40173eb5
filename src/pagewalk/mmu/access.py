"""Effective access rights: may this privilege read, write or execute through this translation?

The combined rights of a walk (:class:`~pagewalk.formats.base.Rights`, folded by the one walker
in :mod:`pagewalk.walk`) meet the control registers at the moment of the access. Each
architecture's rules live in its own module (Intel SDM vol. 3A §4.6 in :mod:`pagewalk.mmu.x86`,
Arm ARM D8.4-D8.5 in :mod:`pagewalk.mmu.arm`, the RISC-V privileged spec in
:mod:`pagewalk.mmu.riscv`); :func:`refusal` asks the right one. :func:`check_access` is the
stand-alone entry point the CLI uses: one access, no TLB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from pagewalk.errors import ConfigError, PageFault
from pagewalk.formats.base import PagingMode
from pagewalk.mmu.faults import rights_fault, walk_fault
from pagewalk.mmu.pagefault import Why
from pagewalk.mmu.regs import Regs, access_kind, check_regs, default_regs, is_user
from pagewalk.mmu.rules import rules_for
from pagewalk.mmu.walker import EntryMemory, Translation, mark_leaf, walk_access
from pagewalk.walk import EntryReader


def refusal(mode: PagingMode, t: Translation, access: str, user: bool, regs: Regs) -> Why | None:
    """Why the architecture refuses ``access`` through ``t`` at this privilege, or None."""
    return rules_for(mode).refusal(mode, t, access, user, regs)


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
    rules = rules_for(mode)
    result = walk_access(writable, mode, roots, va, pge=rules.pge(regs), update=update)
    if not isinstance(result, Translation):
        return walk_fault(mode, regs, va, result, kind, priv)
    why = refusal(mode, result, kind, priv, regs)
    if why is not None:
        return rights_fault(mode, regs, va, kind, priv, why, result.level, result.leaf_raw)
    if update:
        mark_leaf(writable, mode, result, kind == "write", rules.svadu(regs))
    return result.pa_of(va)


__all__ = ["Why", "check_access", "refusal"]
