"""Which register rules apply to a paging mode: one module per architecture, chosen by data.

The MMU asks the same questions of every architecture (what do the control registers say about
this access, which fault and code does a stopped walk raise, how are TLB entries tagged), and
each architecture answers in its own module: :mod:`pagewalk.mmu.x86` (Intel SDM vol. 3A §4.6-4.10),
:mod:`pagewalk.mmu.arm` (Arm ARM D8.4-D8.13), :mod:`pagewalk.mmu.riscv` (RISC-V privileged
spec). The choice is a table keyed by the mode's :attr:`~pagewalk.formats.base.ArchFacts.family`,
so the rest of the MMU never tests the architecture.
"""

from __future__ import annotations

from typing import Protocol

from pagewalk.errors import ConfigError, PageFault
from pagewalk.formats.base import PagingMode
from pagewalk.mmu.arm import ArmRegs, ArmRules
from pagewalk.mmu.pagefault import Why
from pagewalk.mmu.riscv import RiscvRegs, RiscvRules
from pagewalk.mmu.walker import Translation
from pagewalk.mmu.x86 import X86Regs, X86Rules
from pagewalk.walk import Fault

Regs = X86Regs | ArmRegs | RiscvRegs


class ArchRules(Protocol):
    """What the MMU asks of an architecture's register rules.

    Attributes:
        regs_type: the register class this architecture uses.
        drops_on_fault: a fault drops the faulting VA's cached entries (x86 §4.10.4.1).
    """

    @property
    def regs_type(self) -> type[Regs]: ...

    @property
    def drops_on_fault(self) -> bool: ...

    def default_regs(self, mode: PagingMode, tlb_tags: bool = False) -> Regs:
        """The registers a freshly configured CPU in ``mode`` has; with ``tlb_tags``, also
        the enables a kernel sets so TLB entries survive switches (x86 CR4.PGE and, in long
        mode, CR4.PCIDE; other architectures need none)."""
        ...

    def asid(self, regs: object, cpu_asid: int) -> int:
        """The tag TLB entries get (x86: 0 unless CR4.PCIDE=1)."""
        ...

    def pge(self, regs: object) -> bool:
        """Whether a leaf's global bit counts (x86 CR4.PGE; always elsewhere)."""
        ...

    def svadu(self, regs: object) -> bool:
        """Whether the hardware sets A/D on an allowed access (RISC-V Svadu)."""
        ...

    def refusal(
        self, mode: PagingMode, t: Translation, access: str, user: bool, regs: object
    ) -> Why | None:
        """Why the registers and rights refuse ``access``, or None."""
        ...

    def walk_fault(
        self, mode: PagingMode, regs: object, va: int, fault: Fault, access: str, user: bool
    ) -> PageFault:
        """The architecture's fault for a walk that stopped."""
        ...

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
        """The architecture's fault for an access the rights refuse."""
        ...


_RULES: dict[str, ArchRules] = {"x86": X86Rules(), "arm": ArmRules(), "riscv": RiscvRules()}


def rules_for(mode: PagingMode) -> ArchRules:
    """The register rules of ``mode``'s architecture.

    Raises:
        ConfigError: for a mode whose architecture has no register rules.
    """
    try:
        return _RULES[mode.facts.family]
    except KeyError:
        raise ConfigError(f"no MMU model for mode {mode.name}") from None
