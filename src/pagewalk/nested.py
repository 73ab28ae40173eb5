"""Two-stage translation on the one walker: guest VA -> guest PA (stage 1) -> host PA (stage 2).

Hardware translates a guest's address twice, and translates every stage-1 table read too: the
guest's CR3/TTBR/satp and the table addresses in its entries are guest-physical, so each entry
read is itself a stage-2 translation (Intel SDM vol. 3C §29.3.2 "guest-physical addresses ...
used to access the guest paging structures"; Arm ARM D8 "stage 1 translation table walks ...
are subject to stage 2 translation", the S1PTW faults; the RISC-V hypervisor chapter's
"Two-Stage Address Translation", implicit VS-stage accesses; AMD APM vol. 2 §15.25.5). Here
that is a memory adapter, :class:`GuestPhysical`, whose entry reads translate IPA -> PA with the
one walker (:func:`pagewalk.walk.descend`) over the stage-2 tables, under which the same walker
descends the stage-1 tables; no second walker exists. The result carries both stages' rights,
their intersection, and the fault the hardware reports where the walk stops: the stage, the
level, whether it was a stage-1 table access, and each regime's registers
(:mod:`pagewalk.nested_faults`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pagewalk.errors import PageFault, PagingError, hx
from pagewalk.formats.base import PagingMode, Rights, U64Array
from pagewalk.memory.protocols import BoolArray, TableReader
from pagewalk.mmu.access import check_access
from pagewalk.nested_faults import REGIMES, FaultFacts, allows, combine
from pagewalk.walk import Fault, Reached, Step, descend, start


@dataclass(frozen=True)
class Stage2:
    """A stage-2 regime's tables in host memory.

    Attributes:
        mode: the stage-2 format (EPT, Arm stage 2, G-stage; long-mode x86 for AMD NPT).
        roots: its root table PA (one).
        regime: the key into :data:`pagewalk.nested_faults.REGIMES` (``ept``, ``npt``,
            ``arm``, ``riscv``).
        register: the register as given, for messages (``EPTP=0x...``).
    """

    mode: PagingMode
    roots: tuple[int, ...]
    regime: str
    register: str = ""


@dataclass(frozen=True)
class S2Result:
    """One stage-2 translation: the host PA, or why there is none.

    Attributes:
        ipa: the guest-physical address translated.
        pa: the host PA, or None on a fault.
        size: the stage-2 page size, or None.
        rights: the stage-2 rights (the AND over the entries used), or None where the walk
            stopped before a leaf.
        fault: None, or the walk's fault kind, or ``permission``.
        level: the stage-2 level number of the fault (or of the leaf).
        reason: why.
        steps: the stage-2 walk.
    """

    ipa: int
    pa: int | None
    size: int | None
    rights: Rights | None
    fault: str | None
    level: int | None
    reason: str
    steps: tuple[Step, ...]


class Stage2Abort(PagingError):
    """A stage-2 fault on a stage-1 table read (internal: it unwinds the stage-1 descent)."""

    def __init__(self, result: S2Result) -> None:
        super().__init__(f"stage-2 {result.fault} fault on IPA {hx(result.ipa)}: {result.reason}")
        self.result = result


def stage2_translate(host: TableReader, s2: Stage2, ipa: int, access: str, user: bool) -> S2Result:
    """Translate ``ipa`` through stage 2 and check ``access`` (the one walker)."""
    mode, regime = s2.mode, REGIMES[s2.regime]
    steps: list[Step] = []
    begun = start(mode, s2.roots, ipa)
    got: Reached | Fault = begun if isinstance(begun, Fault) else Fault("", None, "")
    if not isinstance(begun, Fault):
        got = descend(host, mode, begun[0], ipa, begun[1], steps=steps)
    if isinstance(got, Fault):
        return S2Result(ipa, None, None, None, got.kind, got.level, got.reason, tuple(steps))
    rights = regime.normalise(mode.leaf_state(got.entry.raw, got.acc).rights)
    level = got.level.number
    if not allows(rights, access, user or regime.all_user):
        why = f"the stage-2 leaf ({rights.letters()}) does not allow a {access}"
        return S2Result(ipa, None, None, rights, "permission", level, why, tuple(steps))
    pa = got.entry.address | (ipa & (got.entry.size - 1))
    return S2Result(ipa, pa, got.entry.size, rights, None, level, "", tuple(steps))


class GuestPhysical:
    """Guest-physical memory: every read goes through stage 2 (an ``EntryReader`` and a
    ``TableReader`` over the host's memory).

    Args:
        host: the host's physical memory.
        s2: the stage-2 tables.
        access: how stage 2 checks a table read (``read``, or ``write`` when the regime treats
            guest table accesses as writes).
        user: check them as unprivileged accesses.
    """

    def __init__(self, host: TableReader, s2: Stage2, access: str, user: bool) -> None:
        self.host, self.s2, self.access, self.user = host, s2, access, user
        #: the stage-2 translations of the entry reads, in order
        self.log: list[S2Result] = []
        self._pages: dict[int, S2Result] = {}

    def _page(self, ipa: int) -> S2Result:
        page = ipa & ~0xFFF
        got = self._pages.get(page)
        if got is None:
            got = self._pages[page] = stage2_translate(
                self.host, self.s2, page, self.access, self.user
            )
        return got

    def _host(self, ipa: int) -> int:
        got = self._page(ipa)
        if got.pa is None:
            raise Stage2Abort(replace(got, ipa=ipa))
        return got.pa | (ipa & 0xFFF)

    def read_entry(self, pa: int, entry_size: int) -> int:
        got = self._page(pa)
        host = None if got.pa is None else got.pa | (pa & 0xFFF)
        self.log.append(replace(got, ipa=pa, pa=host))  # the entry's own IPA and PA
        if host is None:
            raise Stage2Abort(replace(got, ipa=pa))
        return self.host.read_entry(host, entry_size)

    # ----------------------------------------------- the TableReader side (enumeration)
    def is_ram(self, pa: int, n: int = 1) -> bool:
        end = pa + max(n, 1)
        page = pa & ~0xFFF
        while page < end:
            got = self._page(page)
            lo, hi = max(pa, page), min(end, page + 0x1000)
            if got.pa is None or not self.host.is_ram(got.pa | (lo & 0xFFF), hi - lo):
                return False
            page += 0x1000
        return True

    def read_table(self, pa: int, n_entries: int, entry_size: int) -> U64Array:
        out = [self.host.read_entry(self._host(pa + i * entry_size), entry_size)
               for i in range(n_entries)]  # fmt: skip
        return np.array(out, dtype=np.uint64)

    def is_ram_array(self, pas: U64Array, n: int) -> BoolArray:
        return np.array([self.is_ram(int(p), n) for p in pas.tolist()], dtype=np.bool_)

    def gather(self, pas: U64Array, entry_size: int) -> U64Array:
        out = [self.host.read_entry(self._host(int(p)), entry_size) for p in pas.tolist()]
        return np.array(out, dtype=np.uint64)


@dataclass(frozen=True)
class NestedFault:
    """Where a two-stage walk stopped and what the hardware reports.

    Attributes:
        stage: 1 or 2.
        kind: the fault kind (``permission`` for a rights check).
        level: the level number in that stage.
        reason: why.
        on_table: a stage-2 fault on a stage-1 table read (Arm S1PTW).
        s1_level: for ``on_table``, the stage-1 level whose table was being read.
        gpa: the guest-physical address stage 2 failed on (None for stage 1).
        report: the architecture's registers (exit qualification, ESR_EL2/HPFAR_EL2,
            scause/htval, EXITINFO1/2, #PF error code).
    """

    stage: int
    kind: str
    level: int | None
    reason: str
    on_table: bool = False
    s1_level: int | None = None
    gpa: int | None = None
    report: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The fault as JSON: stage, kind, level, and the registers."""
        return {
            "stage": self.stage, "kind": self.kind, "level": self.level,
            "on_table": self.on_table, "s1_level": self.s1_level, "gpa": self.gpa,
            "report": self.report,
        }  # fmt: skip


@dataclass(frozen=True)
class NestedWalk:
    """A two-stage walk of one guest VA.

    Attributes:
        gva, access, user: what was walked.
        s1_steps: the stage-1 walk (entry addresses are guest-physical).
        s1_tables: the stage-2 translation of each stage-1 entry read, in order; one more
            than ``s1_steps`` when a stage-2 fault stopped a table read (the last).
        gpa: the guest-physical address, or None when stage 1 did not finish.
        s2: the stage-2 translation of the final GPA, or None.
        pa: the host PA, or None on a fault.
        page_size: the smaller of the two pages, or None.
        s1_rights, s2_rights, rights: each stage's rights and their intersection.
        fault: where it stopped, or None.
    """

    gva: int
    access: str
    user: bool
    s1_steps: tuple[Step, ...]
    s1_tables: tuple[S2Result, ...]
    gpa: int | None
    s2: S2Result | None
    pa: int | None
    page_size: int | None
    s1_rights: Rights | None
    s2_rights: Rights | None
    rights: Rights | None
    fault: NestedFault | None

    @property
    def ok(self) -> bool:
        """Whether the access translates."""
        return self.fault is None


def nested_walk(
    host: TableReader,
    s1_mode: PagingMode,
    s1_roots: Sequence[int],
    s2: Stage2,
    gva: int,
    access: str = "read",
    user: bool = False,
) -> NestedWalk:
    """Walk ``gva`` through stage 1 (whose table reads go through stage 2), then its GPA
    through stage 2, checking ``access`` at both stages."""
    regime = REGIMES[s2.regime]
    table_write = regime.table_write(s2.mode.facts.table_accessed)
    gmem = GuestPhysical(host, s2, "write" if table_write else "read", regime.table_user)
    facts = FaultFacts(1, "", None, access, user, gva, table_write=table_write,
                       entry_size=s1_mode.entry_size)  # fmt: skip
    steps: list[Step] = []

    def done(fault: NestedFault | None, reads: int | None = None, **kw: Any) -> NestedWalk:
        base: dict[str, Any] = {"gpa": None, "s2": None, "pa": None, "page_size": None,
                                "s1_rights": None, "s2_rights": None, "rights": None}  # fmt: skip
        base.update(kw)
        tables = tuple(gmem.log[: len(steps) if reads is None else reads])
        return NestedWalk(gva, access, user, tuple(steps), tables, fault=fault, **base)

    begun = start(s1_mode, s1_roots, gva)
    try:
        got: Reached | Fault = begun if isinstance(begun, Fault) else Fault("", None, "")
        if not isinstance(begun, Fault):
            got = descend(gmem, s1_mode, begun[0], gva, begun[1], steps=steps)
    except Stage2Abort as abort:
        r = abort.result
        s1_level = begun[0].levels[len(steps)].number if not isinstance(begun, Fault) else None
        f = _facts(facts, 2, r, on_table=True)
        why = f"stage-2 fault on the stage-1 level-{s1_level} table read at IPA {hx(r.ipa)}: "
        report = regime.report(f)
        fault = NestedFault(2, f.kind, r.level, why + r.reason, True, s1_level, r.ipa, report)
        return done(fault, reads=len(steps) + 1)  # with the read that failed
    checked = check_access(gmem, s1_mode, s1_roots, gva, access, user)
    s1_rights = None
    if not isinstance(got, Fault):
        s1_rights = s1_mode.leaf_state(got.entry.raw, got.acc).rights
    if isinstance(checked, PageFault):
        f = replace(facts, kind=checked.kind, level=checked.level, code=checked.code,
                    s1_rights=s1_rights)  # fmt: skip
        fault = NestedFault(1, checked.kind, checked.level, checked.reason, report=regime.report(f))
        return done(fault, s1_rights=s1_rights)
    assert not isinstance(got, Fault) and s1_rights is not None
    gpa, s1_size = checked, got.entry.size
    final = stage2_translate(host, s2, gpa, access, user)
    if final.pa is None or final.size is None:
        f = _facts(facts, 2, final, on_table=False, s1_rights=s1_rights)
        fault = NestedFault(
            2, f.kind, final.level, final.reason, False, None, gpa, regime.report(f)
        )
        return done(fault, gpa=gpa, s2=final, s1_rights=s1_rights, s2_rights=final.rights)
    both = combine(s1_rights, final.rights) if final.rights is not None else None
    return done(None, gpa=gpa, s2=final, pa=final.pa, page_size=min(s1_size, final.size),
                s1_rights=s1_rights, s2_rights=final.rights, rights=both)  # fmt: skip


def _facts(
    base: FaultFacts, stage: int, r: S2Result, *, on_table: bool, s1_rights: Rights | None = None
) -> FaultFacts:
    return replace(base, stage=stage, kind=r.fault or "", level=r.level, gpa=r.ipa,
                   on_table=on_table, s2_rights=r.rights, s1_rights=s1_rights)  # fmt: skip
