"""The one page walker, for every paging mode.

A walk starts at the root register that serves the address's half, reads one entry per level
(its index taken from the level's VA bits), decodes it with the mode's codec and stops at a leaf,
an invalid entry or an entry that breaks a format rule. It follows the translation processes of
Intel SDM vol. 3A §4.3-4.5, Arm ARM D8.2-D8.3 (``AArch64.S1Walk``) and the RISC-V privileged
spec's "Virtual Address Translation Process". "Not mapped" is a result (a :class:`Walk` with a
:class:`Fault`), not an exception; :meth:`Walk.raise_fault` turns it into a :class:`PageFault`.
A walk has a fixed depth, so tables that point to themselves cannot make it loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pagewalk.errors import PageFault, PhysicalMemoryError, hx
from pagewalk.formats.base import ALL_PERMS, Entry, EntryKind, Half, Level, PagingMode, Perm


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

    def raise_fault(self, access: str = "read") -> None:
        """Raise the walk's fault as a :class:`PageFault` (no-op for a translation)."""
        if self.fault is not None:
            raise PageFault(
                va=self.va,
                kind=self.fault.kind,
                level=self.fault.level,
                reason=self.fault.reason,
                access=access,
                raw_entry=self.fault.raw,
            )

    def to_json(self) -> dict[str, Any]:
        """``{"va", "pa", "page_size", "fault"}`` as the CLI prints it."""
        return {
            "va": self.va,
            "pa": self.pa,
            "page_size": self.page_size,
            "fault": None if self.fault is None else self.fault.to_json(),
        }


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
    half = mode.half_for(va)
    if half is None:
        reason = f"VA {hx(va)} is outside every translation range of {mode.name}"
        fault = Fault(mode.non_canonical_kind, mode.non_canonical_level, reason)
        return Walk(va, None, (), None, None, Perm.NONE, fault)
    table = roots[half.root]
    early = mode.root_fault(table, half)
    if early is not None:
        fault = Fault(early[0], 0, early[1])
        return Walk(va, half, (), None, None, Perm.NONE, fault)
    esize = mode.entry_size
    steps: list[Step] = []
    path: list[Entry] = []
    perm = ALL_PERMS
    for level in half.levels:
        index = (va >> level.shift) & level.mask
        entry_pa = table + index * esize
        try:
            raw = mem.read_entry(entry_pa, esize)
        except PhysicalMemoryError:
            reason = f"{level.name} entry at PA {hx(entry_pa)} is outside RAM"
            fault = Fault("bad-table", level.number, reason)
            return Walk(va, half, tuple(steps), None, None, Perm.NONE, fault)
        entry = mode.decode_cached(raw, level)
        path.append(entry)
        perm = mode.effective(path, half)
        steps.append(Step(level, index, entry_pa, entry, perm))
        if entry.fault is not None:
            fault = Fault(entry.fault, level.number, entry.reason, raw)
            return Walk(va, half, tuple(steps), None, None, Perm.NONE, fault)
        if entry.kind is EntryKind.LEAF:
            pa = entry.address | (va & (entry.size - 1))
            return Walk(va, half, tuple(steps), pa, entry.size, perm, None)
        table = entry.address
    # Unreachable for well-formed modes: the last level always decodes to a leaf or a fault.
    raise AssertionError(f"walk of {hx(va)} ran past the leaf level of {mode.name}")


def translate(
    mem: EntryReader, mode: PagingMode, roots: Sequence[int], va: int
) -> tuple[int | None, int | None, Fault | None]:
    """A walk that keeps only ``(pa, page_size, fault)``: the fast scalar path.

    It reads and decodes exactly what :func:`walk` does, without recording the steps.
    """
    half = mode.half_for(va)
    if half is None:
        return None, None, walk(mem, mode, roots, va).fault
    table = roots[half.root]
    if mode.root_fault(table, half) is not None:
        return None, None, walk(mem, mode, roots, va).fault
    esize = mode.entry_size
    read = mem.read_entry
    decode = mode.decode_cached
    for level in half.levels:
        try:
            raw = read(table + ((va >> level.shift) & level.mask) * esize, esize)
        except PhysicalMemoryError:
            return None, None, walk(mem, mode, roots, va).fault
        entry = decode(raw, level)
        if entry.fault is not None:
            return None, None, Fault(entry.fault, level.number, entry.reason, raw)
        if entry.kind is EntryKind.LEAF:
            return entry.address | (va & (entry.size - 1)), entry.size, None
        table = entry.address
    raise AssertionError(f"walk of {hx(va)} ran past the leaf level of {mode.name}")
