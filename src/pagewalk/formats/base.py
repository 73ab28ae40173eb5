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

from abc import ABC, abstractmethod
from collections.abc import Sequence

from pagewalk.formats.model import (
    ALL_PERMS,
    PERMS,
    Acc,
    ArchFacts,
    BoolArray,
    Entry,
    EntryKind,
    Field,
    GiB,
    Half,
    KiB,
    LeafState,
    Level,
    MemType,
    MiB,
    Perm,
    PhysAddr,
    Rights,
    TiB,
    U64Array,
    VirtAddr,
)


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
    #: an entry is valid (present) when any of these bits is set: bit 0 (x86 P, Arm valid,
    #: RISC-V V) but for EPT, R|W|X (and UX under MBEC; SDM vol. 3C §29.3.2). Range operations,
    #: enumeration and the batch walkers skip entries with none of them set; ``decode`` is the
    #: rule, and agrees (below 2^32, so the compiled walker can hold it)
    present_mask: int = 1

    @property
    @abstractmethod
    def halves(self) -> tuple[Half, ...]:
        """The halves of the VA space, each with its levels."""

    @property
    def facts(self) -> ArchFacts:
        """The architecture facts other layers need (see :class:`ArchFacts`), computed once."""
        facts: ArchFacts | None = self.__dict__.get("_facts")
        if facts is None:
            facts = self.__dict__["_facts"] = self.arch_facts()
        return facts

    @abstractmethod
    def arch_facts(self) -> ArchFacts:
        """This mode's :class:`ArchFacts` (a pure function of its settings)."""

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

    # -------------------------------------------------- the permission model (one fold)
    def walk_start(self) -> Acc:
        """What a walk starts with before the root's entry is folded in."""
        return (False, False, False, False)

    @abstractmethod
    def fold_table(self, half: Half, level: Level, raw: int, acc: Acc) -> Acc:
        """Fold one valid pointer entry read at ``level`` into what is passed down."""

    @abstractmethod
    def leaf_state(self, raw: int, acc: Acc, pge: bool = True) -> LeafState:
        """A valid leaf's rights and A/D state under ``acc`` (``pge``: x86 CR4.PGE)."""

    @abstractmethod
    def table_perm(self, acc: Acc) -> Perm:
        """The most any leaf below pointers that passed down ``acc`` may allow (no GLOBAL)."""

    def table_accessed(self, level: Level, raw: int) -> int:
        """``raw`` as the walker leaves a pointer entry it used (x86 sets A, SDM §4.8)."""
        return raw

    def mark_leaf(self, raw: int, write: bool, dbm: bool, svadu: bool) -> int:
        """``raw`` after an allowed access sets the leaf's A/D state (a no-op by default)."""
        return raw

    def effective(self, path: Sequence[Entry], half: Half | None = None) -> Perm:
        """Portable effective permission over a walk's entries (root first).

        The same fold the walker and the MMU use (:meth:`fold_table`, :meth:`leaf_state`), so
        there is one permission model. ``half`` is the half the walk went through (it matters
        where the halves differ, such as Arm's TCR_EL1.HPD0/HPD1); without it the first half's
        levels and settings apply.
        """
        levels = (half or self.halves[0]).levels
        acc = self.walk_start()
        for entry, level in zip(path, levels, strict=False):
            if entry.kind is EntryKind.TABLE:
                acc = self.fold_table(half or self.halves[0], level, entry.raw, acc)
        if path and path[-1].kind is EntryKind.LEAF:
            state = self.leaf_state(path[-1].raw, acc)
            return state.rights.perm(state.global_)
        return self.table_perm(acc)

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


__all__ = [
    "ALL_PERMS",
    "PERMS",
    "Acc",
    "ArchFacts",
    "BoolArray",
    "Entry",
    "EntryKind",
    "Field",
    "GiB",
    "Half",
    "KiB",
    "LeafState",
    "Level",
    "MemType",
    "MiB",
    "PagingMode",
    "Perm",
    "PhysAddr",
    "Rights",
    "TiB",
    "U64Array",
    "VirtAddr",
]
