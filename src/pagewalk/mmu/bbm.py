"""The AArch64 break-before-make checker: live entries must go invalid, then TLBI, then change.

Arm ARM D8.13 (TLB maintenance; "break-before-make"): while an entry may be held in a TLB or walk
cache, changing its output address or its block size (a block split into a table, tables merged
into a block) directly from one valid value to another can leave conflicting TLB entries and is
CONSTRAINED UNPREDICTABLE. Software must first write an invalid entry, then invalidate it with a
TLBI for the VA (and DSB), and only then write the new entry.

There is no hook on memory writes, so the checker works by snapshot: every entry a walk used to
fill the TLB (pointer entries and the leaf) is *watched* with the value it had. After each change
an :class:`~pagewalk.space.AddressSpace` announces (``space.listeners``), every watched entry is
read again:

- still the same: nothing to say;
- now invalid: the *break* happened; the entry waits for a TLBI;
- valid with another output address, leaf/table or size changed, or (a leaf) another memory
  type (D8.16.1 lists cacheability and shareability among the changes that need the break): a
  violation, worded to say whether it skipped the break or the TLBI;
- only the permissions or A/D state changed: allowed without break-before-make.

A TLBI (or any TLB invalidation, :meth:`~pagewalk.mmu.tlb.TLB.drop`) that covers a watched entry's
VA span, ASID and kind (VALE1 leaves pointer entries cached) stops watching it: after the TLBI the
old value can no longer be cached. Writes inside one operation are seen together, so an operation
that writes invalid and then valid between two notifications looks like one direct change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pagewalk.errors import hx
from pagewalk.flush import Flush
from pagewalk.formats.base import Entry, EntryKind, Level
from pagewalk.mmu.view import MMUView
from pagewalk.mmu.walker import Translation


@dataclass
class _Watch:
    entry_pa: int
    raw: int  # the last valid value
    level: Level
    va: int
    span: int
    asid: int
    global_: bool
    leaf: bool
    broken: bool = False


@dataclass(frozen=True)
class BBMViolation:
    """One change of a live entry that skipped break-before-make.

    Attributes:
        entry_pa: the entry's PA; level: its level number; va, span: the VAs it translates.
        old_raw, new_raw: the values before and after.
        what: ``output address`` or ``block size``.
        skipped: ``break`` (valid to valid) or ``TLBI`` (invalid then valid, no TLBI between).
        operation: the AddressSpace operation that made the change.
        message: the sentence for people.
    """

    entry_pa: int
    level: int
    va: int
    span: int
    old_raw: int
    new_raw: int
    what: str
    skipped: str
    operation: str
    message: str


class BreakBeforeMake:
    """Watches the entries behind live TLB entries and reports break-before-make violations.

    Args:
        mmu: the (AArch64) MMU whose fills and invalidations are followed.
        limit: the most entries watched at once (the oldest are forgotten first).
    """

    def __init__(self, mmu: MMUView, limit: int = 1 << 16) -> None:
        self.mmu = mmu
        self.limit = limit
        self.watched: dict[int, _Watch] = {}
        self.violations: list[BBMViolation] = []
        mmu.tlb.invalidate_hooks.append(self._on_invalidate)

    def observe(self, t: Translation) -> None:
        """Watch every entry the walk behind ``t`` used."""
        half = self.mmu.mode.half_for(t.va)
        if half is None:
            return
        last = len(t.path) - 1
        for i, (entry_pa, raw, base, span) in enumerate(t.path):
            if entry_pa in self.watched and not self.watched[entry_pa].broken:
                continue
            w = _Watch(entry_pa, raw, half.levels[i], base, span, t.asid, t.global_, i == last)
            self.watched[entry_pa] = w
        while len(self.watched) > self.limit:
            del self.watched[next(iter(self.watched))]

    def on_change(self, space: Any, flush: Flush) -> None:
        """``space.listeners`` callback: re-read every watched entry."""
        mode, mem = self.mmu.mode, self.mmu.mem
        for w in list(self.watched.values()):
            raw = mem.read_entry(w.entry_pa, mode.entry_size)
            if raw == w.raw:
                continue
            new = mode.decode(raw, w.level)
            if new.kind is EntryKind.INVALID:
                self._break(w)
                continue
            what = _conflict(mode.decode(w.raw, w.level), new)
            if what is not None:
                self._report(w, raw, what, flush.operation)
            w.raw, w.broken = raw, False

    def _break(self, w: _Watch) -> None:
        """Mark ``w`` broken, and every watched entry below it: they are unreachable now."""
        w.broken = True
        if w.leaf:
            return
        for other in self.watched.values():
            inside = w.va <= other.va and other.va + other.span <= w.va + w.span
            if inside and other.level.depth < w.level.depth:
                other.broken = True

    def _report(self, w: _Watch, raw: int, what: str, operation: str) -> None:
        skipped = "TLBI" if w.broken else "break"
        how = (
            "went invalid but was made valid again before a TLBI for its VA"
            if w.broken
            else "changed directly from one valid value to another"
        )
        message = (
            f"break-before-make violated: the L{w.level.number} entry at PA {hx(w.entry_pa)} "
            f"(VA {hx(w.va)}+{hx(w.span)}) changed its {what} ({hx(w.raw)} -> {hx(raw)}) while "
            f"live: it {how}, in operation {operation}; write an invalid entry, TLBI VAE1IS for "
            "the VA, then the new entry"
        )
        self.violations.append(
            BBMViolation(
                w.entry_pa,
                w.level.number,
                w.va,
                w.span,
                w.raw,
                raw,
                what,
                skipped,
                operation,
                message,
            )
        )

    def _on_invalidate(
        self, lo: int | None, hi: int | None, asid: int | None, globals_: bool, walk_cache: bool
    ) -> None:
        for pa, w in list(self.watched.items()):
            if lo is not None and hi is not None and not (w.va < hi and lo < w.va + w.span):
                continue
            if not w.leaf:
                hit = walk_cache and (asid is None or w.asid == asid)
            elif w.global_:
                hit = globals_
            else:
                hit = asid is None or w.asid == asid
            if hit:
                del self.watched[pa]


def _conflict(old: Entry, new: Entry) -> str | None:
    """What a direct change from ``old`` to ``new`` breaks (None if only permissions or the
    access/dirty state changed). Arm ARM D8.16.1 also requires the break for a change of memory
    type (cacheability, shareability), which a leaf's ``memtype`` names."""
    if old.kind is not new.kind or old.size != new.size:
        return "block size"
    if old.address != new.address:
        return "output address"
    if old.kind is EntryKind.LEAF and old.memtype != new.memtype:
        return "memory type"
    return None
