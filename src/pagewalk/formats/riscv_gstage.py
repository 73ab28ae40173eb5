"""The RISC-V G-stage formats Sv39x4, Sv48x4 and Sv57x4: guest-physical to supervisor-physical.

Facts follow the RISC-V privileged spec, chapter "Hypervisor Extension": section "Hypervisor
Guest Address Translation and Protection Register (hgatp)" (RV64 MODE in bits 63:60: 0 Bare,
8 Sv39x4, 9 Sv48x4, 10 Sv57x4; VMID in bits 57:44; PPN in bits 43:0, whose two low bits read as
zero because the root table is 16 KiB and 16-KiB aligned) and section "Guest Physical Address
Translation": each mode is its Sv39/Sv48/Sv57 counterpart widened by two bits at the root (the
root index is 11 bits, so a GPA has 41, 50 or 59 bits and must be zero, not sign-extended, above
them), PTEs are the same, and "all memory accesses are considered user-level accesses": a G-stage
leaf with U = 0 gives a guest-page fault. The G bit is not used by G-stage translation. Faults
are guest-page faults (instruction 20, load 21, store/AMO 23), reported with ``htval`` = GPA >> 2
(see :mod:`pagewalk.nested_faults`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pagewalk.errors import ConfigError, EntryFormatError, hx
from pagewalk.formats.base import ArchFacts, Entry, Half, Level, MemType, Perm
from pagewalk.formats.riscv import RiscVMode, U

_BASE = {"sv39x4": "sv39", "sv48x4": "sv48", "sv57x4": "sv57"}
_HGATP_MODE = {"sv39x4": 8, "sv48x4": 9, "sv57x4": 10}
_HGATP_MODES = {v: k for k, v in _HGATP_MODE.items()}


class RiscVGStageMode(RiscVMode):
    """RISC-V G-stage translation (``sv39x4``, ``sv48x4``, ``sv57x4``) under hgatp.

    Args:
        variant: ``sv39x4``, ``sv48x4`` or ``sv57x4``.
        svpbmt: whether Svpbmt is implemented (bits 62:61 select a memory type).
    """

    root_names = ("hgatp",)

    def __init__(self, variant: str = "sv39x4", *, svpbmt: bool = False) -> None:
        if variant not in _BASE:
            raise ConfigError(f"unknown G-stage mode {variant!r} (sv39x4, sv48x4, sv57x4)")
        super().__init__(_BASE[variant], svpbmt=svpbmt)
        self.name = variant
        base = self._levels
        root = base[0]
        wide = Level(root.depth, root.number, root.name, root.shift, root.bits + 2, root.leaf_size)
        self._levels = (wide, *base[1:])
        gpa_bits = root.shift + wide.bits
        self._halves = (Half(0, "hgatp", self._levels, 0, 1 << gpa_bits, 16384),)

    def arch_facts(self) -> ArchFacts:
        return ArchFacts("riscv", stage=2)

    def canonical(self, va: int) -> int:
        return va

    def decode(self, raw: int, level: Level) -> Entry:
        entry = super().decode(raw, level)
        if entry.fault is None and entry.size and not raw & U:
            why = "a G-stage leaf with U=0 (every G-stage access is a user-level access)"
            return Entry(entry.kind, raw, entry.address, entry.size, entry.perm, None,
                         "page-fault", why)  # fmt: skip
        return entry

    def encode_leaf(
        self, pa: int, level: Level, perm: Perm, memtype: MemType = MemType.NORMAL
    ) -> int:
        if perm & Perm.GLOBAL:
            raise EntryFormatError("G-stage translation does not use the G bit")
        return super().encode_leaf(pa, level, perm | Perm.USER, memtype)

    def root_from_register(self, value: int, half: int = 0) -> int:
        return ((value & ((1 << 44) - 1)) << 12) & ~0x3FFF

    def hgatp(self, root_pa: int, vmid: int = 0) -> int:
        """The hgatp value that selects this mode with ``root_pa`` and ``vmid``."""
        return (_HGATP_MODE[self.name] << 60) | ((vmid & 0x3FFF) << 44) | (root_pa >> 12)


@dataclass(frozen=True)
class Hgatp:
    """A decoded hgatp: the G-stage mode, the VMID and the root table's PA."""

    value: int
    mode: str
    vmid: int
    root: int

    def describe(self) -> str:
        """``hgatp=0x... (Sv39x4, VMID 0x1, root 0x...)``."""
        return (
            f"hgatp={hx(self.value)} ({self.mode.capitalize()}, VMID {hx(self.vmid)}, "
            f"root {hx(self.root)})"
        )


def decode_hgatp(value: int) -> Hgatp:
    """Decode an RV64 hgatp as written.

    Raises:
        ConfigError: a value wider than 64 bits, MODE Bare (no G-stage translation) or a
            reserved MODE.
    """
    if value < 0 or value >> 64:
        raise ConfigError(f"hgatp {hx(value)} is wider than RV64's 64-bit hgatp")
    mode = value >> 60
    if mode not in _HGATP_MODES:
        what = "Bare: no G-stage translation" if mode == 0 else "reserved"
        raise ConfigError(
            f"hgatp {hx(value)} has MODE={mode} in bits 63:60 ({what}); "
            "G-stage translation needs 8 (Sv39x4), 9 (Sv48x4) or 10 (Sv57x4)"
        )
    root = ((value & ((1 << 44) - 1)) << 12) & ~0x3FFF
    return Hgatp(value, _HGATP_MODES[mode], (value >> 44) & 0x3FFF, root)


def gstage_from_hgatp(value: int, *, svpbmt: bool = False) -> tuple[RiscVGStageMode, int]:
    """The G-stage mode an hgatp selects and its root table's PA."""
    h = decode_hgatp(value)
    return RiscVGStageMode(h.mode, svpbmt=svpbmt), h.root
