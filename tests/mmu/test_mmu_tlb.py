"""The TLB model: stale entries are served until flushed, and each flush clears exactly its share.

One idea: fill the TLB with the same pages under two ASIDs/PCIDs plus one global page, run one
maintenance operation, and compare the set of surviving entries with what the manual says it
invalidates (Intel SDM vol. 3A §4.10.4.1; Arm ARM D8.13 TLBI; RISC-V SFENCE.VMA) - no more and
no less.
"""

from __future__ import annotations

import pytest
from mmu_builders import new_space

from pagewalk.errors import ConfigError, PageFault
from pagewalk.formats.base import Perm
from pagewalk.formats.x86_bits import CR4_PCIDE, CR4_PGE
from pagewalk.mmu import MMU, TLBConfig, X86Regs
from pagewalk.mmu.maintenance import CR3_NOFLUSH

RW = Perm.READ | Perm.WRITE
U1, U2 = 0x40_0000, 0x40_1000  # user pages (non-global)
K = {
    "x86_64": 0xFFFF_8000_0000_0000,
    "aarch64": 0xFFFF_0000_0000_0000,
    "sv39": 0xFFFF_FFC0_0000_0000,
}


def _setup(name: str) -> tuple[MMU, object]:
    """Pages U1, U2 (non-global) and K (global), all cached under ASIDs 1 and 2."""
    mode, mem, space = new_space(name)
    space.map(U1, 0x30_0000, perm=RW | Perm.USER).ignore()
    space.map(U2, 0x30_1000, perm=RW | Perm.USER).ignore()
    space.map(K[name], 0x31_0000, perm=RW | Perm.GLOBAL).ignore()
    regs = None
    if name == "x86_64":
        regs = X86Regs(cr0=mode.cr0, cr4=mode.cr4 | CR4_PCIDE | CR4_PGE)  # type: ignore[attr-defined]
    mmu = MMU(mem, mode, regs=regs)
    for asid in (1, 2):
        _switch(mmu, space, asid)
        mmu.access(U1, "read", "user")
        mmu.access(U2, "read", "user")
        mmu.access(K[name])
    return mmu, space


def _switch(mmu: MMU, space: object, asid: int) -> None:
    if mmu.arch == "x86":
        mmu.write_cr3(space.roots[0] | asid | CR3_NOFLUSH)  # type: ignore[attr-defined]
    else:
        mmu.attach(space, asid)


def held(mmu: MMU) -> set[tuple[int, object]]:
    """``(va, asid)`` of every entry, with ``"G"`` for global ones."""
    return {(t.va, "G" if t.global_ else t.asid) for t in mmu.tlb.entries()}


def everything(name: str) -> set[tuple[int, object]]:
    return {(U1, 1), (U2, 1), (U1, 2), (U2, 2), (K[name], "G")}


def test_setup_holds_both_asids_and_one_global_entry() -> None:
    for name in K:
        mmu, _ = _setup(name)
        assert held(mmu) == everything(name), name
        assert mmu.tlb.stats.misses == 5 and mmu.tlb.stats.hits == 1


X86_CASES = {
    "invlpg U1 (current PCID 2)": (lambda m: m.invlpg(U1), {(U1, 2)}),
    "invlpg global page": (lambda m: m.invlpg(K["x86_64"]), {(K["x86_64"], "G")}),
    "invpcid 0 (U1, PCID 1)": (lambda m: m.invpcid(0, 1, U1), {(U1, 1)}),
    "invpcid 0 spares globals": (lambda m: m.invpcid(0, 1, K["x86_64"]), set()),
    "invpcid 1 (PCID 1)": (lambda m: m.invpcid(1, 1), {(U1, 1), (U2, 1)}),
    "invpcid 2": (lambda m: m.invpcid(2), everything("x86_64")),
    "invpcid 3": (lambda m: m.invpcid(3), everything("x86_64") - {(K["x86_64"], "G")}),
    "CR4.PGE toggle": (lambda m: m.write_cr4(m.regs.cr4 & ~CR4_PGE), everything("x86_64")),
}


@pytest.mark.parametrize("case", list(X86_CASES))
def test_x86_flush_clears_exactly(case: str) -> None:
    op, gone = X86_CASES[case]
    mmu, _ = _setup("x86_64")
    op(mmu)
    assert held(mmu) == everything("x86_64") - gone


def test_x86_cr3_write_with_and_without_noflush() -> None:
    mmu, space = _setup("x86_64")
    root = space.roots[0]  # type: ignore[attr-defined]
    mmu.write_cr3(root | 1 | CR3_NOFLUSH)
    assert held(mmu) == everything("x86_64")
    mmu.write_cr3(root | 1)
    assert held(mmu) == everything("x86_64") - {(U1, 1), (U2, 1)}
    assert mmu.asid == 1


def test_x86_cr3_write_without_pcids_flushes_all_but_globals() -> None:
    mode, mem, space = new_space("x86_64")
    space.map(U1, 0x30_0000, perm=RW).ignore()
    space.map(K["x86_64"], 0x31_0000, perm=RW | Perm.GLOBAL).ignore()
    mmu = MMU(mem, mode, regs=X86Regs(cr0=mode.cr0, cr4=mode.cr4 | CR4_PGE))  # type: ignore[attr-defined]
    mmu.write_cr3(space.roots[0] | 5)  # PCIDE=0: the PCID bits are ignored
    mmu.access(U1)
    mmu.access(K["x86_64"])
    assert held(mmu) == {(U1, 0), (K["x86_64"], "G")}
    mmu.write_cr3(space.roots[0])
    assert held(mmu) == {(K["x86_64"], "G")}


def test_x86_global_needs_pge() -> None:
    mode, mem, space = new_space("x86_64")
    space.map(K["x86_64"], 0x31_0000, perm=RW | Perm.GLOBAL).ignore()
    mmu = MMU(mem, mode)  # CR4.PGE=0
    mmu.attach(space)
    mmu.access(K["x86_64"])
    assert held(mmu) == {(K["x86_64"], 0)}


ARM_CASES = {
    "vae1 U1 asid 1": (lambda m: m.tlbi("vae1", U1, 1), {(U1, 1)}),
    "vale1 U2 asid 2": (lambda m: m.tlbi("vale1", U2, 2), {(U2, 2)}),
    "vae1 global page": (lambda m: m.tlbi("vae1", K["aarch64"], 1), {(K["aarch64"], "G")}),
    "aside1 asid 2": (lambda m: m.tlbi("aside1", asid=2), {(U1, 2), (U2, 2)}),
    "vmalle1": (lambda m: m.tlbi("vmalle1"), everything("aarch64")),
}


@pytest.mark.parametrize("case", list(ARM_CASES))
def test_arm_tlbi_clears_exactly(case: str) -> None:
    op, gone = ARM_CASES[case]
    mmu, _ = _setup("aarch64")
    op(mmu)
    assert held(mmu) == everything("aarch64") - gone


@pytest.mark.parametrize("op", ["vae1", "vale1", "aside1", "vmalle1"])
def test_arm_is_forms_reach_the_shareable_domain(op: str) -> None:
    here, _ = _setup("aarch64")
    there, _ = _setup("aarch64")
    here.share_domain(there)
    args = {"vae1": (U1, 1), "vale1": (U1, 1), "aside1": (None, 1), "vmalle1": (None, None)}[op]
    here.tlbi(op, *args)
    assert held(there) == everything("aarch64"), "a local TLBI must not reach another CPU"
    expected = held(here)
    here.tlbi(op + "is", *args)
    assert held(there) == expected


def test_arm_vale1_keeps_walk_cache_vae1_drops_it() -> None:
    mode, mem, space = new_space("aarch64")
    space.map(U1, 0x30_0000, perm=RW).ignore()
    mmu = MMU(mem, mode, tlb=TLBConfig(pwc=True))
    mmu.attach(space, 1)
    mmu.access(U1)
    assert mmu.tlb.pwc is not None and len(mmu.tlb.pwc) == 3
    mmu.tlbi("vale1", U1, 1)
    assert len(mmu.tlb.pwc) == 3 and not held(mmu)
    mmu.tlbi("vae1", U1, 1)
    assert len(mmu.tlb.pwc) == 0


RV_CASES = {
    "sfence.vma U1, asid 1": (lambda m: m.sfence_vma(U1, 1), {(U1, 1)}),
    "sfence.vma U1, x0": (lambda m: m.sfence_vma(U1), {(U1, 1), (U1, 2)}),
    "sfence.vma K, asid 1 spares globals": (lambda m: m.sfence_vma(K["sv39"], 1), set()),
    "sfence.vma K, x0": (lambda m: m.sfence_vma(K["sv39"]), {(K["sv39"], "G")}),
    "sfence.vma x0, asid 2": (lambda m: m.sfence_vma(None, 2), {(U1, 2), (U2, 2)}),
    "sfence.vma x0, x0": (lambda m: m.sfence_vma(), everything("sv39")),
}


@pytest.mark.parametrize("case", list(RV_CASES))
def test_riscv_sfence_clears_exactly(case: str) -> None:
    op, gone = RV_CASES[case]
    mmu, _ = _setup("sv39")
    op(mmu)
    assert held(mmu) == everything("sv39") - gone


def test_instructions_belong_to_their_architecture() -> None:
    mmu, _ = _setup("sv39")
    with pytest.raises(ConfigError):
        mmu.tlbi("vmalle1")
    with pytest.raises(ConfigError):
        mmu.invlpg(U1)


@pytest.mark.parametrize("name", list(K))
def test_stale_translation_is_served_until_flushed(name: str) -> None:
    mode, mem, space = new_space(name)
    space.map(U1, 0x30_0000, perm=RW).ignore()
    mmu = MMU(mem, mode)
    mmu.attach(space, 1)
    assert mmu.access(U1 + 8) == 0x30_0008
    remap = space.remap(U1, 0x50_0000)
    assert mmu.access(U1 + 8) == 0x30_0008, "a TLB keeps the old translation"
    remap.apply(mmu)
    assert mmu.access(U1 + 8) == 0x50_0008
    unmap = space.unmap(U1)
    assert mmu.access(U1) == 0x50_0000
    unmap.apply(mmu)
    with pytest.raises(PageFault):
        mmu.access(U1)


def test_apply_flush_uses_the_space_asid_only() -> None:
    mmu, space = _setup("aarch64")
    mmu.attach(space, 2)  # the space's flushes now target ASID 2
    space.protect(U1, Perm.READ).apply(mmu)  # type: ignore[attr-defined]
    assert held(mmu) == everything("aarch64") - {(U1, 2)}


def test_lru_eviction_and_statistics() -> None:
    mode, mem, space = new_space("x86_64")
    space.map_range(U1, 0x30_0000, 8 * 4096, RW, page_sizes=(4096,)).ignore()
    mmu = MMU(mem, mode, tlb=TLBConfig(arrays={4096: (1, 4)}))
    mmu.attach(space)
    for i in range(8):
        mmu.access(U1 + i * 4096)
    s = mmu.tlb.stats
    assert (s.misses, s.evictions, len(mmu.tlb)) == (8, 4, 4)
    assert s.reads_per_walk == 4.0
    mmu.access(U1 + 7 * 4096)
    assert s.hits == 1 and s.hit_rate == pytest.approx(1 / 9)
    assert {t.va for t in mmu.tlb.entries()} == {U1 + i * 4096 for i in range(4, 8)}


def test_paging_structure_cache_saves_reads() -> None:
    mode, mem, space = new_space("x86_64")
    space.map_range(U1, 0x30_0000, 4 * 4096, RW, page_sizes=(4096,)).ignore()
    mmu = MMU(mem, mode, tlb=TLBConfig(pwc=True))
    mmu.attach(space)
    for i in range(4):
        mmu.access(U1 + i * 4096)
    assert mmu.tlb.stats.reads == 4 + 3 * 1  # later walks start at the PT
