"""The stale-TLB detector and the AArch64 break-before-make checker.

One idea: a kernel that applies every :class:`~pagewalk.flush.Flush` never uses a stale entry,
and dropping any flush that matters is caught and named (Intel SDM vol. 3A §4.10.4, Arm ARM D8.13,
RISC-V SFENCE.VMA); on AArch64, changing a live entry's output address or block size without
invalid-entry-then-TLBI is reported (Arm ARM D8.13, break-before-make).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mmu_builders import new_space

from pagewalk.formats.base import Perm
from pagewalk.mmu import MMU, RiscvRegs, StaleTranslationError, TLBConfig

R, W, X, U = Perm.READ, Perm.WRITE, Perm.EXEC, Perm.USER
BASE, PA0 = 0x40_0000, 0x30_0000
PAGES = [BASE + i * 0x1000 for i in range(6)]
PERMS = [R, R | W, R | X, R | W | U, R | U]


def checking(name: str, **kw: Any) -> tuple[MMU, Any]:
    mode, mem, space = new_space(name)
    regs = RiscvRegs(sum=True, svadu=True) if name == "sv39" else None
    mmu = MMU(mem, mode, regs=regs, checking=True, **kw)
    mmu.attach(space, 1)
    return mmu, space


# ----------------------------------------------------------------- the detector's words
@pytest.mark.parametrize("pwc", [False, True])
def test_report_names_the_missing_flush(pwc: bool) -> None:
    mmu, space = checking("x86_64", tlb=TLBConfig(pwc=pwc))
    space.map(BASE + 0x1000, PA0).apply(mmu)
    mmu.access(BASE + 0x1000)  # so the next fill starts in the walk cache
    space.map(BASE, PA0).apply(mmu)
    mmu.access(BASE)
    space.remap(BASE, 0x50_0000).ignore()  # the bug: no flush
    assert mmu.access(BASE + 0x10) == PA0 + 0x10  # the stale PA, as hardware would
    (report,) = mmu.detector.reports  # type: ignore[union-attr]
    assert report.message == (
        "access to VA 0x400010 used a stale translation to PA 0x300010 (rw-k); the tables now "
        "say PA 0x500010 (rw-k); last change: remap without a flush"
    )
    assert (report.operation, report.flushed, report.now_pa) == ("remap", False, 0x500010)


def test_report_for_unmapped_page_for_wrong_asid_and_for_direct_writes() -> None:
    mmu, space = checking("aarch64")
    space.map(BASE, PA0).apply(mmu)
    mmu.access(BASE)
    space.unmap(BASE).ignore()
    mmu.access(BASE)
    assert "the tables now say nothing: not mapped (translation at level 0)" in (
        mmu.detector.reports[-1].message  # type: ignore[union-attr]
    )
    space.map(BASE, PA0).apply(mmu)
    mmu.access(BASE)
    mmu.tlb.asid_of_space[space.id] = 7  # the kernel flushes with the wrong ASID
    space.protect(BASE, R).apply(mmu)
    mmu.access(BASE)
    assert "protect, whose flush was applied but did not reach this entry (ASID 1)" in (
        mmu.detector.reports[-1].message  # type: ignore[union-attr]
    )
    mmu.tlb.flush_all()
    mmu.access(BASE)
    t = mmu.walk(BASE)
    mmu.mem.write_entry(t.leaf_pa, 8, t.leaf_raw & ~1)  # type: ignore[union-attr, attr-defined]
    mmu.access(BASE)
    assert "none seen through an AddressSpace" in mmu.detector.reports[-1].message  # type: ignore[union-attr]


def test_raise_on_stale_and_stale_paging_structure_cache() -> None:
    mmu, space = checking("x86_64", raise_on_stale=True, tlb=TLBConfig(pwc=True))
    space.map(BASE, PA0).apply(mmu)
    space.map(BASE + 0x1000, PA0 + 0x1000).apply(mmu)
    mmu.access(BASE)
    space.unmap_range(BASE, 0x2000).ignore()  # frees the tables; the walk cache keeps the PDE
    space.map(BASE + 0x20_1000, 0x60_0000).apply(mmu)  # the freed frames are tables again
    space.map(BASE + 0x1000, 0x70_0000).ignore()  # new_only: no TLB holds an invalid entry
    with pytest.raises(StaleTranslationError, match="through a stale paging-structure cache") as e:
        mmu.access(BASE + 0x1000)
    assert e.value.report.operation == "unmap_range" and e.value.report.now_pa == 0x70_0000


# ------------------------------------------------------------------- the property
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("map"), st.integers(0, 5), st.integers(0, 7), st.sampled_from(PERMS)),
        st.tuples(st.just("unmap"), st.integers(0, 5)),
        st.tuples(st.just("protect"), st.integers(0, 5), st.sampled_from(PERMS)),
        st.tuples(st.just("remap"), st.integers(0, 5), st.integers(0, 7)),
        st.tuples(st.just("access"), st.integers(0, 5)),
    ),
    max_size=40,
)


class Kernel:
    """Runs operations on a space and a dict model, and tracks what the TLB should hold."""

    def __init__(self, name: str) -> None:
        self.mmu, self.space = checking(name)
        self.model: dict[int, tuple[int, Perm]] = {}
        self.cached: set[int] = set()

    def change(self, op: tuple[Any, ...]) -> tuple[Any, dict[int, tuple[int, Perm]]] | None:
        """Do one change; return its Flush and the model before it (None if skipped)."""
        va = PAGES[op[1]]
        before = dict(self.model)
        if op[0] == "map" and va not in self.model:
            pa = PA0 + op[2] * 0x1000
            flush, self.model[va] = self.space.map(va, pa, perm=op[3]), (pa, op[3])
        elif op[0] == "unmap" and va in self.model:
            flush = self.space.unmap(va)
            del self.model[va]
        elif op[0] == "protect" and va in self.model:
            flush, self.model[va] = self.space.protect(va, op[2]), (self.model[va][0], op[2])
        elif op[0] == "remap" and va in self.model:
            pa = PA0 + op[2] * 0x1000
            flush, self.model[va] = self.space.remap(va, pa), (pa, self.model[va][1])
        else:
            return None
        return flush, before

    def access(self, va: int) -> None:
        if va in self.model:
            assert self.mmu.access(va) == self.model[va][0]
            self.cached.add(va)

    def applied(self, flush: Any) -> None:
        flush.apply(self.mmu)
        self.cached -= {va for va in self.cached if flush.covers(va)}

    def matters(self, flush: Any, before: dict[int, tuple[int, Perm]]) -> list[int]:
        """Cached pages the flush covers whose translation changed."""
        return [
            va
            for va in sorted(self.cached)
            if flush.covers(va) and before[va] != self.model.get(va)
        ]


@pytest.mark.parametrize("name", ["x86_64", "aarch64", "sv39"])
@settings(max_examples=40, deadline=None)
@given(ops=OPS)
def test_applied_flushes_never_leave_a_stale_entry(name: str, ops: list[tuple[Any, ...]]) -> None:
    k = Kernel(name)
    for op in ops:
        if op[0] == "access":
            k.access(PAGES[op[1]])
            continue
        done = k.change(op)
        if done is not None:
            k.applied(done[0])
    for va in PAGES:
        k.access(va)
    assert k.mmu.detector.reports == []  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["x86_64", "aarch64", "sv39"])
@settings(max_examples=40, deadline=None)
@given(ops=OPS, drop=st.integers(0, 39))
def test_dropping_a_flush_that_matters_is_reported(
    name: str, ops: list[tuple[Any, ...]], drop: int
) -> None:
    k = Kernel(name)
    changes = 0
    for op in ops:
        if op[0] == "access":
            k.access(PAGES[op[1]])
            continue
        done = k.change(op)
        if done is None:
            continue
        flush, before = done
        if changes != drop:
            k.applied(flush)
            changes += 1
            continue
        flush.ignore()
        stale = k.matters(flush, before)
        for va in k.cached & {va for va, _ in before.items() if flush.covers(va)}:
            k.mmu.access(va)
        reported = {r.va for r in k.mmu.detector.reports}  # type: ignore[union-attr]
        assert reported == set(stale)
        return


# ------------------------------------------------------------------ break-before-make
def _arm_live(size: int = 0x1000) -> tuple[MMU, Any]:
    mmu, space = checking("aarch64")
    space.map(BASE, PA0 if size == 0x1000 else 0x20_0000, size).apply(mmu)
    mmu.access(BASE)
    return mmu, space


def test_bbm_direct_remap_is_a_violation() -> None:
    mmu, space = _arm_live()
    space.remap(BASE, 0x50_0000).apply(mmu)
    (v,) = mmu.bbm.violations  # type: ignore[union-attr]
    assert (v.what, v.skipped, v.operation, v.level) == ("output address", "break", "remap", 3)
    assert "changed directly from one valid value to another" in v.message


def test_bbm_invalid_then_tlbi_then_new_entry_is_fine() -> None:
    mmu, space = _arm_live()
    space.unmap(BASE).apply(mmu)  # break + TLBI
    space.map(BASE, 0x50_0000).apply(mmu)
    mmu.access(BASE)
    assert mmu.bbm.violations == []  # type: ignore[union-attr]


def test_bbm_missing_tlbi_between_break_and_make() -> None:
    mmu, space = _arm_live()
    space.map(BASE + 0x1000, PA0 + 0x1000).apply(mmu)  # keeps the tables alive
    space.unmap(BASE).ignore()  # break, but no TLBI
    space.map(BASE, 0x50_0000).apply(mmu)
    (v,) = mmu.bbm.violations  # type: ignore[union-attr]
    assert v.skipped == "TLBI" and "made valid again before a TLBI" in v.message


def test_bbm_reused_table_frames_without_tlbi_are_reported() -> None:
    mmu, space = _arm_live()
    space.unmap(BASE).ignore()  # frees every table below the root, no TLBI
    space.map(BASE, 0x50_0000).apply(mmu)  # the freed frames come back in another order
    assert mmu.bbm.violations and {v.skipped for v in mmu.bbm.violations} == {"TLBI"}  # type: ignore[union-attr]


def test_bbm_block_split_while_live_and_permission_change_allowed() -> None:
    mmu, space = _arm_live(0x20_0000)
    space.protect_range(BASE, 0x20_0000, R).apply(mmu)  # same block, new permissions: fine
    assert mmu.bbm.violations == []  # type: ignore[union-attr]
    mmu.access(BASE)
    space.protect_range(BASE, 0x1000, R | W).apply(mmu)  # splits the live 2 MiB block
    (v,) = mmu.bbm.violations  # type: ignore[union-attr]
    assert (v.what, v.level, v.operation) == ("block size", 2, "protect_range")


def test_bbm_memory_type_change_while_live_is_a_violation() -> None:
    from pagewalk.formats.base import MemType

    mmu, space = _arm_live()
    space.protect_range(BASE, 0x1000, R | W, MemType.DEVICE).apply(mmu)
    (v,) = mmu.bbm.violations  # type: ignore[union-attr]
    assert (v.what, v.skipped, v.operation) == ("memory type", "break", "protect_range")


# ------------------------------------------- the space's own break-before-make (space.bbm)
@pytest.mark.parametrize(
    "change",
    ["remap", "split by protect", "split by unmap", "memory type"],
)
def test_space_bbm_hook_makes_every_live_change_legal(change: str) -> None:
    """With ``space.bbm`` set, the changes Arm forbids straight over a live entry become
    invalid -> TLBI -> new entry: the checker sees no violation, the TLB never holds the old
    translation, and the tables end where the plain change would put them."""
    from pagewalk.formats.base import MemType
    from pagewalk.walk import walk

    size = 0x1000 if change in ("remap", "memory type") else 0x20_0000
    mmu, space = _arm_live(size)
    seen: list[tuple[str, tuple[tuple[int, int], ...], bool]] = []

    def tlbi(flush: Any) -> None:
        # at the break the entry is invalid in memory, and the walk there faults
        seen.append(
            (
                flush.operation,
                tuple(flush.ranges),
                walk(space.mem, space.mode, space.roots, BASE).fault is not None,
            )
        )
        flush.apply(mmu)

    space.bbm = tlbi
    if change == "remap":
        space.remap(BASE, 0x50_0000).apply(mmu)
        want = 0x50_0000
    elif change == "split by protect":
        space.protect_range(BASE, 0x1000, R | W).apply(mmu)
        want = 0x20_0000
    elif change == "split by unmap":
        space.unmap_range(BASE + 0x1000, 0x1000).apply(mmu)
        want = 0x20_0000
    else:
        space.protect_range(BASE, 0x1000, R | W, MemType.DEVICE).apply(mmu)
        want = PA0
    assert mmu.bbm.violations == []  # type: ignore[union-attr]
    span = 0x1000 if size == 0x1000 else 0x20_0000
    assert seen == [("break-before-make", ((BASE, span),), True)]
    assert mmu.access(BASE) == want
    if change == "split by unmap":
        with pytest.raises(Exception, match="translation"):
            mmu.access(BASE + 0x1000)


def test_space_bbm_hook_is_not_called_for_permission_changes() -> None:
    mmu, space = _arm_live(0x20_0000)
    calls: list[Any] = []
    space.bbm = calls.append
    space.protect_range(BASE, 0x20_0000, R).apply(mmu)
    assert calls == [] and mmu.bbm.violations == []  # type: ignore[union-attr]
    assert space.clone().bbm == calls.append
