"""The vocabulary of paging: permissions, memory types, levels, halves, entries, rights, facts.

Plain values with no behaviour beyond small conversions, shared by every codec
(:mod:`pagewalk.formats.base` and the per-architecture modules) and by every layer above them.
Level numbering: ``Level.depth`` counts from the leaf table (0) up to the root, the same way for
every mode; ``Level.number`` is the architecture's own number, which faults report (Intel SDM
vol. 3A ch. 4: PT=1 .. PML5=5; Arm ARM D8: L0 (root) .. L3; RISC-V privileged spec: i of
VPN[i]). :class:`Rights` is the one permission model (SDM §4.6.1, Arm ARM D8.4, the RISC-V
"Virtual Address Translation Process"), folded level by level by
:meth:`~pagewalk.formats.base.PagingMode.fold_table`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NewType

import numpy as np
import numpy.typing as npt

U64Array = npt.NDArray[np.uint64]
BoolArray = npt.NDArray[np.bool_]

VirtAddr = NewType("VirtAddr", int)
PhysAddr = NewType("PhysAddr", int)

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40


class Perm(enum.IntFlag):
    """Portable permissions of a mapping. Each codec translates them, polarities included."""

    NONE = 0
    READ = 1
    WRITE = 2
    EXEC = 4
    USER = 8
    GLOBAL = 16

    @classmethod
    def parse(cls, text: str) -> Perm:
        """Parse ``"rwxug"``-style letters (any order, ``-`` ignored)."""
        letters = {"r": cls.READ, "w": cls.WRITE, "x": cls.EXEC, "u": cls.USER, "g": cls.GLOBAL}
        perm = cls.NONE
        for ch in text.lower():
            if ch == "-":
                continue
            if ch not in letters:
                raise ValueError(f"unknown permission letter {ch!r} in {text!r} (use r w x u g)")
            perm |= letters[ch]
        return perm

    def letters(self) -> str:
        """``rwxu``-style text, with ``-`` for a missing permission."""
        out = "".join(
            ch if self & flag else "-"
            for ch, flag in (("r", Perm.READ), ("w", Perm.WRITE), ("x", Perm.EXEC))
        )
        out += "u" if self & Perm.USER else "k"
        out += "g" if self & Perm.GLOBAL else "-"
        return out


#: Everything a table entry can allow: tables only ever take permissions away.
ALL_PERMS = Perm.READ | Perm.WRITE | Perm.EXEC | Perm.USER
#: every Perm value by its int, so hot decoders combine plain ints and look up once
PERMS: tuple[Perm, ...] = tuple(Perm(i) for i in range(32))


class MemType(enum.Enum):
    """Portable memory types, resolved per architecture (x86 PAT, Arm MAIR, RISC-V PBMT)."""

    NORMAL = "normal"  # write-back cacheable
    WRITE_THROUGH = "write-through"
    WRITE_COMBINING = "write-combining"  # x86 WC, Arm Normal non-cacheable, RISC-V NC
    WRITE_PROTECT = "write-protect"  # x86 WP
    UNCACHED_MINUS = "uncached-minus"  # x86 UC-
    UNCACHED = "uncached"  # x86 UC
    DEVICE = "device"  # Arm Device-nGnRE, x86 UC, RISC-V IO
    DEVICE_STRICT = "device-strict"  # Arm Device-nGnRnE, x86 UC, RISC-V IO


class EntryKind(enum.Enum):
    """What a decoded entry is."""

    INVALID = "invalid"
    TABLE = "table"
    LEAF = "leaf"


@dataclass(frozen=True, slots=True)
class Level:
    """One level of a walk.

    Attributes:
        depth: 0 for the leaf table, up to ``levels - 1`` for the root.
        number: the architecture's own number for this level (reported in faults).
        name: the manual's name (PML4, PDPT, PD, PT, L0..L3, VPN[i]).
        shift: the VA bit where this level's index starts.
        bits: the number of index bits (the root may have fewer than the others).
        leaf_size: the size of a leaf at this level, or 0 if no leaf may stand here.
    """

    depth: int
    number: int
    name: str
    shift: int
    bits: int
    leaf_size: int
    #: mask of the index after shifting (derived)
    mask: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask", (1 << self.bits) - 1)

    @property
    def entries(self) -> int:
        """How many entries a table of this level holds."""
        return 1 << self.bits

    @property
    def span(self) -> int:
        """Bytes of VA that one entry of this level covers."""
        return 1 << self.shift

    def index(self, va: int) -> int:
        """This level's index for ``va``."""
        return (va >> self.shift) & ((1 << self.bits) - 1)


@dataclass(frozen=True, slots=True)
class Half:
    """A part of the VA space with its own root register (x86: the one CR3; Arm: TTBR0/TTBR1).

    Attributes:
        root: which root register serves it (index into the roots tuple).
        name: the register's name (``CR3``, ``TTBR0_EL1``, ``satp``).
        levels: root first, leaf table last.
        va_start: the lowest VA of the half (canonical form).
        va_end: one past the highest VA of the half (canonical form; may be 2**64).
        table_align: the alignment the root table needs (PAE: 32, Arm: the root table's size).
    """

    root: int
    name: str
    levels: tuple[Level, ...]
    va_start: int
    va_end: int
    table_align: int

    def contains(self, va: int) -> bool:
        """Whether ``va`` falls in this half."""
        return self.va_start <= va < self.va_end


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded entry.

    Attributes:
        kind: invalid, table pointer or leaf.
        raw: the raw value.
        address: the next table's PA (TABLE) or the leaf's output base PA (LEAF).
        size: the leaf's page size in bytes (LEAF only).
        perm: for a leaf, what it allows; for a table, what it still allows below it.
        memtype: the leaf's memory type (when the format can tell).
        fault: None, or the fault kind this entry raises during a walk.
        reason: why the entry faults (which bit, which rule).
    """

    kind: EntryKind
    raw: int
    address: int = 0
    size: int = 0
    perm: Perm = Perm.NONE
    memtype: MemType | str | None = None
    fault: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Field:
    """One decoded field of an entry for display: the manual's name and its value."""

    name: str
    value: int
    width: int = 1

    def __str__(self) -> str:
        if self.width == 1:
            return self.name if self.value else ""
        return f"{self.name}={self.value:#x}" if self.value > 9 else f"{self.name}={self.value}"


#: What the pointer entries of a walk pass down to the leaf, folded level by level by
#: :meth:`PagingMode.fold_table`: x86 (R/W at every level, U/S at every level, XD at some level,
#: unused); AArch64 (APTable[0], APTable[1], UXNTable, PXNTable, each at some level); RISC-V (G on
#: some pointer, unused, unused, unused).
Acc = tuple[bool, bool, bool, bool]


@dataclass(frozen=True, slots=True)
class Rights:
    """What a translation allows, before the control registers have their say.

    Attributes:
        readable: data reads are allowed by the entry (RISC-V R; always True elsewhere).
        writable: writes are allowed (x86 R/W at every level; Arm AP[2]=0 and APTable[1]=0).
        user: the unprivileged level may access it (x86 U/S at every level; Arm AP[1]=1 and
            APTable[0]=0; RISC-V U).
        xn_user: unprivileged fetches are forbidden (x86 XD; Arm UXN/UXNTable; RISC-V X=0).
        xn_priv: privileged fetches are forbidden (x86 XD; Arm PXN/PXNTable or EL0-writable).
        pkey: the x86 protection key (bits 62:59 of the leaf).
    """

    readable: bool
    writable: bool
    user: bool
    xn_user: bool
    xn_priv: bool
    pkey: int = 0

    def letters(self) -> str:
        """``rwx`` for the privileged side plus ``u`` or ``k``, e.g. ``rw-u``."""
        return (
            ("r" if self.readable else "-")
            + ("w" if self.writable else "-")
            + ("-" if self.xn_priv and self.xn_user else "x")
            + ("u" if self.user else "k")
        )

    def perm(self, global_: bool) -> Perm:
        """The portable :class:`Perm`: EXEC is a fetch at the page's own privilege level."""
        perm = Perm.READ if self.readable else Perm.NONE
        perm |= Perm.WRITE if self.writable else Perm.NONE
        perm |= Perm.USER if self.user else Perm.NONE
        perm |= Perm.NONE if (self.xn_user if self.user else self.xn_priv) else Perm.EXEC
        return perm | (Perm.GLOBAL if global_ else Perm.NONE)


@dataclass(frozen=True, slots=True)
class LeafState:
    """A leaf under the rights its pointers passed down.

    Attributes:
        rights: the combined rights.
        global_: the translation matches every ASID (x86 G with CR4.PGE; Arm nG=0; RISC-V G
            on the leaf or on any pointer above it).
        accessed: the leaf's A (Arm: AF). dirty: its D (Arm: AP[2]=0).
        dbm: an Arm writable-clean entry (AP[2]=1, DBM=1, TCR_EL1.HD=1, no APTable[1]).
    """

    rights: Rights
    global_: bool
    accessed: bool
    dirty: bool
    dbm: bool = False


@dataclass(frozen=True, slots=True)
class ArchFacts:
    """What code outside ``formats/`` may ask about an architecture, as data.

    Consumers (the MMU, the batch and compiled walkers, the kernel, the inspectors, the CLI)
    read these fields instead of testing the mode's class or name, so a new architecture is a
    new ``formats`` module plus its register rules, not a dozen edits elsewhere.

    Attributes:
        family: ``x86``, ``arm`` or ``riscv``: the key for per-architecture modules (register
            rules, QEMU text formats), never to be compared against elsewhere.
        half_select_bit: the VA bit that picks the root register, when one bit does (AArch64:
            bit 55 picks TTBR1_EL1, Arm ARM D8.2.3); None when the halves are sign ranges of one
            root.
        kernel_root: the root register that serves the kernel half by itself (AArch64:
            TTBR1_EL1 = 1), or None when one root table holds both halves (x86 and RISC-V: the
            kernel half is the upper half of the root table's entries).
        needs_bbm: changing a live valid entry's output or size needs break-before-make
            (Arm ARM D8.16.1).
        pcid: the root register can tag translations with a PCID (x86 long mode, SDM §4.10.1).
        protection_keys: leaves carry a protection key in bits 62:59 (x86 long mode, §4.6.2).
        table_accessed: the walker sets A in the paging-structure entries it uses (x86, §4.8).
        va_bits: the width of a VA as printed (32 or 64).
        stage: 1 for a regime's own tables, 2 for a stage 2 (EPT, Arm stage 2, RISC-V G-stage),
            whose "VAs" are guest-physical and whose every access counts as a user access, so
            that user/kernel findings do not apply (AMD NPT is plain long mode: 1).
    """

    family: str
    half_select_bit: int | None = None
    kernel_root: int | None = None
    needs_bbm: bool = False
    pcid: bool = False
    protection_keys: bool = False
    table_accessed: bool = False
    va_bits: int = 64
    stage: int = 1


def np_leaf_by_bit(raws: U64Array, level: Level, bit: int, *, leaf_if_set: bool) -> BoolArray:
    """Which valid entries ``raws`` at ``level`` are leaves, where one bit tells (x86 and EPT
    PS set: Intel SDM vol. 3A §4.5, vol. 3C §29.3; Arm descriptor type bit clear: Arm ARM
    D8.3): every entry of the last level is a leaf, none of a level without leaf sizes."""
    if level.depth == 0:
        return np.ones(raws.shape, dtype=np.bool_)
    if not level.leaf_size:  # a large page or block where none may stand is no leaf
        return np.zeros(raws.shape, dtype=np.bool_)
    return np.asarray(((raws & np.uint64(bit)) != 0) == leaf_if_set, dtype=np.bool_)
