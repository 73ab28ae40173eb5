"""Access rules the Unicorn oracle cannot reach, checked against the manuals' own tables.

One idea: each test sets one control-register knob (x86 PKRU, EFLAGS.AC, CR0.WP; Arm PAN, WXN,
TCR_EL1.HA/HD with DBM, HPD; RISC-V SUM, MXR, Svade/Svadu) on a one-page space and checks the
outcome the manual states (Intel SDM vol. 3A §4.6-4.8; Arm ARM D8.4-D8.5; RISC-V privileged spec),
including the x86 error code, the Arm fault status code and the RISC-V cause.
"""

from __future__ import annotations

import pytest
from mmu_builders import TCR_40, new_space

from pagewalk.errors import PageFault
from pagewalk.formats import aarch64 as arm
from pagewalk.formats import riscv as rv
from pagewalk.formats import x86_bits as x86
from pagewalk.formats.aarch64 import TCR_HA, TCR_HD, TCR_HPD0
from pagewalk.formats.base import Perm
from pagewalk.mmu import MMU, ArmRegs, RiscvRegs, X86Regs, check_access
from pagewalk.mmu.regs import EFLAGS_AC, SCTLR_DEFAULT, SCTLR_WXN
from pagewalk.mmu.walker import Translation

VA, PA = 0x40_0000, 0x30_0000
R, W, X, U = Perm.READ, Perm.WRITE, Perm.EXEC, Perm.USER


def one_page(name: str, perm: Perm, regs: object = None, **mode_kw: int) -> MMU:
    mode, mem, space = new_space(name, **mode_kw)
    space.map(VA, PA, perm=perm).ignore()
    mmu = MMU(mem, mode, regs=regs)  # type: ignore[arg-type]
    mmu.attach(space)
    return mmu


def outcome(mmu: MMU, kind: str, priv: str) -> int | tuple[str, int | None, int | None]:
    mmu.tlb.flush_all()
    try:
        return mmu.access(VA, kind, priv)
    except PageFault as f:
        return (f.kind, f.level, f.code)


def leaf(mmu: MMU) -> Translation:
    t = mmu.walk(VA)
    assert isinstance(t, Translation)
    return t


def set_leaf(mmu: MMU, raw: int) -> None:
    mmu.mem.write_entry(leaf(mmu).leaf_pa, mmu.mode.entry_size, raw)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------- x86
def _x86(perm: Perm, key: int = 0, **regs: int) -> MMU:
    mmu = one_page("x86_64", perm, X86Regs(**regs))
    set_leaf(mmu, leaf(mmu).leaf_raw | (key << 59))
    return mmu


PKE = x86.CR4_PKE | x86.CR4_PAE
PK_CASES = [
    # (pkru, access, privilege, expected code or PA)  - SDM §4.6.2
    (0b01 << 6, "read", "user", 0x25),  # AD3: no data access; P|U/S|PK
    (0b01 << 6, "read", "supervisor", 0x21),  # AD applies to supervisor accesses to user pages
    (0b01 << 6, "exec", "user", PA),  # keys never restrict fetches
    (0b10 << 6, "read", "user", PA),  # WD3 allows reads
    (0b10 << 6, "write", "user", 0x27),
    (0b10 << 6, "write", "supervisor", 0x23),  # with CR0.WP=1
    (0b11 << 4, "read", "user", PA),  # another key's bits do not matter
]


@pytest.mark.parametrize(("pkru", "access", "priv", "want"), PK_CASES)
def test_x86_protection_keys(pkru: int, access: str, priv: str, want: int) -> None:
    mmu = _x86(R | W | X | U, key=3, cr0=x86.CR0_WP | 1, cr4=PKE, pkru=pkru)
    got = outcome(mmu, access, priv)
    assert got == want if want == PA else got == ("protection", 1, want)


def test_x86_wd_ignored_for_supervisor_without_wp_and_keys_off_without_pke() -> None:
    assert outcome(_x86(R | W | U, key=3, cr0=1, cr4=PKE, pkru=0b10 << 6), "write", "s") == PA
    assert outcome(_x86(R | W | U, key=3, cr0=1, cr4=x86.CR4_PAE, pkru=0xFF), "read", "u") == PA


def test_x86_smap_obeys_eflags_ac_and_wp_off_allows_supervisor_writes() -> None:
    smap = x86.CR4_SMAP | x86.CR4_PAE
    assert outcome(_x86(R | U, cr4=smap), "read", "supervisor") == ("protection", 1, 0x1)
    assert outcome(_x86(R | U, cr4=smap, eflags=EFLAGS_AC), "read", "supervisor") == PA
    assert outcome(_x86(R, cr0=x86.CR0_WP), "write", "supervisor") == ("protection", 1, 0x3)
    assert outcome(_x86(R, cr0=1), "write", "supervisor") == PA


def test_x86_smep_and_nx_set_the_id_bit() -> None:
    smep = x86.CR4_SMEP | x86.CR4_PAE
    assert outcome(_x86(R | X | U, cr4=smep), "exec", "supervisor") == ("protection", 1, 0x11)
    assert outcome(_x86(R | U, cr4=x86.CR4_PAE), "exec", "user") == ("protection", 1, 0x15)


def test_x86_sets_a_everywhere_and_d_on_write_only() -> None:
    mmu = one_page("x86_64", R | W)
    mmu.access(VA)
    path = leaf(mmu).path
    assert all(raw & x86.A for _, raw, _, _ in path) and not path[-1][1] & x86.D
    mmu.access(VA, "write")  # a write hit on a clean entry walks again to set D
    assert leaf(mmu).leaf_raw & x86.D and mmu.tlb.stats.walks == 2


def test_x86_fault_on_a_cached_entry_drops_it() -> None:
    mmu = one_page("x86_64", R)
    mmu.access(VA)
    with pytest.raises(PageFault):
        mmu.access(VA, "write")
    assert len(mmu.tlb) == 0  # SDM §4.10.4.1: a #PF invalidates the faulting page


# --------------------------------------------------------------------------- AArch64
def _arm(perm: Perm, regs: ArmRegs | None = None, tcr: int = TCR_40) -> MMU:
    return one_page("aarch64", perm, regs or ArmRegs(), tcr=tcr)


def test_arm_pan_blocks_el1_data_access_to_el0_memory_but_not_fetches() -> None:
    pan = ArmRegs(pan=True)
    assert outcome(_arm(R | U, pan), "read", "EL1") == ("permission", 3, 0x0F)
    assert outcome(_arm(R, pan), "read", "EL1") == PA
    assert outcome(_arm(R | X | U, pan), "read", "EL0") == PA


def test_arm_wxn_and_implicit_pxn() -> None:
    wxn = ArmRegs(sctlr=SCTLR_DEFAULT | SCTLR_WXN)
    assert outcome(_arm(R | W | X, wxn), "exec", "EL1") == ("permission", 3, 0x0F)
    assert outcome(_arm(R | X), "exec", "EL1") == PA
    mmu = _arm(R | W | U)
    set_leaf(mmu, leaf(mmu).leaf_raw & ~arm.PXN)  # EL0-writable: never EL1-executable
    assert outcome(mmu, "exec", "EL1") == ("permission", 3, 0x0F)


def test_arm_access_flag_fault_unless_hardware_updates_it() -> None:
    mmu = _arm(R)
    set_leaf(mmu, leaf(mmu).leaf_raw & ~arm.AF)
    assert outcome(mmu, "read", "EL1") == ("access-flag", 3, 0x0B)
    ha = _arm(R, tcr=TCR_40 | TCR_HA)
    set_leaf(ha, leaf(ha).leaf_raw & ~arm.AF)
    assert outcome(ha, "read", "EL1") == PA and leaf(ha).leaf_raw & arm.AF


def test_arm_dbm_write_clears_ap2_only_with_hd() -> None:
    for tcr, want in ((TCR_40 | TCR_HA | TCR_HD, PA), (TCR_40 | TCR_HA, ("permission", 3, 0x0F))):
        mmu = _arm(R, tcr=tcr)
        set_leaf(mmu, leaf(mmu).leaf_raw | arm.DBM)
        assert outcome(mmu, "read", "EL1") == PA
        assert outcome(mmu, "write", "EL1") == want
        assert bool(leaf(mmu).leaf_raw & arm.AP2) == (want != PA)


def test_arm_aptable_and_hpd() -> None:
    mmu = _arm(R | W)
    l2 = leaf(mmu).path[-2]
    mmu.mem.write_entry(l2[0], 8, l2[1] | arm.AP_TABLE1)  # type: ignore[attr-defined]
    assert outcome(mmu, "write", "EL1") == ("permission", 3, 0x0F)
    hpd = _arm(R | W, tcr=TCR_40 | TCR_HPD0)
    l2 = leaf(hpd).path[-2]
    hpd.mem.write_entry(l2[0], 8, l2[1] | arm.AP_TABLE1)  # type: ignore[attr-defined]
    assert outcome(hpd, "write", "EL1") == PA


# ---------------------------------------------------------------------------- RISC-V
def test_riscv_sum_and_mxr() -> None:
    assert outcome(one_page("sv39", R | U, RiscvRegs(svadu=True)), "read", "S")[0] == "page-fault"
    assert outcome(one_page("sv39", R | U, RiscvRegs(sum=True, svadu=True)), "read", "S") == PA
    assert outcome(one_page("sv39", R | X | U, RiscvRegs(sum=True)), "exec", "S") == (
        "page-fault",
        0,
        12,
    )
    xo = one_page("sv39", X, RiscvRegs(svadu=True))
    assert outcome(xo, "read", "S") == ("page-fault", 0, 13)
    xo.regs.mxr = True  # type: ignore[union-attr]
    assert outcome(xo, "read", "S") == PA


def test_riscv_svade_faults_svadu_updates() -> None:
    for svadu in (False, True):
        mmu = one_page("sv39", R | W, RiscvRegs(svadu=svadu))
        set_leaf(mmu, leaf(mmu).leaf_raw & ~(rv.A | rv.D))
        got = outcome(mmu, "write", "S")
        assert got == (PA if svadu else ("page-fault", 0, 15))
        assert bool(leaf(mmu).leaf_raw & rv.D) == svadu


# ------------------------------------------------------------------- the CLI contract
def test_check_access_returns_pa_or_fault_with_json() -> None:
    mmu = one_page("x86_64", R)
    roots = mmu.cpu.roots
    assert check_access(mmu.mem, mmu.mode, roots, VA + 5, "read", False) == PA + 5
    fault = check_access(mmu.mem, mmu.mode, roots, VA, "write", "user")
    assert isinstance(fault, PageFault)
    assert fault.to_json() == {"kind": "protection", "level": 1, "code": 7}
    arm_mmu = _arm(R)
    fault = check_access(arm_mmu.mem, arm_mmu.mode, arm_mmu.cpu.roots, VA, "execute", "EL0")
    assert isinstance(fault, PageFault) and fault.to_json()["kind"] == "permission"
    before = leaf(mmu).leaf_raw
    check_access(mmu.mem, mmu.mode, roots, VA, "read", False)
    assert leaf(mmu).leaf_raw == before, "check_access leaves A/D alone unless update=True"
