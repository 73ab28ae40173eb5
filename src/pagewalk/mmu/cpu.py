"""The CPU's translation registers: what loading CR3, TTBR0/TTBR1_EL1 or satp sets.

An :class:`~pagewalk.space.AddressSpace` is installed by writing its roots into these registers,
as a kernel does (Intel SDM vol. 3A §4.5 and §2.5 for CR3 with PCID; Arm ARM D8.2 and D19 for
TTBRn_EL1 with the ASID in bits 63:48; RISC-V privileged spec, the satp register). The MMU and
TLB model use the registers to pick the tables and the ASID/PCID of each access.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pagewalk.errors import ConfigError
from pagewalk.formats.base import PagingMode


@dataclass
class CPU:
    """Translation registers of one CPU.

    Attributes:
        mode: the paging mode the CPU runs in.
        roots: root table PAs, one per root register of the mode.
        asid: the current ASID (Arm), PCID (x86) or ASID (RISC-V).
        registers: the raw register values as last written (``cr3``, ``ttbr0_el1``...).
        installs: how many times roots were loaded (a context-switch count).
    """

    mode: PagingMode
    roots: list[int] = field(default_factory=list)
    asid: int = 0
    registers: dict[str, int] = field(default_factory=dict)
    installs: int = 0

    def load_roots(self, mode: PagingMode, roots: Sequence[int], asid: int = 0) -> None:
        """Load the roots the way the architecture's register writes would."""
        if mode.name != self.mode.name:
            raise ConfigError(f"a {mode.name} address space cannot run on a {self.mode.name} CPU")
        self.roots = list(roots)
        self.asid = asid
        self.installs += 1
        name = mode.name
        if name in ("x86", "pae", "x86_64", "la57"):
            self.registers["cr3"] = roots[0] | (asid & 0xFFF if name in ("x86_64", "la57") else 0)
        elif name == "aarch64":
            self.registers["ttbr0_el1"] = roots[0] | ((asid & 0xFFFF) << 48)
            self.registers["ttbr1_el1"] = roots[1]
        else:
            satp = getattr(mode, "satp", None)
            if satp is not None:
                self.registers["satp"] = int(satp(roots[0], asid))
