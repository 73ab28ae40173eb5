"""What the per-architecture register rules share: the fault builder and the common defaults.

The rules modules (:mod:`pagewalk.mmu.x86`, :mod:`pagewalk.mmu.arm`, :mod:`pagewalk.mmu.riscv`)
each decide the fault code and details their manual defines (Intel SDM vol. 3A §4.7, Arm ARM
D8.4-D8.5 and the ESR_ELx ISS encodings, the RISC-V privileged spec's scause values); this module
assembles the exception object, and :class:`BaseRules` holds the answers most architectures share
(TLB entries tagged by the ASID as it is, every global bit counts, a fault leaves the TLB alone).
"""

from __future__ import annotations

from collections.abc import Mapping

from pagewalk.errors import PageFault

#: why an access is refused: (fault kind, reason, caused by an x86 protection key)
Why = tuple[str, str, bool]


def make_fault(
    va: int,
    kind: str,
    level: int | None,
    reason: str,
    access: str,
    raw: int | None,
    code: int | None,
    details: Mapping[str, object],
) -> PageFault:
    """A page fault (not raised) with its code and architecture details."""
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


class BaseRules:
    """Defaults for :class:`~pagewalk.mmu.rules.ArchRules`; x86 overrides the TLB-tag rules."""

    drops_on_fault = False

    def asid(self, regs: object, cpu_asid: int) -> int:
        """The tag TLB entries get: the current ASID."""
        return cpu_asid

    def pge(self, regs: object) -> bool:
        """A leaf's global bit always counts."""
        return True

    def svadu(self, regs: object) -> bool:
        """Hardware A/D updates need no enable."""
        return True
