"""The RISC-V page-based virtual-memory formats Sv32, Sv39, Sv48 and Sv57.

Facts follow the RISC-V privileged spec, chapter "Supervisor-Level ISA", sections on Sv32, Sv39,
Sv48 and Sv57 and the "Virtual Address Translation Process" algorithm: PTE bits V R W X U G A D,
RSW, and the PPN; W=1 with R=0 is reserved; a PTE with R or X set is a leaf at any level; a
misaligned superpage (nonzero low PPN fields) is a page fault; for non-leaf PTEs the D, A and U
bits are reserved for future standard use, so a walk faults on them; in Sv39/48/57 bits 63:54 are
reserved unless Svpbmt (bits 62:61, PBMT) or Svnapot (bit 63, N) is implemented, and a VA must
sign-extend its top bit. Every fault is a page fault (load, store/AMO or instruction).

:func:`decode_satp` reads the satp register as written (spec section "Supervisor Address
Translation and Protection (satp) Register"): RV32 MODE is bit 31, ASID bits 30:22, PPN bits
21:0; RV64 MODE is bits 63:60 (8 Sv39, 9 Sv48, 10 Sv57; 0 Bare; the rest reserved or Sv64,
which no implementation has), ASID bits 59:44, PPN bits 43:0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pagewalk.errors import ConfigError, EntryFormatError, hx
from pagewalk.formats.base import (
    ALL_PERMS,
    Acc,
    ArchFacts,
    BoolArray,
    Entry,
    EntryKind,
    Field,
    Half,
    LeafState,
    Level,
    MemType,
    MiB,
    PagingMode,
    Perm,
    Rights,
    U64Array,
)

V = 1 << 0
R = 1 << 1
W = 1 << 2
X = 1 << 3
U = 1 << 4
G = 1 << 5
A = 1 << 6
D = 1 << 7

_LEVELS = {"sv32": 2, "sv39": 3, "sv48": 4, "sv57": 5}
_SATP_MODE = {"sv32": 1, "sv39": 8, "sv48": 9, "sv57": 10}
_SATP64_MODES = {8: "sv39", 9: "sv48", 10: "sv57"}
_PBMT = {MemType.NORMAL: 0, MemType.WRITE_COMBINING: 1, MemType.DEVICE: 2}


class RiscVMode(PagingMode):
    """RISC-V Sv32/Sv39/Sv48/Sv57.

    Args:
        variant: ``sv32``, ``sv39``, ``sv48`` or ``sv57``.
        svpbmt: whether Svpbmt is implemented (bits 62:61 select a memory type).
    """

    not_present_kind = "page-fault"
    non_canonical_kind = "page-fault"
    root_names = ("satp",)

    def arch_facts(self) -> ArchFacts:
        return ArchFacts("riscv", va_bits=32 if self.name == "sv32" else 64)

    def __init__(self, variant: str = "sv39", *, svpbmt: bool = False) -> None:
        if variant not in _LEVELS:
            raise ConfigError(f"unknown RISC-V mode {variant!r}")
        self.name = variant
        self.svpbmt = svpbmt and variant != "sv32"
        n = _LEVELS[variant]
        if variant == "sv32":
            self.entry_size = 4
            self.pa_bits = self.root_bits = 34  # satp.PPN is 22 bits
            levels: tuple[Level, ...] = (
                Level(1, 1, "VPN[1]", 22, 10, 4 * MiB),
                Level(0, 0, "VPN[0]", 12, 10, 4096),
            )
            self._halves: tuple[Half, ...] = (Half(0, "satp", levels, 0, 1 << 32, 4096),)
            self._ppn_mask = (1 << 22) - 1
            self._reserved = 0
        else:
            self.entry_size = 8
            self.pa_bits = self.root_bits = 56  # satp.PPN is 44 bits
            levels = tuple(
                Level(i, i, f"VPN[{i}]", 12 + 9 * i, 9, 4096 << (9 * i)) for i in reversed(range(n))
            )
            va_bits = 12 + 9 * n
            half = 1 << (va_bits - 1)
            self._halves = (
                Half(0, "satp", levels, 0, half, 4096),
                Half(0, "satp", levels, (1 << 64) - half, 1 << 64, 4096),
            )
            self._ppn_mask = (1 << 44) - 1
            self._reserved = ((1 << 64) - 1) & ~((1 << 54) - 1)
            if self.svpbmt:
                self._reserved &= ~(3 << 61)
        self._levels = levels

    @property
    def halves(self) -> tuple[Half, ...]:
        return self._halves

    def canonical(self, va: int) -> int:
        if self.name == "sv32":
            return va & 0xFFFFFFFF
        bits = 12 + 9 * _LEVELS[self.name]
        va &= (1 << bits) - 1
        return va | (((1 << 64) - (1 << bits)) if va >> (bits - 1) else 0)

    def decode(self, raw: int, level: Level) -> Entry:
        if not raw & V:
            return Entry(EntryKind.INVALID, raw, fault="page-fault", reason="V (bit 0) is 0")
        address = ((raw >> 10) & self._ppn_mask) << 12
        leaf = bool(raw & (R | X))
        perm = (
            (Perm.READ if raw & R else Perm.NONE)
            | (Perm.WRITE if raw & W else Perm.NONE)
            | (Perm.EXEC if raw & X else Perm.NONE)
            | (Perm.USER if raw & U else Perm.NONE)
            | (Perm.GLOBAL if raw & G else Perm.NONE)
        )
        kind = EntryKind.LEAF if leaf else EntryKind.TABLE
        size = level.leaf_size if leaf else 0
        reason = self._reserved_reason(raw, level, leaf)
        if reason:
            return Entry(kind, raw, address, size, perm, None, "page-fault", reason)
        if not leaf:
            return Entry(EntryKind.TABLE, raw, address, 0, ALL_PERMS)
        memtype: MemType | str = MemType.NORMAL
        if self.svpbmt:
            memtype = {0: MemType.NORMAL, 1: MemType.WRITE_COMBINING, 2: MemType.DEVICE}.get(
                (raw >> 61) & 3, "reserved"
            )
        return Entry(EntryKind.LEAF, raw, address, size, perm, memtype)

    def _reserved_reason(self, raw: int, level: Level, leaf: bool) -> str:
        if raw & W and not raw & R:
            return "W=1 with R=0 is reserved"
        if raw & self._reserved:
            return f"reserved bits {hx(raw & self._reserved)} are set (bits 63:54)"
        if self.svpbmt and (raw >> 61) & 3 == 3:
            return "PBMT=3 is reserved"
        if not leaf:
            if self.svpbmt and (raw >> 61) & 3:
                return "PBMT (bits 62:61) is reserved in a non-leaf PTE (Svpbmt)"
            if level.depth == 0:
                return "a pointer PTE (R=W=X=0) at level 0"
            if raw & (A | D | U):
                return "A, D and U are reserved in a non-leaf PTE"
            return ""
        low = ((raw >> 10) & self._ppn_mask) & ((level.leaf_size >> 12) - 1)
        if low:
            return f"misaligned superpage: PPN bits below level {level.number} are {hx(low)}"
        return ""

    def fields(self, raw: int, level: Level) -> list[Field]:
        names = ("V", "R", "W", "X", "U", "G", "A", "D")
        out = [Field(n, raw >> i & 1) for i, n in enumerate(names)]
        out.append(Field("RSW", raw >> 8 & 3, 2))
        if self.svpbmt:
            out.append(Field("PBMT", raw >> 61 & 3, 2))
        out.append(Field("PPN", (raw >> 10) & self._ppn_mask, 44))
        return out

    # ------------------------------- permissions ("Virtual Address Translation Process")
    def fold_table(self, half: Half, level: Level, raw: int, acc: Acc) -> Acc:
        # G on a pointer makes every mapping below it global.
        return (acc[0] or bool(raw & G), False, False, False)

    def leaf_state(self, raw: int, acc: Acc, pge: bool = True) -> LeafState:
        no_x = not raw & X
        rights = Rights(bool(raw & R), bool(raw & W), bool(raw & U), no_x, no_x)
        return LeafState(rights, acc[0] or bool(raw & G), bool(raw & A), bool(raw & D))

    def table_perm(self, acc: Acc) -> Perm:
        return ALL_PERMS

    def mark_leaf(self, raw: int, write: bool, dbm: bool, svadu: bool) -> int:
        return raw | A | (D if write else 0) if svadu else raw

    def encode_table(self, table_pa: int, level: Level, perm: Perm) -> int:
        self._check_pa(table_pa, 4096, level)
        return ((table_pa >> 12) << 10) | V

    def widen_table(self, raw: int, level: Level, perm: Perm) -> int:
        return raw

    def encode_leaf(
        self, pa: int, level: Level, perm: Perm, memtype: MemType = MemType.NORMAL
    ) -> int:
        self._check_pa(pa, level.leaf_size, level)
        if not perm & (Perm.READ | Perm.WRITE | Perm.EXEC):
            raise EntryFormatError("a RISC-V leaf needs at least one of R, W, X")
        raw = ((pa >> 12) << 10) | V | A
        if perm & (Perm.READ | Perm.WRITE):
            raw |= R  # W without R is reserved, so write implies read
        if perm & Perm.WRITE:
            raw |= W | D
        if perm & Perm.EXEC:
            raw |= X
        if perm & Perm.USER:
            raw |= U
        if perm & Perm.GLOBAL:
            raw |= G
        if memtype is not MemType.NORMAL:
            if not self.svpbmt or memtype not in _PBMT:
                raise EntryFormatError(
                    f"mode {self.name} cannot express memory type {memtype.value} "
                    "(needs Svpbmt: normal, write-combining or device)"
                )
            raw |= _PBMT[memtype] << 61
        return raw

    def resize_leaf(self, raw: int, level: Level, new_level: Level, new_pa: int) -> int:
        self._check_pa(new_pa, new_level.leaf_size, new_level)
        return (raw & ~(self._ppn_mask << 10)) | ((new_pa >> 12) << 10)

    def perm_mask(self, level: Level) -> int:
        # D is state, not permission: a protect keeps it (clearing it would lose the dirty bit).
        return R | W | X | U | G

    def memtype_mask(self, level: Level) -> int:
        return (3 << 61) if self.svpbmt else 0

    def np_is_leaf(self, raws: U64Array, level: Level) -> BoolArray:
        return np.asarray((raws & np.uint64(R | X)) != 0, dtype=np.bool_)

    def address_mask(self, level: Level, leaf: bool) -> int:
        # A superpage's low PPN fields must be zero (else a page fault), so they are not address.
        low = ((level.leaf_size >> 12) - 1) if leaf else 0
        return (self._ppn_mask & ~low) << 10

    def np_address(self, raws: U64Array, level: Level, leaf: bool) -> U64Array:
        return ((raws >> np.uint64(10)) & np.uint64(self._ppn_mask)) << np.uint64(12)

    def satp(self, root_pa: int, asid: int = 0) -> int:
        """The satp value that selects this mode with ``root_pa`` and ``asid``."""
        if self.name == "sv32":
            return (1 << 31) | ((asid & 0x1FF) << 22) | (root_pa >> 12)
        return (_SATP_MODE[self.name] << 60) | ((asid & 0xFFFF) << 44) | (root_pa >> 12)

    def registers(self) -> dict[str, int]:
        return {"svpbmt": int(self.svpbmt)}


@dataclass(frozen=True)
class Satp:
    """A decoded satp value: the mode it selects, its ASID and the root table's PA."""

    value: int
    mode: str
    asid: int
    root: int

    def describe(self) -> str:
        """``satp=0x... (Sv39, ASID 0x0c, root 0x83085000)``."""
        return (
            f"satp={hx(self.value)} ({self.mode.capitalize()}, ASID {hx(self.asid)}, "
            f"root {hx(self.root)})"
        )


def decode_satp(value: int, xlen: int | None = None) -> Satp:
    """Decode satp as the register is written; ``xlen`` 32 or 64 (None: 32 when the value fits
    in 32 bits and sets bit 31, else 64).

    Raises:
        ConfigError: a value wider than the register, or a MODE that is Bare (no translation),
            reserved or not implemented (Sv64).
    """
    if xlen is None:
        xlen = 32 if value >> 31 == 1 else 64
    if xlen == 32:
        if value >> 32:
            raise ConfigError(f"satp {hx(value)} is wider than RV32's 32-bit satp")
        if not value >> 31:
            raise ConfigError(
                f"satp {hx(value)} has MODE=0 (Bare: no translation) in RV32's bit 31"
            )
        return Satp(value, "sv32", (value >> 22) & 0x1FF, (value & ((1 << 22) - 1)) << 12)
    mode = value >> 60
    if mode not in _SATP64_MODES:
        what = {0: "Bare: no translation", 11: "Sv64, which pagewalk does not implement"}
        raise ConfigError(
            f"satp {hx(value)} has MODE={mode} in bits 63:60 "
            f"({what.get(mode, 'reserved')}); RV64 paging needs 8 (Sv39), 9 (Sv48) or 10 (Sv57)"
        )
    return Satp(value, _SATP64_MODES[mode], (value >> 44) & 0xFFFF, (value & ((1 << 44) - 1)) << 12)
