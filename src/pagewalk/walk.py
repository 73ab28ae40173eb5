"""The one page walker, for every paging mode: what the tables say, and what the CPU does.

A walk starts at the root register that serves the address's half, reads one entry per level
(its index taken from the level's VA bits), decodes it with the mode's codec, folds each pointer
entry's restrictions into what it passes down (:meth:`PagingMode.fold_table`) and stops at a
leaf, an invalid entry or an entry that breaks a format rule. It follows the translation
processes of Intel SDM vol. 3A §4.3-4.6 and §4.8, Arm ARM D8.2-D8.4 (``AArch64.S1Walk``) and the
RISC-V privileged spec's "Virtual Address Translation Process".

:func:`descend` is the loop every caller shares: :func:`walk` records each step for people, and
the MMU (:mod:`pagewalk.mmu.walker`) passes a hook
that sets the x86 accessed flag in the pointer entries it uses (SDM §4.8) and a resume point
from its paging-structure cache (SDM §4.10.3), the shape of QEMU's ``get_physical_address`` and
Linux's ``walk_page_range`` with its ``mm_walk_ops``. "Not mapped" is a result (a
:class:`Fault`), not an exception. A walk has a fixed depth, so tables that point to themselves
cannot make it loop. :func:`translate`, the hot scalar path, is the same loop without the fold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pagewalk.errors import PhysicalMemoryError, hx
from pagewalk.formats.base import Acc, Entry, EntryKind, Half, Level, PagingMode, Perm


class EntryReader(Protocol):
    """What the walker needs from physical memory."""

    def read_entry(self, pa: int, entry_size: int) -> int: ...


@dataclass(frozen=True, slots=True)
class Step:
    """One level of a walk.

    Attributes:
        level: the level read.
        index: the index into that level's table.
        entry_pa: the physical address of the entry.
        entry: the decoded entry (``entry.raw`` is the raw value).
        perm: the effective permission over the walk so far.
    """

    level: Level
    index: int
    entry_pa: int
    entry: Entry
    perm: Perm

    @property
    def raw(self) -> int:
        """The raw entry."""
        return self.entry.raw


@dataclass(frozen=True, slots=True)
class Fault:
    """Why a walk stopped without a translation.

    Attributes:
        kind: the JSON contract's fault kind (``not-present``, ``reserved``, ``non-canonical``,
            ``translation``, ``access-flag``, ``address-size``, ``page-fault``, or
            ``bad-table`` when an entry lies outside RAM, which no CPU defines).
        level: the architecture's number for the level, or None.
        reason: which bit or rule.
        raw: the raw entry, if one was read.
    """

    kind: str
    level: int | None
    reason: str
    raw: int | None = None

    def to_json(self) -> dict[str, Any]:
        """``{"kind": str, "level": int | None}`` as the CLI prints it."""
        return {"kind": self.kind, "level": self.level}


@dataclass(frozen=True, slots=True)
class Walk:
    """The record of one walk.

    Attributes:
        va: the virtual address walked.
        half: the half (root register) that served it, or None for a bad address.
        steps: every level read, root first.
        pa: the physical address, or None on a fault.
        page_size: the leaf's size, or None on a fault.
        perm: the effective permission of the translation (NONE on a fault).
        fault: why there is no translation, or None.
    """

    va: int
    half: Half | None
    steps: tuple[Step, ...]
    pa: int | None
    page_size: int | None
    perm: Perm
    fault: Fault | None

    @property
    def ok(self) -> bool:
        """Whether the walk found a translation."""
        return self.fault is None

    @property
    def leaf(self) -> Entry | None:
        """The leaf entry, when the walk reached one."""
        if self.steps and self.steps[-1].entry.kind is EntryKind.LEAF:
            return self.steps[-1].entry
        return None

    @property
    def leaf_entry_pa(self) -> int | None:
        """The physical address of the leaf entry (seL4's "kernel-physical address of a leaf")."""
        return self.steps[-1].entry_pa if self.leaf is not None else None

    def to_json(self) -> dict[str, Any]:
        """``{"va", "pa", "page_size", "fault"}`` as the CLI prints it."""
        return {
            "va": self.va,
            "pa": self.pa,
            "page_size": self.page_size,
            "fault": None if self.fault is None else self.fault.to_json(),
        }


_TABLE, _LEAF, _INVALID = EntryKind.TABLE, EntryKind.LEAF, EntryKind.INVALID

#: one entry a walk used: (entry PA, raw value as the walk left it, first VA it covers, span)
PathEntry = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a walk starts: the root, or below it when a paging-structure cache hit says so.

    Attributes:
        index: the index into ``half.levels`` of the next level to read.
        table: that level's table PA.
        acc: what the pointers above passed down.
        path: the entries above, root first.
    """

    index: int
    table: int
    acc: Acc
    path: tuple[PathEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Reached:
    """A leaf a descent reached (``path[-1]`` is the leaf; ``reads`` counts entry reads)."""

    entry: Entry
    level: Level
    acc: Acc
    path: tuple[PathEntry, ...]
    reads: int


#: called for each valid pointer entry: (level, entry PA, raw) -> raw as the walk leaves it
TableHook = Callable[[Level, int, int], int]
#: called after each pointer is folded: (level index, VA, where the walk resumes below it)
PointerHook = Callable[[int, int, Resume], None]


def start(mode: PagingMode, roots: Sequence[int], va: int) -> tuple[Half, Resume] | Fault:
    """The half that serves ``va`` and the root to start from, or the fault raised before any
    entry is read (a non-canonical VA, an unusable root)."""
    half = mode.half_for(va)
    if half is None:
        reason = f"VA {hx(va)} is outside every translation range of {mode.name}"
        return Fault(mode.non_canonical_kind, mode.non_canonical_level, reason)
    table = roots[half.root]
    early = mode.root_fault(table, half)
    if early is not None:
        return Fault(early[0], 0, early[1])
    return half, Resume(0, table, mode.walk_start())


def descend(
    mem: EntryReader,
    mode: PagingMode,
    half: Half,
    va: int,
    resume: Resume,
    *,
    on_table: TableHook | None = None,
    on_pointer: PointerHook | None = None,
    steps: list[Step] | None = None,
) -> Reached | Fault:
    """The walk loop every caller shares: read, decode, fold, until a leaf or a fault.

    Args:
        mem: physical memory to read entries from.
        mode, half, va: the mode, the half serving ``va``, and the address.
        resume: where to start (:func:`start`, or a paging-structure cache hit).
        on_table: sees every valid pointer entry; what it returns is the raw value the walk
            records (the MMU writes the accessed flag here).
        on_pointer: sees where the walk would resume below each pointer (the MMU fills its
            paging-structure cache).
        steps: when given, one :class:`Step` per entry read is appended.
    """
    esize, levels = mode.entry_size, half.levels
    table, acc, path = resume.table, resume.acc, resume.path
    read, decode, fold = mem.read_entry, mode.decode_cached, mode.fold_table
    for reads, li in enumerate(range(resume.index, len(levels)), 1):
        level = levels[li]
        index = (va >> level.shift) & level.mask
        entry_pa = table + index * esize
        try:
            raw = read(entry_pa, esize)
        except PhysicalMemoryError:
            reason = f"{level.name} entry at PA {hx(entry_pa)} is outside RAM"
            return Fault("bad-table", level.number, reason)
        entry = decode(raw, level)
        kind = entry.kind
        if kind is _TABLE and entry.fault is None:
            if on_table is not None:
                raw = on_table(level, entry_pa, raw)
            acc = fold(half, level, raw, acc)
        if steps is not None:
            steps.append(Step(level, index, entry_pa, entry, _step_perm(mode, entry, acc)))
        if entry.fault is not None:
            return Fault(entry.fault, level.number, entry.reason, raw)
        span = 1 << level.shift
        path += ((entry_pa, raw, va & -span, span),)
        if kind is _LEAF:
            return Reached(entry, level, acc, path, reads)
        table = entry.address
        if on_pointer is not None:
            on_pointer(li, va, Resume(li + 1, table, acc, path))
    # Unreachable for well-formed modes: the last level always decodes to a leaf or a fault.
    raise AssertionError(f"walk of {hx(va)} ran past the leaf level of {mode.name}")


def _step_perm(mode: PagingMode, entry: Entry, acc: Acc) -> Perm:
    """The permission so far at one step (NONE at an invalid entry)."""
    if entry.kind is _INVALID:
        return Perm.NONE
    if entry.kind is _LEAF:
        state = mode.leaf_state(entry.raw, acc)
        return state.rights.perm(state.global_)
    return mode.table_perm(acc)


def walk(mem: EntryReader, mode: PagingMode, roots: Sequence[int], va: int) -> Walk:
    """Walk ``va`` through the tables rooted at ``roots`` (one PA per root register).

    Args:
        mem: physical memory to read entries from.
        mode: the configured paging mode.
        roots: root table PAs, indexed like ``mode.root_names``.
        va: the virtual address.

    Returns:
        The full record; a fault is part of the result.
    """
    begun = start(mode, roots, va)
    if isinstance(begun, Fault):
        half = mode.half_for(va)
        return Walk(va, half, (), None, None, Perm.NONE, begun)
    half, resume = begun
    steps: list[Step] = []
    got = descend(mem, mode, half, va, resume, steps=steps)
    if isinstance(got, Fault):
        return Walk(va, half, tuple(steps), None, None, Perm.NONE, got)
    pa = got.entry.address | (va & (got.entry.size - 1))
    return Walk(va, half, tuple(steps), pa, got.entry.size, steps[-1].perm, None)


def translate(
    mem: EntryReader, mode: PagingMode, roots: Sequence[int], va: int
) -> tuple[int | None, int | None, Fault | None]:
    """A walk that keeps only ``(pa, page_size, fault)``: the fast scalar path.

    It is :func:`descend` without the permission fold, the path or any hook, written out because
    it is the hot path of scalar lookups (about 1.6x faster than calling :func:`descend`); a
    fault is re-walked by :func:`walk` for its record. ``tests/mmu/test_one_walker.py`` checks it
    against the other views on damaged tables.
    """
    half = mode.half_for(va)
    if half is None or mode.root_fault(roots[half.root], half) is not None:
        return None, None, walk(mem, mode, roots, va).fault
    table, esize = roots[half.root], mode.entry_size
    read, decode = mem.read_entry, mode.decode_cached
    for level in half.levels:
        try:
            raw = read(table + ((va >> level.shift) & level.mask) * esize, esize)
        except PhysicalMemoryError:
            return None, None, walk(mem, mode, roots, va).fault
        entry = decode(raw, level)
        if entry.fault is not None:
            return None, None, Fault(entry.fault, level.number, entry.reason, raw)
        if entry.kind is _LEAF:
            return entry.address | (va & (entry.size - 1)), entry.size, None
        table = entry.address
    raise AssertionError(f"walk of {hx(va)} ran past the leaf level of {mode.name}")
