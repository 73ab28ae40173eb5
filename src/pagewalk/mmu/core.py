"""The MMU: every access goes through the TLB, a walk on a miss, the rights check and A/D updates.

:meth:`MMU.access` does, in order, what the manuals' translation processes do: look the VA up in
the TLB under the current ASID/PCID (Intel SDM vol. 3A §4.10.2, Arm ARM D8.13, RISC-V privileged
spec "Virtual Address Translation Process"); on a miss walk the tables (setting accessed flags on
the way, SDM §4.8) and cache the result; check the effective rights against the control registers
(:mod:`pagewalk.mmu.access`); then set the leaf's A/D state. A write through a cached entry whose
dirty state is clean walks again, as an x86 CPU does to set D (§4.8) and an Arm CPU to clear a
DBM entry's AP[2] (D8.5). An x86 page fault drops the faulting VA's entries (§4.10.4.1).

The TLB serves stale entries. In checking mode every hit is compared with a fresh walk by the
:class:`~pagewalk.mmu.stale.StaleDetector`; on AArch64 the optional
:class:`~pagewalk.mmu.bbm.BreakBeforeMake` checker watches live entries across table changes.
"""

from __future__ import annotations

from typing import Any

from pagewalk.errors import ConfigError, PageFault
from pagewalk.flush import Flush
from pagewalk.formats.base import PagingMode
from pagewalk.mmu.bbm import BreakBeforeMake
from pagewalk.mmu.cpu import CPU
from pagewalk.mmu.faults import walk_fault
from pagewalk.mmu.maintenance import Maintenance
from pagewalk.mmu.regs import Regs, access_kind, check_regs, default_regs
from pagewalk.mmu.regs import is_user as _is_user
from pagewalk.mmu.rules import rules_for
from pagewalk.mmu.stale import StaleDetector
from pagewalk.mmu.tlb import TLB, TLBConfig
from pagewalk.mmu.walker import EntryMemory, Translation, mark_leaf, walk_access


class MMU(Maintenance):
    """One CPU's MMU: registers, TLB, access checks and the optional checkers.

    Args:
        mem: physical memory holding the page tables.
        mode: the paging mode.
        regs: control registers (default: what ``mode`` was configured with).
        tlb: the TLB shape (default :class:`TLBConfig`).
        checking: compare every TLB hit with a fresh walk (the stale-TLB detector).
        bbm: watch AArch64 break-before-make (default: on for AArch64 when ``checking``).
        raise_on_stale: raise :class:`~pagewalk.mmu.stale.StaleTranslationError` instead of
            only recording reports.
    """

    def __init__(
        self,
        mem: EntryMemory,
        mode: PagingMode,
        *,
        regs: Regs | None = None,
        tlb: TLBConfig | None = None,
        checking: bool = False,
        bbm: bool | None = None,
        raise_on_stale: bool = False,
    ) -> None:
        self.mem = mem
        self.mode = mode
        self.rules = rules_for(mode)
        self.arch = mode.facts.family
        self.regs = default_regs(mode) if regs is None else regs
        check_regs(mode, self.regs)
        self.cpu = CPU(mode)
        self.tlb = TLB(mode, tlb)
        self.detector = StaleDetector(self, raise_on_stale) if checking else None
        if bbm is None:
            bbm = checking and mode.facts.needs_bbm
        self.bbm = BreakBeforeMake(self) if bbm else None
        self.peers: list[Maintenance] = [self]  # the inner-shareable domain (TLBI ... IS forms)

    # ------------------------------------------------------------------ set-up
    @property
    def asid(self) -> int:
        """The current ASID (Arm, RISC-V) or PCID (x86; 0 unless CR4.PCIDE=1)."""
        return self.rules.asid(self.regs, self.cpu.asid)

    def attach(self, space: Any, asid: int = 0) -> None:
        """Install ``space`` (load its roots with ``asid``) and follow its changes.

        The TLB learns the space's ASID so the space's :class:`~pagewalk.flush.Flush` values
        invalidate the right entries, and the checkers subscribe to ``space.listeners``.
        Installing does not flush (use :meth:`write_cr3` for x86's flushing CR3 write).
        """
        space.install(self.cpu, asid)
        self.tlb.asid_of_space[space.id] = self.asid  # x86 without PCIDE tags everything 0
        for checker in (self.detector, self.bbm):
            if checker is not None and checker.on_change not in space.listeners:
                space.listeners.append(checker.on_change)

    def apply_flush(self, flush: Flush) -> None:
        """Apply a :class:`~pagewalk.flush.Flush` to this MMU's TLB (so ``flush.apply(mmu)``)."""
        self.tlb.apply_flush(flush)

    def share_domain(self, *others: MMU) -> None:
        """Put this MMU and ``others`` in one inner-shareable domain (for TLBI ... IS)."""
        domain: list[Maintenance] = list(dict.fromkeys([*self.peers, *others]))
        for mmu in domain:
            mmu.peers = domain

    # ------------------------------------------------------------------ access
    def access(self, va: int, kind: str = "read", privilege: str | bool = "supervisor") -> int:
        """Check one access and return its physical address.

        Args:
            va: the virtual address.
            kind: ``read``, ``write`` or ``execute``.
            privilege: ``user``/``supervisor``, ``EL0``/``EL1`` or ``U``/``S`` (or a bool,
                True for the unprivileged level).

        Raises:
            PageFault: with the architecture's details (x86 error code and CR2, Arm FSC and
                level, RISC-V cause).
        """
        access, user = access_kind(kind), _is_user(privilege)
        if not self.cpu.roots:
            raise ConfigError("no address space is installed (call MMU.attach)")
        stats = self.tlb.stats
        t = self.tlb.lookup(va, self.asid)
        if t is not None:
            stats.hits += 1
            if self.detector is not None:
                self.detector.check_hit(t, va)
            needs_walk = access == "write" and not t.dirty and (t.rights.writable or t.dbm)
            if not needs_walk:
                return self._finish(t, va, access, user, cached=True)
            stats.walks += 1  # a write to a clean entry walks again to set D
        else:
            stats.misses += 1
            stats.walks += 1
        return self._miss(va, access, user)

    def walk(self, va: int, *, update: bool = False) -> Translation | PageFault:
        """A fresh walk of ``va`` under the current roots (no TLB, no A/D writes by default)."""
        pge = self.rules.pge(self.regs)
        result = walk_access(
            self.mem, self.mode, self.cpu.roots, va, asid=self.asid, pge=pge, update=update
        )
        if isinstance(result, Translation):
            return result
        return walk_fault(self.mode, self.regs, va, result, "read", False)

    def _miss(self, va: int, access: str, user: bool) -> int:
        pge = self.rules.pge(self.regs)
        result = walk_access(
            self.mem, self.mode, self.cpu.roots, va, asid=self.asid, pge=pge, pwc=self.tlb.pwc
        )
        if not isinstance(result, Translation):
            fault = walk_fault(self.mode, self.regs, va, result, access, user)
            if self.detector is not None and self.tlb.pwc is not None:
                self.detector.check_walk_fault(va, fault)
            raise fault
        self.tlb.stats.reads += result.reads
        if self.detector is not None:
            result.stamp = self.detector.seq
            if result.from_pwc:
                self.detector.check_hit(result, va, via_pwc=True)
        t = self._finish(result, va, access, user, cached=False)
        self.tlb.insert(result)
        if self.bbm is not None:
            self.bbm.observe(result)
        return t

    def _finish(self, t: Translation, va: int, access: str, user: bool, cached: bool) -> int:
        why = self.rules.refusal(self.mode, t, access, user, self.regs)
        if why is not None:
            if cached and self.rules.drops_on_fault:
                self.tlb.drop(va, va + 1, asid=self.asid, walk_cache=False)
            rules = self.rules
            raise rules.rights_fault(
                self.mode, self.regs, va, access, user, why, t.level, t.leaf_raw
            )
        if not cached:
            mark_leaf(self.mem, self.mode, t, access == "write", self.rules.svadu(self.regs))
        return t.pa_of(va)

    def __repr__(self) -> str:
        s = self.tlb.stats
        return (
            f"MMU({self.mode.name}, asid={self.asid}, {len(self.tlb)} TLB entries, "
            f"hits={s.hits}, misses={s.misses})"
        )
