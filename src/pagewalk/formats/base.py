"""What every paging mode is: levels as data, plus a codec between raw entries and meaning.

A paging mode describes, with no I/O and no state, how a virtual address is cut into table indices
(:class:`Level`), which root register serves which part of the address space (:class:`Half`), and
how a raw entry decodes into an :class:`Entry` (invalid, a pointer to the next table, or a leaf
with its output address, size and permissions). One generic walker (:mod:`pagewalk.walk`) and one
builder (:mod:`pagewalk.space`) use these descriptions for every architecture: Intel SDM vol. 3A
ch. 4 (x86), Arm ARM D8 (VMSAv8-64) and the RISC-V privileged spec (Sv32/39/48/57).

Level numbering: ``Level.depth`` counts from the leaf table (0) up to the root (``levels - 1``),
the same way for every mode. ``Level.number`` is the architecture's own number, which is what
faults and the JSON contract report: x86 PT=1 .. PML5=5, AArch64 L0 (root) .. L3, RISC-V i of
VPN[i].
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NewType

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
        global_pages: CR4.PGE gates the G bit (x86, SDM §4.10.2.4).
        protection_keys: leaves carry a protection key in bits 62:59 (x86 long mode, §4.6.2).
        table_accessed: the walker sets A in the paging-structure entries it uses (x86, §4.8).
        va_bits: the width of a VA as printed (32 or 64).
    """

    family: str
    half_select_bit: int | None = None
    kernel_root: int | None = None
    needs_bbm: bool = False
    pcid: bool = False
    global_pages: bool = False
    protection_keys: bool = False
    table_accessed: bool = False
    va_bits: int = 64


@dataclass(frozen=True)
class ModeInfo:
    """Static facts of a mode, for listing and help text."""

    name: str
    title: str
    entry_size: int
    manual: str
    options: dict[str, Any] = field(default_factory=dict)


class PagingMode(ABC):
    """A configured paging mode: the levels, the halves and the codec.

    Subclasses describe one architecture family. An instance carries the control-register
    settings that change the format (x86 CR4.PSE, EFER.NXE, MAXPHYADDR; Arm TCR_EL1 and MAIR;
    RISC-V Svpbmt), so two instances with different settings decode the same raw entry
    differently, exactly as two CPUs would.
    """

    #: the mode's name as the CLI knows it
    name: str
    #: bytes per entry (4 or 8)
    entry_size: int
    #: the widest physical address the format can hold, in bits
    pa_bits: int
    #: how wide a root table's PA may be (the root register's address field)
    root_bits: int
    #: the smallest page size
    page_size: int = 4096
    #: names of the root registers, in the order ``roots`` tuples use
    root_names: tuple[str, ...] = ("root",)
    #: the kind reported for an unmapped entry and for a bad address
    not_present_kind: str = "not-present"
    non_canonical_kind: str = "non-canonical"
    #: the level a fault on a bad address reports (Arm: level 0; others: none)
    non_canonical_level: int | None = None
    #: per root register: the top byte is ignored (Arm TCR_EL1.TBIn); empty where no such option
    tbi: tuple[bool, ...] = ()

    @property
    @abstractmethod
    def halves(self) -> tuple[Half, ...]:
        """The halves of the VA space, each with its levels."""

    @property
    @abstractmethod
    def facts(self) -> ArchFacts:
        """The architecture facts other layers need (see :class:`ArchFacts`)."""

    def half_for(self, va: int) -> Half | None:
        """The half that serves ``va``, or None if ``va`` is not canonical."""
        for half in self.halves:
            if half.contains(va):
                return half
        return None

    @abstractmethod
    def decode(self, raw: int, level: Level) -> Entry:
        """Decode a raw entry read at ``level``."""

    def decode_cached(self, raw: int, level: Level) -> Entry:
        """:meth:`decode`, memoised by (raw value, level): a pure function of the bits.

        Upper-level entries repeat across walks, so scalar walks reuse their decodings. The
        memo is keyed by the raw value, never by memory, so it cannot go stale; it is bounded.
        """
        memo: dict[tuple[int, int], Entry] | None = self.__dict__.get("_decode_memo")
        if memo is None:
            memo = self.__dict__["_decode_memo"] = {}
        key = (raw, id(level))
        entry = memo.get(key)
        if entry is None:
            if len(memo) >= 1 << 16:
                memo.clear()
            entry = memo[key] = self.decode(raw, level)
        return entry

    @abstractmethod
    def fields(self, raw: int, level: Level) -> list[Field]:
        """The entry's fields by their manual names, for display."""

    @abstractmethod
    def encode_table(self, table_pa: int, level: Level, perm: Perm) -> int:
        """A raw entry at ``level`` pointing to a table at ``table_pa``.

        ``perm`` is what the leaves below will need; the parent-flag policy is to allow at least
        that much (x86 sets R/W and U/S, Arm leaves APTable and XNTable clear), so leaves decide.
        """

    @abstractmethod
    def widen_table(self, raw: int, level: Level, perm: Perm) -> int:
        """A table entry changed so that it allows at least ``perm`` (the parent-flag policy)."""

    @abstractmethod
    def encode_leaf(
        self, pa: int, level: Level, perm: Perm, memtype: MemType = MemType.NORMAL
    ) -> int:
        """A raw leaf entry at ``level`` mapping ``pa`` with ``perm`` and ``memtype``."""

    @abstractmethod
    def resize_leaf(self, raw: int, level: Level, new_level: Level, new_pa: int) -> int:
        """The leaf ``raw`` (found at ``level``) re-encoded at ``new_level`` for ``new_pa``.

        Every attribute bit (permissions, memory type, A/D, software bits) is kept; only the
        address and the bits that say "this is a leaf of that size" change. Used to split huge
        pages and to remap.
        """

    @abstractmethod
    def perm_mask(self, level: Level) -> int:
        """The bits of a leaf at ``level`` that ``encode_leaf``'s ``perm`` decides."""

    @abstractmethod
    def memtype_mask(self, level: Level) -> int:
        """The bits of a leaf at ``level`` that ``encode_leaf``'s ``memtype`` decides."""

    @abstractmethod
    def np_is_leaf(self, raws: U64Array, level: Level) -> BoolArray:
        """For valid entries ``raws`` at ``level``: which are leaves (vectorised)."""

    @abstractmethod
    def address_mask(self, level: Level, leaf: bool) -> int:
        """The raw bits that hold a valid address at ``level`` (reserved bits excluded)."""

    @abstractmethod
    def np_address(self, raws: U64Array, level: Level, leaf: bool) -> U64Array:
        """Output (leaf) or next-table (not leaf) addresses of ``raws`` (vectorised)."""

    def effective(self, path: Sequence[Entry], half: Half | None = None) -> Perm:
        """Portable effective permission over a walk's entries (root first).

        The default is the AND of every entry's ``perm``, with GLOBAL taken from the leaf.
        ``half`` is the half the walk went through (it matters where the halves differ, such
        as Arm's TCR_EL1.HPD0/HPD1).
        """
        perm = ALL_PERMS
        for entry in path:
            perm &= entry.perm | Perm.GLOBAL
        if path and path[-1].kind is EntryKind.LEAF:
            perm = (perm & ~Perm.GLOBAL) | (path[-1].perm & Perm.GLOBAL)
        else:
            perm &= ~Perm.GLOBAL
        return perm

    def canonical(self, va: int) -> int:
        """``va`` in canonical form, for modes that sign-extend (identity otherwise)."""
        return va

    def check_virtual(self, va: int) -> Half:
        """The half for ``va``, or raise :class:`NonCanonicalAddressError`."""
        from pagewalk.errors import NonCanonicalAddressError, hx

        half = self.half_for(va)
        if half is None:
            raise NonCanonicalAddressError(
                f"VA {hx(va)} is not canonical in mode {self.name} "
                f"(valid: {', '.join(f'{hx(h.va_start)}-{hx(h.va_end - 1)}' for h in self.halves)})"
            )
        return half

    def check_physical(self, pa: int) -> None:
        """Raise :class:`PhysicalAddressTooWideError` if ``pa`` cannot be encoded."""
        from pagewalk.errors import PhysicalAddressTooWideError, hx

        if pa < 0 or pa >> self.pa_bits:
            raise PhysicalAddressTooWideError(
                f"PA {hx(pa)} is wider than the {self.pa_bits} bits mode {self.name} can encode"
            )

    def _check_pa(self, pa: int, align: int, level: Level, limit_bits: int | None = None) -> None:
        """Raise if ``pa`` is misaligned or wider than ``limit_bits`` (default: the mode)."""
        from pagewalk.errors import MisalignedAddressError, PhysicalAddressTooWideError, hx

        if pa & (align - 1):
            raise MisalignedAddressError(
                f"PA {hx(pa)} is not aligned to {hx(align)} for a {level.name} entry"
            )
        bits = self.pa_bits if limit_bits is None else limit_bits
        if pa < 0 or pa >> bits:
            raise PhysicalAddressTooWideError(
                f"PA {hx(pa)} does not fit the {bits} address bits of a {level.name} entry "
                f"in mode {self.name}"
            )

    def lenient_bits(self, raw: int, level: Level) -> int:
        """Bits of ``raw`` the manual reserves but this mode accepts (as QEMU does); 0 if none."""
        return 0

    def root_fault(self, root_pa: int, half: Half) -> tuple[str, str] | None:
        """A fault the walk raises before it reads any entry (kind, reason), or None."""
        return None

    def root_from_register(self, value: int, half: int = 0) -> int:
        """The root table's PA from a root register value (CR3, TTBRn, satp)."""
        return value & ~(self.page_size - 1)

    def leaf_sizes(self) -> list[int]:
        """Every page size the mode can map, largest first."""
        sizes = {lv.leaf_size for h in self.halves for lv in h.levels if lv.leaf_size}
        return sorted(sizes, reverse=True)

    def registers(self) -> dict[str, int]:
        """The register settings this mode was built from (for saving next to an image)."""
        return {}

    def describe(self) -> str:
        """One line that names the mode and its settings."""
        regs = ", ".join(f"{k}={v:#x}" for k, v in self.registers().items())
        return f"{self.name} ({regs})" if regs else self.name
