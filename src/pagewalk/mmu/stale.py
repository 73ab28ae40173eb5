"""The stale-TLB detector: every TLB hit is checked against a fresh walk, and a mismatch is named.

Hardware keeps using a cached translation after the tables change until software invalidates it
(Intel SDM vol. 3A §4.10.4, "Invalidation of TLBs and Paging-Structure Caches"; Arm ARM D8.13;
RISC-V privileged spec, SFENCE.VMA). A kernel that forgets the invalidation works by accident
until the stale entry is used. In checking mode the MMU walks the tables again on every hit and
hands both answers here. The detector also listens to each address space's changes
(``space.listeners``) and to every :class:`~pagewalk.flush.Flush` applied to the TLB, so it can
say which change made the entry stale and whether its flush was ever applied.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Any

from pagewalk.errors import PageFault, PagingError, hx
from pagewalk.flush import Flush
from pagewalk.mmu.view import MMUView
from pagewalk.mmu.walker import Translation


@dataclass(frozen=True)
class StaleUse:
    """One use of a stale translation.

    Attributes:
        va: the address accessed; asid: the ASID/PCID of the access.
        used_pa, used_rights: what the TLB entry said (``used_pa`` None: a walk through a stale
            paging-structure cache faulted, and ``used_rights`` says how).
        now_pa, now_rights: what the tables say now (None if they do not map ``va``).
        now_fault: the fault a fresh walk gives, if any.
        operation: the last change to ``va`` after the entry was filled, or None.
        flushed: whether that change's flush was applied to this TLB (None: no change seen).
        message: the sentence for people.
    """

    va: int
    asid: int
    used_pa: int | None
    used_rights: str
    now_pa: int | None
    now_rights: str | None
    now_fault: str | None
    operation: str | None
    flushed: bool | None
    message: str


class StaleTranslationError(PagingError):
    """Raised by a checking MMU with ``raise_on_stale``; ``report`` is the :class:`StaleUse`."""

    def __init__(self, report: StaleUse) -> None:
        super().__init__(report.message)
        self.report = report


@dataclass
class _Change:
    seq: int
    flush: Flush
    space_id: int
    applied: bool = False


class StaleDetector:
    """Compares TLB hits with fresh walks and explains the differences.

    Args:
        mmu: the MMU whose hits are checked.
        raise_on_stale: raise :class:`StaleTranslationError` as well as recording the report.
        history: how many recent changes to remember.
    """

    def __init__(self, mmu: MMUView, raise_on_stale: bool = False, history: int = 4096) -> None:
        self.mmu = mmu
        self.raise_on_stale = raise_on_stale
        self.seq = 0
        self.changes: deque[_Change] = deque(maxlen=history)
        self.reports: list[StaleUse] = []
        mmu.tlb.flush_hooks.append(self._on_flush)

    def on_change(self, space: Any, flush: Flush) -> None:
        """``space.listeners`` callback: remember the change and its flush."""
        self.seq += 1
        self.changes.append(_Change(self.seq, flush, int(space.id)))

    def _on_flush(self, flush: Flush) -> None:
        for change in reversed(self.changes):
            if change.flush is flush:
                change.applied = True
                return

    def check_hit(self, t: Translation, va: int, via_pwc: bool = False) -> StaleUse | None:
        """Compare ``t`` with a fresh walk of ``va``; report a difference.

        Args:
            t: a TLB entry that hit, or (``via_pwc``) a walk that started in the
                paging-structure cache.
        """
        fresh = self.mmu.walk(va)
        same = isinstance(fresh, Translation) and fresh.pa_of(va) == t.pa_of(va)
        if same and isinstance(fresh, Translation) and fresh.rights == t.rights:
            return None
        used = (t.pa_of(va), t.rights.letters())
        return self._report(va, t.asid, t.global_, t.stamp, used, fresh, via_pwc)

    def check_walk_fault(self, va: int, fault: PageFault) -> StaleUse | None:
        """A walk through the paging-structure cache faulted: report it if a fresh walk does not."""
        fresh = self.mmu.walk(va)
        if not isinstance(fresh, Translation):
            return None
        return self._report(va, self.mmu.asid, False, 0, (None, _fault_text(fault)), fresh, True)

    def _report(
        self,
        va: int,
        asid: int,
        global_: bool,
        stamp: int,
        used: tuple[int | None, str],
        fresh: Translation | PageFault,
        via_pwc: bool,
    ) -> StaleUse:
        if isinstance(fresh, Translation):
            now_pa, now_rights, now_fault = fresh.pa_of(va), fresh.rights.letters(), None
        else:
            now_pa, now_rights, now_fault = None, None, _fault_text(fresh)
        change = self._last_change(asid, global_, stamp, va, via_pwc)
        operation = None if change is None else change.flush.operation
        flushed = None if change is None else change.applied
        report = StaleUse(va, asid, *used, now_pa, now_rights, now_fault, operation, flushed, "")
        report = replace(report, message=_message(report, via_pwc))
        self.reports.append(report)
        if self.raise_on_stale:
            raise StaleTranslationError(report)
        return report

    def _last_change(
        self, asid: int, global_: bool, stamp: int, va: int, tables: bool = False
    ) -> _Change | None:
        """The newest change to ``va`` after ``stamp``, preferring one left unflushed.

        Changes in spaces installed with ``asid`` come first; others (a flush sent with the
        wrong ASID, say) are the fallback. With ``tables`` (a stale paging-structure cache),
        changes that freed tables come first.
        """
        asid_of = self.mmu.tlb.asid_of_space
        ours: list[_Change] = []
        others: list[_Change] = []
        for change in reversed(self.changes):
            if change.seq <= stamp:
                break
            if change.flush.covers(va):
                same = global_ or asid_of.get(change.space_id, asid) == asid
                (ours if same else others).append(change)
        for found in (ours, others):
            pick = [c for c in found if not c.applied] or found
            freed = [c for c in pick if c.flush.tables_freed]
            pick = (freed or pick) if tables else pick
            if pick:
                return pick[0]
        return None

    def clear(self) -> None:
        """Forget the reports (the change history stays)."""
        self.reports.clear()


def _fault_text(fault: PageFault) -> str:
    where = "" if fault.level is None else f" at level {fault.level}"
    return f"{fault.kind}{where}"


def _message(r: StaleUse, via_pwc: bool) -> str:
    via = " through a stale paging-structure cache entry" if via_pwc else ""
    if r.used_pa is None:
        used = f"access to VA {hx(r.va)} faulted ({r.used_rights}){via}"
    else:
        used = f"access to VA {hx(r.va)} used a stale translation{via} to "
        used += f"PA {hx(r.used_pa)} ({r.used_rights})"
    if r.now_pa is not None:
        now = f"PA {hx(r.now_pa)} ({r.now_rights})"
    else:
        now = f"nothing: not mapped ({r.now_fault})"
    if r.operation is None:
        last = "none seen through an AddressSpace since the entry was filled (direct table write?)"
    elif not r.flushed:
        last = f"{r.operation} without a flush"
    else:
        last = (
            f"{r.operation}, whose flush was applied but did not reach this entry (ASID {r.asid})"
        )
    return f"{used}; the tables now say {now}; last change: {last}"
