"""The MMU's use of the one walker: a TLB-miss walk that sets A/D bits and fills the caches.

The walk itself, and the permission fold over every level, are :func:`pagewalk.walk.descend` and
the mode's :meth:`~pagewalk.formats.base.PagingMode.fold_table` /
:meth:`~pagewalk.formats.base.PagingMode.leaf_state` (Intel SDM vol. 3A §4.6.1, Arm ARM D8.4,
RISC-V privileged spec). This module adds what the CPU does around it: the hook that sets the
accessed flag of every x86 paging-structure entry used (SDM §4.8), the resume point and fill of
the paging-structure cache (§4.10.3), and the leaf's A/D update once an access is allowed
(:func:`mark_leaf`: x86 A and D; AArch64 AF under TCR_EL1.HA and DBM under HD, D8.5; RISC-V A/D
under Svadu). The result is a :class:`Translation`, which is also what a TLB entry holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pagewalk.formats.base import Acc, Level, PagingMode, Rights
from pagewalk.walk import EntryReader, Fault, PathEntry, PointerHook, Resume, TableHook, descend
from pagewalk.walk import start as walk_start

if TYPE_CHECKING:
    from pagewalk.mmu.pwc import PagingStructureCache


class EntryMemory(EntryReader, Protocol):
    """What the MMU needs from physical memory: entry reads and, for A/D bits, writes."""

    def write_entry(self, pa: int, entry_size: int, value: int) -> None: ...


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
    path: tuple[PathEntry, ...]
    reads: int = 0
    stamp: int = 0
    from_pwc: bool = field(default=False, compare=False)

    def pa_of(self, va: int) -> int:
        """The PA of ``va`` inside this page."""
        return self.pa | (va & (self.size - 1))


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
    begun = walk_start(mode, roots, va)
    if isinstance(begun, Fault):
        return begun
    half, resume = begun
    on_pointer: PointerHook | None = None
    if pwc is not None:
        resume = pwc.lookup(half, asid, va) or resume

        def on_pointer(li: int, va: int, below: Resume) -> None:
            pwc.insert(half, asid, li, va, below)

    on_table: TableHook | None = None
    if update and mode.facts.table_accessed:
        esize = mode.entry_size

        def on_table(level: Level, entry_pa: int, raw: int) -> int:
            new = mode.table_accessed(level, raw)
            if new != raw:
                mem.write_entry(entry_pa, esize, new)
            return new

    got = descend(mem, mode, half, va, resume, on_table=on_table, on_pointer=on_pointer)
    if isinstance(got, Fault):
        return got
    entry_pa, raw, base, _span = got.path[-1]
    state = mode.leaf_state(raw, got.acc, pge)
    return Translation(
        base, got.entry.size, got.entry.address, state.rights, got.acc, asid, state.global_,
        state.accessed, state.dirty, state.dbm, got.level.number, entry_pa, raw, got.path,
        got.reads, 0, resume.index > 0,
    )  # fmt: skip


def mark_leaf(mem: EntryMemory, mode: PagingMode, t: Translation, write: bool, svadu: bool) -> None:
    """Set the leaf's A/D state for an allowed access, in memory and in ``t``.

    What changes is the mode's (:meth:`~pagewalk.formats.base.PagingMode.mark_leaf`); under
    RISC-V Svade (``svadu`` False) the caller has already faulted and nothing is written.
    """
    raw = t.leaf_raw
    new = mode.mark_leaf(raw, write, t.dbm, svadu)
    if new == raw:
        return
    mem.write_entry(t.leaf_pa, mode.entry_size, new)
    state = mode.leaf_state(new, t.acc, t.global_)
    t.rights, t.accessed, t.dirty, t.dbm = state.rights, state.accessed, state.dirty, state.dbm
    t.leaf_raw = new
    t.path = (*t.path[:-1], (t.leaf_pa, new, t.path[-1][2], t.path[-1][3]))


__all__ = ["Acc", "EntryMemory", "Rights", "Translation", "mark_leaf", "walk_access"]
