"""Two-stage walks (guest VA -> guest PA -> host PA) against a composition of separate walks.

The nested walk reads stage-1 tables through stage 2 (an adapter under the one walker). The
reference here never does: it walks stage 1 directly over the guest's own RAM, and checks each
guest-physical address it touched (every stage-1 entry, then the final GPA) with the manuals'
stage-2 procedures written out in ``tests/oracles/stage2_pseudo.py``. The fault reports are
checked bit by bit against the manuals' register layouts (SDM table 28-7 exit qualification, Arm
ESR_EL2/HPFAR_EL2, RISC-V htval/htinst, AMD EXITINFO1).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nested_scenes import MIB, PAIRS, Scene, build, hpa_of
from pagewalk.errors import PageFault
from pagewalk.formats import Perm
from pagewalk.mmu.access import check_access
from pagewalk.nested_faults import REGIMES
from pagewalk.walk import walk

URW = Perm.READ | Perm.WRITE | Perm.USER
KRX = Perm.READ | Perm.EXEC
MAPS = [
    (0x40_0000, 0x20_0000, 4096, URW),
    (0x40_1000, 0x8000, 4096, KRX),
    (0x60_0000, 0, 2 * MIB, URW),
    (0x7000_0000, 0x30_1000, 4096, Perm.READ),
    (0x40_2000, 0x9000, 4096, KRX | Perm.USER),
]


SPLIT_EXEC = {"ept": 1 << 10, "arm": 1 << 53}


def expect(scene: Scene, va: int, access: str, user: bool) -> tuple[object, ...]:
    """The outcome composed from a direct stage-1 walk and the stage-2 pseudo-code."""
    regime = REGIMES[scene.stage2.regime]
    table_write = regime.table_write(scene.stage2.mode.facts.table_accessed)

    def s2(gpa: int, acc: str, usr: bool) -> tuple[str, int | None] | None:
        out = scene.s2_oracle(gpa)
        assert out is not None
        if out.fault is not None:
            return out.fault
        ok = {"read": out.r, "write": out.w, "exec": out.xu if usr else out.xs}[acc]
        return None if ok else ("permission", None)

    mode, roots = scene.s1.mode, scene.s1.roots
    for step in walk(scene.guest, mode, roots, va).steps:
        bad = s2(step.entry_pa, "write" if table_write else "read", regime.table_user)
        if bad is not None:
            return ("table", step.level.number, step.entry_pa, *bad)
    got = check_access(scene.guest, mode, roots, va, access, user)
    if isinstance(got, PageFault):
        return ("stage1", got.kind, got.level)
    bad = s2(got, access, user or regime.all_user)
    if bad is not None:
        return ("final", got, *bad)
    return ("ok", hpa_of(got))


def outcome(scene: Scene, va: int, access: str, user: bool) -> tuple[object, ...]:
    w = scene.machine.walk(va, access, user)
    f = w.fault
    if f is None:
        return ("ok", w.pa)
    if f.stage == 1:
        return ("stage1", f.kind, f.level)
    level = None if f.kind == "permission" else f.level
    if f.on_table:
        return ("table", f.s1_level, f.gpa, f.kind, level)
    return ("final", f.gpa, f.kind, level)


@pytest.mark.parametrize(("s1", "regime"), PAIRS)
def test_translates_through_both_stages(s1: str, regime: str) -> None:
    scene = build(s1, regime, MAPS)
    for va, gpa, _size, perm in MAPS:
        w = scene.machine.walk(va + 0x123, user=bool(perm & Perm.USER))
        assert (w.fault, w.gpa, w.pa) == (None, gpa + 0x123, hpa_of(gpa + 0x123))
        assert len(w.s1_tables) == len(w.s1_steps)  # every stage-1 read went through stage 2
        assert w.rights is not None and w.s2_rights is not None
    w = scene.machine.walk(0x40_1000, "write")  # stage 1 refuses: a guest fault
    assert w.fault is not None and w.fault.stage == 1
    assert scene.machine.walk(0x60_1234, user=True).page_size == 4096  # 2M guest page, 4K s2


@pytest.mark.parametrize(("s1", "regime"), [p for p in PAIRS if p[1] != "npt"])
def test_maps_nested(s1: str, regime: str) -> None:
    scene = build(s1, regime, MAPS)
    rows = list(scene.machine.maps())
    # each listed byte agrees with a walk, and every mapped VA is listed
    for row in rows:
        for off in (0, row.size - 1):
            assert (
                scene.machine.walk(row.va + off, user=bool(row.perm & Perm.USER)).pa == row.pa + off
            )
    covered = sum(r.size for r in rows)
    assert covered == sum(size for _va, _gpa, size, _p in MAPS)
    scene.s2.unmap_range(0x20_0000, 2 * MIB).ignore()  # the 2-MiB stage-2 page goes
    assert sum(r.size for r in scene.machine.maps()) == 2 * 4096 + 2 * MIB


def damage(scene: Scene, data: st.DataObject) -> None:
    """Unmap or restrict a few stage-2 pages, tables' pages included."""
    s1, roots = scene.s1.mode, scene.s1.roots
    steps = [s for va, *_ in MAPS for s in walk(scene.guest, s1, roots, va).steps]
    tables = sorted({s.entry_pa & ~0xFFF for s in steps})
    pages = st.one_of(st.sampled_from(tables), st.sampled_from([0x8000, 0x9000, 2 * MIB]))
    for _ in range(data.draw(st.integers(0, 3), label="n")):
        gpa = data.draw(pages, label="page")
        size = 2 * MIB if gpa >= 2 * MIB else 4096
        # (no execute-only EPT pages: the builder and enumeration take bit 0 as the valid bit,
        # see test_ept_execute_only_enumerated)
        perm = data.draw(st.sampled_from([None, Perm.READ, KRX, Perm.READ | Perm.WRITE]))
        s2walk = scene.s2.walk(gpa)
        if s2walk.fault is not None:
            continue  # already unmapped
        split = SPLIT_EXEC.get(scene.stage2.regime, 0)
        if split and data.draw(st.booleans(), label="split exec"):
            # user and supervisor execute differ: EPT UX (bit 10), Arm XN[0] (bit 53)
            leaf = s2walk.steps[-1]
            scene.host.write_entry(leaf.entry_pa, 8, leaf.raw ^ split)
            continue
        if perm is None:
            scene.s2.unmap_range(gpa, size).ignore()
        else:
            scene.s2.protect_range(gpa, size, perm | Perm.USER).ignore()


@settings(max_examples=60)
@given(data=st.data(), pair=st.sampled_from([p for p in PAIRS if p[1] != "npt"]))
def test_faults_match_composition(data: st.DataObject, pair: tuple[str, str]) -> None:
    scene = build(*pair, MAPS)
    damage(scene, data)
    for va, _gpa, _size, _perm in MAPS:
        for access in ("read", "write", "exec"):
            for user in (False, True):
                want = expect(scene, va + 8, access, user)
                assert outcome(scene, va + 8, access, user) == want, (hex(va), access, user)


def test_ept_execute_only_enumerated() -> None:
    scene = build("x86_64", "ept", MAPS)
    scene.s2.protect_range(0x8000, 4096, Perm.EXEC | Perm.USER).ignore()
    assert scene.machine.walk(0x40_1000, "exec").ok  # the one walker decodes it
    assert any(r.gpa == 0x8000 for r in scene.machine.maps())


# ------------------------------------------------------------- the registers, by hand
def _table_page(scene: Scene, va: int, number: int) -> int:
    steps = walk(scene.guest, scene.s1.mode, scene.s1.roots, va).steps
    return next(s.entry_pa for s in steps if s.level.number == number)


def test_ept_reports() -> None:
    scene = build("x86_64", "ept_ad", MAPS)
    pte_gpa = _table_page(scene, 0x40_0000, 1)
    scene.s2.unmap_range(pte_gpa & ~0xFFF, 4096).ignore()
    f = scene.machine.walk(0x40_0000, "exec").fault
    assert f is not None and (f.stage, f.on_table, f.s1_level, f.gpa) == (2, True, 1, pte_gpa)
    # a paging-structure access with EPT A/D on: read and write (bits 0, 1), GLA valid (7),
    # not the final translation (bit 8 clear), the entry not present (bits 3-6 clear)
    assert f.report == {"exit": "EPT violation", "exit_reason": 48, "qualification": 0b1000_0011,
                        "gpa": pte_gpa, "gla": 0x40_0000}  # fmt: skip
    scene = build("x86_64", "ept", MAPS)
    scene.s2.protect_range(0x20_0000, 2 * MIB, Perm.READ | Perm.EXEC).ignore()
    f = scene.machine.walk(0x40_0010, "write", user=True).fault
    # a data write (bit 1) to a page readable (3), not writable (4), executable (5), user-exec
    # (6, MBEC); GLA valid (7) and final (8); a user (9), writable (10), XD (11) linear address
    assert f is not None and f.report["qualification"] == 0b1111_1110_1010
    assert f.report["gpa"] == 0x20_0010


def test_arm_and_riscv_and_npt_reports() -> None:
    scene = build("aarch64", "arm", MAPS)
    l2 = _table_page(scene, 0x40_0000, 2)
    scene.s2.unmap_range(l2 & ~0xFFF, 4096).ignore()
    f = scene.machine.walk(0x40_0000, "write").fault
    assert f is not None and f.on_table and f.s1_level == 2
    # EC 0x24 (data abort from a lower EL), IL, S1PTW (bit 7), WnR 0 (a read of a table),
    # DFSC translation fault level 3 (0b000111); HPFAR_EL2.FIPA = IPA[51:12] in bits 43:4
    assert f.report["esr_el2"] == (0x24 << 26) | (1 << 25) | (1 << 7) | 0b000111
    assert f.report["hpfar_el2"] == (l2 >> 12) << 4
    scene = build("sv39", "riscv", MAPS)
    pte = _table_page(scene, 0x40_1000, 0)
    scene.s2.unmap_range(pte & ~0xFFF, 4096).ignore()
    f = scene.machine.walk(0x40_1000, "exec").fault
    assert f is not None and f.report["cause"] == 20  # instruction guest-page fault
    assert (f.report["htval"], f.report["htinst"], f.report["stval"]) == (pte >> 2, 0x3000,
                                                                            0x40_1000)  # fmt: skip
    scene = build("x86_64", "npt", MAPS)
    scene.s2.protect_range(0x8000, 4096, Perm.READ | Perm.WRITE).ignore()  # U/S=0: no access
    f = scene.machine.walk(0x40_1000, "exec").fault
    # P (present), US (always), ID (fetch), bit 32 (final GPA); EXITINFO2 the GPA
    assert f is not None and f.report["exitinfo1"] == (1 | 4 | 16 | (1 << 32))
    assert f.report["exitinfo2"] == 0x8000
