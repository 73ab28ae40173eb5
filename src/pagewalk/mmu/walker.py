"""The hardware page walk behind an access: fold rights down every level and set A/D bits.

:func:`pagewalk.walk.walk` records what the tables say; this walker does what the CPU does with
them on a TLB miss. It combines the rights of every level the way each manual does (Intel SDM
vol. 3A §4.6.1: R/W and U/S are ANDed and XD is ORed over all levels, the protection key comes
from the leaf, bits 62:59; Arm ARM D8.4: APTable, UXNTable and PXNTable restrict everything below
unless TCR_EL1.HPDn disables them, and an EL0-writable page is never privileged-executable;
RISC-V privileged spec: a leaf decides alone, G on a pointer makes everything below global), and
it sets the accessed flag on every x86 paging-structure entry it uses (SDM §4.8). Leaf A/D updates
happen only once the access is allowed (:func:`mark_leaf`): x86 sets A and, on a write, D;
AArch64 sets AF when TCR_EL1.HA=1 and clears AP[2] of a DBM=1 entry on a write when TCR_EL1.HD=1
(Arm ARM D8.5); RISC-V sets A and D under Svadu. The result is a :class:`Translation`, which is
also what a TLB entry holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pagewalk.errors import PhysicalMemoryError, hx
from pagewalk.formats import aarch64 as arm
from pagewalk.formats import riscv as rv
from pagewalk.formats import x86
from pagewalk.formats.aarch64 import AArch64Mode
from pagewalk.formats.base import Entry, EntryKind, Half, Level, PagingMode
from pagewalk.formats.riscv import RiscVMode
from pagewalk.formats.x86 import X86Mode
from pagewalk.walk import EntryReader, Fault

if TYPE_CHECKING:
    from pagewalk.mmu.pwc import PagingStructureCache

#: what a pointer entry passed down: x86 (R/W all, U/S all, XD any); Arm (APTable[0],
#: APTable[1], UXNTable, PXNTable); RISC-V (G on a pointer)
Acc = tuple[bool, bool, bool, bool]
_X86_START: Acc = (True, True, False, False)
_NONE: Acc = (False, False, False, False)
#: where a walk resumes: (level index, table PA, rights so far, path so far)
Hit = tuple[int, int, Acc, tuple[tuple[int, int, int, int], ...]]


class EntryMemory(EntryReader, Protocol):
    """What the MMU needs from physical memory: entry reads and, for A/D bits, writes."""

    def write_entry(self, pa: int, entry_size: int, value: int) -> None: ...


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


@dataclass(slots=True)
class Translation:
    """One page's translation as a walk produced it and a TLB entry caches it.

    Attributes:
        va: the page's first VA; size: its bytes; pa: its first PA.
        rights: the combined rights; acc: what the pointer entries passed down.
        asid: the ASID/PCID the entry is tagged with; global_: it matches every ASID.
        accessed, dirty: the leaf's A (Arm: AF) and D (Arm: AP[2]=0) as cached.
        dbm: an Arm writable-clean entry (AP[2]=1, DBM=1, TCR_EL1.HD=1).
        level: the leaf's level number; leaf_pa: the leaf entry's PA; leaf_raw: its value.
        path: ``(entry_pa, raw, va_base, span)`` of every entry used, root first.
        reads: memory reads the walk made; stamp: when it was filled (change sequence).
    """

    va: int
    size: int
    pa: int
    rights: Rights
    acc: Acc
    asid: int
    global_: bool
    accessed: bool
    dirty: bool
    dbm: bool
    level: int
    leaf_pa: int
    leaf_raw: int
    path: tuple[tuple[int, int, int, int], ...]
    reads: int = 0
    stamp: int = 0
    from_pwc: bool = field(default=False, compare=False)

    def pa_of(self, va: int) -> int:
        """The PA of ``va`` inside this page."""
        return self.pa | (va & (self.size - 1))


def arch_of(mode: PagingMode) -> str:
    """``x86``, ``arm`` or ``riscv``."""
    if isinstance(mode, X86Mode):
        return "x86"
    if isinstance(mode, AArch64Mode):
        return "arm"
    if isinstance(mode, RiscVMode):
        return "riscv"
    raise TypeError(f"no MMU model for mode {mode.name}")


def fold_table(mode: PagingMode, half: Half, depth: int, raw: int, acc: Acc) -> Acc:
    """Pass a pointer entry's restrictions down (SDM §4.6.1, Arm ARM D8.4.2, RISC-V G)."""
    if isinstance(mode, X86Mode):
        if mode.name == "pae" and depth == 2:
            return acc  # PAE PDPTEs carry no R/W, U/S or XD
        return (
            acc[0] and bool(raw & x86.RW),
            acc[1] and bool(raw & x86.US),
            acc[2] or bool(mode.nxe and raw & x86.XD),
            False,
        )
    if isinstance(mode, AArch64Mode):
        if mode.hpd[half.root]:
            return acc
        return (
            acc[0] or bool(raw & arm.AP_TABLE0),
            acc[1] or bool(raw & arm.AP_TABLE1),
            acc[2] or bool(raw & arm.UXN_TABLE),
            acc[3] or bool(raw & arm.PXN_TABLE),
        )
    return (acc[0] or bool(raw & rv.G), False, False, False)


def leaf_state(
    mode: PagingMode, raw: int, acc: Acc, pge: bool
) -> tuple[Rights, bool, bool, bool, bool]:
    """``(rights, global, accessed, dirty, dbm)`` of a leaf under ``acc``."""
    if isinstance(mode, X86Mode):
        xd = acc[2] or bool(mode.nxe and raw & x86.XD)
        key = (raw >> 59) & 0xF if mode.name in ("x86_64", "la57") else 0
        writable, user = acc[0] and bool(raw & x86.RW), acc[1] and bool(raw & x86.US)
        rights = Rights(True, writable, user, xd, xd, key)
        glob = pge and bool(raw & x86.G)
        return rights, glob, bool(raw & x86.A), bool(raw & x86.D), False
    if isinstance(mode, AArch64Mode):
        user = bool(raw & arm.AP1) and not acc[0]
        writable = not raw & arm.AP2 and not acc[1]
        xn_user = bool(raw & arm.UXN) or acc[2]
        xn_priv = bool(raw & arm.PXN) or acc[3] or (user and writable)
        dbm = bool(mode.hd and raw & arm.DBM and raw & arm.AP2) and not acc[1]
        rights = Rights(True, writable, user, xn_user, xn_priv)
        return rights, not raw & arm.NG, bool(raw & arm.AF), not raw & arm.AP2, dbm
    no_x = not raw & rv.X
    rights = Rights(bool(raw & rv.R), bool(raw & rv.W), bool(raw & rv.U), no_x, no_x)
    return rights, acc[0] or bool(raw & rv.G), bool(raw & rv.A), bool(raw & rv.D), False


def walk_access(
    mem: EntryMemory,
    mode: PagingMode,
    roots: Sequence[int],
    va: int,
    *,
    asid: int = 0,
    pge: bool = True,
    update: bool = True,
    pwc: PagingStructureCache | None = None,
) -> Translation | Fault:
    """Walk ``va`` as the MMU does on a TLB miss.

    Args:
        mem: physical memory (written only to set x86 accessed flags when ``update``).
        mode, roots: the paging mode and its root table PAs.
        asid: the ASID/PCID to tag the translation (and paging-structure cache entries) with.
        pge: x86 CR4.PGE (a G=1 leaf is global only with it).
        update: set the accessed flag of every x86 pointer entry used.
        pwc: a paging-structure cache to start from and to fill, or None.

    Returns:
        The translation, or the walk's :class:`~pagewalk.walk.Fault`.
    """
    half = mode.half_for(va)
    if half is None:
        reason = f"VA {hx(va)} is outside every translation range of {mode.name}"
        return Fault(mode.non_canonical_kind, mode.non_canonical_level, reason)
    table = roots[half.root]
    early = mode.root_fault(table, half)
    if early is not None:
        return Fault(early[0], 0, early[1])
    acc: Acc = _X86_START if isinstance(mode, X86Mode) else _NONE
    start = 0
    path: tuple[tuple[int, int, int, int], ...] = ()
    if pwc is not None:
        hit = pwc.lookup(half, asid, va)
        if hit is not None:
            start, table, acc, path = hit
    return _descend(mem, mode, half, va, (start, table, acc, path), asid, pge, update, pwc)


def _descend(
    mem: EntryMemory,
    mode: PagingMode,
    half: Half,
    va: int,
    resume: Hit,
    asid: int,
    pge: bool,
    update: bool,
    pwc: PagingStructureCache | None,
) -> Translation | Fault:
    start, table, acc, path = resume
    esize, levels = mode.entry_size, half.levels
    for reads, li in enumerate(range(start, len(levels)), 1):
        level = levels[li]
        entry_pa = table + ((va >> level.shift) & level.mask) * esize
        try:
            raw = mem.read_entry(entry_pa, esize)
        except PhysicalMemoryError:
            return Fault("bad-table", level.number, f"{level.name} entry at {hx(entry_pa)} not RAM")
        entry = mode.decode(raw, level)
        if entry.fault is not None:
            return Fault(entry.fault, level.number, entry.reason, raw)
        base = va & ~(level.span - 1)
        if entry.kind is EntryKind.LEAF:
            path += ((entry_pa, raw, base, level.span),)
            return _translation(mode, entry, level, acc, asid, pge, path, reads, start > 0)
        if update and _sets_table_a(mode, level, raw):
            raw |= x86.A
            mem.write_entry(entry_pa, esize, raw)
        path += ((entry_pa, raw, base, level.span),)
        acc = fold_table(mode, half, level.depth, raw, acc)
        table = entry.address
        if pwc is not None:
            pwc.insert(half, asid, li, va, table, acc, path)
    raise AssertionError(f"walk of {hx(va)} ran past the leaf level of {mode.name}")


def _sets_table_a(mode: PagingMode, level: Level, raw: int) -> bool:
    """Whether x86 sets A in this pointer entry now (PAE PDPTEs have no A bit)."""
    if not isinstance(mode, X86Mode) or raw & x86.A:
        return False
    return not (mode.name == "pae" and level.depth == 2)


def _translation(
    mode: PagingMode,
    entry: Entry,
    level: Level,
    acc: Acc,
    asid: int,
    pge: bool,
    path: tuple[tuple[int, int, int, int], ...],
    reads: int,
    from_pwc: bool,
) -> Translation:
    entry_pa, raw, base, _span = path[-1]
    rights, glob, accessed, dirty, dbm = leaf_state(mode, raw, acc, pge)
    return Translation(
        base, entry.size, entry.address, rights, acc, asid, glob, accessed, dirty, dbm,
        level.number, entry_pa, raw, path, reads, 0, from_pwc,
    )  # fmt: skip


def mark_leaf(mem: EntryMemory, mode: PagingMode, t: Translation, write: bool, svadu: bool) -> None:
    """Set the leaf's A/D state for an allowed access, in memory and in ``t``.

    x86: A, and D on a write (SDM §4.8). AArch64: AF when TCR_EL1.HA=1; a write through a
    writable-clean DBM entry clears AP[2] when TCR_EL1.HD=1 (Arm ARM D8.5). RISC-V: A, and D on a
    store, under Svadu only (``svadu``); under Svade the caller has already faulted.
    """
    raw = t.leaf_raw
    if isinstance(mode, X86Mode):
        new = raw | x86.A | (x86.D if write else 0)
    elif isinstance(mode, AArch64Mode):
        new = raw | (arm.AF if mode.ha else 0)
        if write and t.dbm:
            new &= ~arm.AP2
    else:
        new = raw | (rv.A | (rv.D if write else 0) if svadu else 0)
    if new == raw:
        return
    mem.write_entry(t.leaf_pa, mode.entry_size, new)
    rights, _glob, t.accessed, t.dirty, t.dbm = leaf_state(mode, new, t.acc, t.global_)
    t.rights, t.leaf_raw = rights, new
    t.path = (*t.path[:-1], (t.leaf_pa, new, t.path[-1][2], t.path[-1][3]))
