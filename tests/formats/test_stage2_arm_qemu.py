"""Arm two-stage translation (guest VA -> IPA -> PA) against QEMU 7.2's own walker.

pagewalk builds a guest's stage-1 tables (in guest-physical memory, at IPAs in the first and
last tables of a concatenated stage-2 start level: 2 tables with 4K, 16 with 16K, 4 with 64K)
and a stage 2 that scatters them over host RAM; QEMU (``-M virt,virtualization=on -cpu max``)
loads the host RAM, a stub at EL2 sets VTCR/VTTBR/HCR_EL2 and the EL1 stage-1 registers and
ERETs to EL1, and ``gva2gpa`` (QEMU's debug walk for the current EL1&0 regime:
``get_phys_addr_twostage``, whose stage-1 table reads go through stage 2 in
``S1_ptw_translate``; broken in 7.2.0, fixed in 7.2.1) answers for every VA. pagewalk's answer
is :func:`pagewalk.nested.nested_walk` over the same bytes. Cases: pages and blocks through
stage-2 pages and blocks, VAs unmapped at stage 1, final IPAs unmapped at stage 2, above the
IPA size, or in a page stage 2 makes write-only (a data read is a stage-2 Permission
fault), stage-1 tables at IPAs stage 2 does not map or maps write-only (S1PTW faults), both TTBRs,
random VAs. Arm ARM D8 (stage 2, concatenated tables, S1PTW); QEMU's monitor ``gva2gpa``.
"""

from __future__ import annotations

import random

import pytest

from oracles.qemu_arm import LOAD_BASE, SPSR_EL1H, QemuArm, el2_stub, version
from pagewalk.alloc.simple import SimpleFrameAllocator
from pagewalk.errors import PagingError
from pagewalk.formats import Perm, make_mode
from pagewalk.formats.aarch64 import AArch64Mode
from pagewalk.formats.stage2_arm import ArmStage2Mode
from pagewalk.memory.physical import PhysicalMemory
from pagewalk.mmu.arm import SCTLR_DEFAULT
from pagewalk.nested import GuestPhysical, Stage2, nested_walk, stage2_translate
from pagewalk.nested_machine import stage2_space
from pagewalk.space import AddressSpace
from pagewalk.walk import translate

pytestmark = pytest.mark.qemu_stub

MIB = 1 << 20
RAM = 32 * MIB  # host RAM loaded into QEMU, from LOAD_BASE
STUB = LOAD_BASE + 0x1_0000  # VA = IPA = PA: the EL2 stub, and EL1's `b .`
S2_FRAMES = LOAD_BASE + 4 * MIB  # stage-2 tables (host)
G_HOST = LOAD_BASE + 16 * MIB  # where the guest's 64 pages at IPA_HI land, permuted
BLK_HOST = 0x8000_0000  # the host block behind IPA_BLK (outside RAM: nothing reads it)
IPA_BLK = 0x1_0000_0000  # stage 2: one level-2 block
IPA_NONE = 0x3_0000_0000  # stage 2 maps nothing here
HCR_VM_RW = 1 << 31 | 1
RW = Perm.READ | Perm.WRITE
N_PAGES = 64
TG0 = {4: 0b00, 16: 0b10, 64: 0b01}
TG1 = {4: 0b10, 16: 0b01, 64: 0b11}
#: granule KiB -> (VTCR_EL2, concatenated start tables, bits one start table resolves, an IPA
#: in the last of them), all PS=48 (Arm ARM D8 "Concatenated translation tables"):
#: 4K T0SZ=24 SL0=1 (start L1, 2 tables of 512 GiB); 16K T0SZ=24 SL0=1 (L2, 16 of 64 GiB);
#: 64K T0SZ=20 SL0=1 (L2, 4 of 4 TiB)
GRANULES = {
    4: (24 | 1 << 6 | 5 << 16, 2, 39, 0x80_4000_0000),
    16: (24 | 1 << 6 | 0b10 << 14 | 5 << 16, 16, 36, 0xF0_4000_0000),
    64: (20 | 1 << 6 | 0b01 << 14 | 5 << 16, 4, 42, 0xC00_4000_0000),
}
REGS = ("VTCR_EL2", "VTTBR_EL2", "HCR_EL2", "TTBR0_EL1", "TTBR1_EL1", "TCR_EL1", "MAIR_EL1",
        "SCTLR_EL1", "SPSR_EL2", "ELR_EL2")  # fmt: skip


class Scene:
    """Host memory with both stages' tables, and the VAs to ask with the PA each should get
    where the test knows it by construction (None: unmapped, or not known)."""

    def __init__(self, granule: int, seed: int) -> None:
        rng = random.Random(seed)
        vtcr, tables, span, ipa_hi = GRANULES[granule]
        assert ipa_hi >> span == tables - 1
        p = self.page = granule << 10
        tcr = 16 | 16 << 16 | TG0[granule] << 14 | TG1[granule] << 30 | 5 << 32
        m = make_mode("aarch64", tcr=tcr)
        assert isinstance(m, AArch64Mode)
        self.mode, self.ipa_hi, self.ipa_wo = m, ipa_hi, ipa_hi + N_PAGES * p
        self.wo_host = G_HOST + N_PAGES * p
        s2mode = ArmStage2Mode(vtcr)
        assert s2mode.concatenated == tables
        block = self.block = s2mode.halves[0].levels[-2].leaf_size  # a level-2 block
        guest = PhysicalMemory(regions=[(ipa_hi, 2 * N_PAGES * p)])
        s1 = AddressSpace(m, guest, SimpleFrameAllocator(ipa_hi, N_PAGES // 2 * p))
        self.vas: dict[int, int | None] = {}

        def put(va: int, ipa: int, size: int, perm: str = "rw") -> None:
            s1.map(va, ipa, size, Perm.parse(perm)).ignore()
            for off in (0, size // 2 + 8, size - 8):
                self.vas[va + off] = self.hpa(ipa + off)
            self.vas.setdefault(va + size, None)

        stub_page = STUB & -p
        put(stub_page, stub_page, p, "rx")
        data = 0x1230_0000
        for i in range(8):  # pages onto IPA_HI's data half, scattered by stage 2
            put(data + i * p, ipa_hi + (N_PAGES // 2 + rng.randrange(N_PAGES // 2)) * p, p)
        put(1 << 32, IPA_BLK, block)  # stage-1 block onto a stage-2 block
        put((1 << 32) + block + p, IPA_BLK + 5 * p, p)  # page onto a stage-2 block
        big = 0x8000_0000
        put(big, ipa_hi & -block, block)  # a block over IPA_HI: partly mapped at stage 2
        for _ in range(24):
            off = (ipa_hi & (block - 1)) + rng.randrange(-8 * N_PAGES, 8 * N_PAGES) * (p // 4)
            self.vas[big + off] = self.hpa((ipa_hi & -block) + off)
        faults = 0x2000_0000
        put(faults, IPA_NONE, p)  # final IPA: stage-2 translation fault
        put(faults + p, self.ipa_wo, p)  # final IPA: stage-2 permission fault (read)
        put(faults + 2 * p, 0x200_0000_0000 << (granule == 64) * 4, p)  # above the IPA size
        put(0xFFFF_0000_0010_0000, ipa_hi + (N_PAGES - 3) * p, p)  # TTBR1
        put(0xFFFF_8000_0000_0000, IPA_BLK, block)
        # stage-1 tables stage 2 cannot read: two free entries of the level-2 table serving
        # `data` point to IPA_NONE and to IPA_WO (write-only), which holds a copy of a valid
        # level-3 table, so only the stage-2 check stops the walk (an S1PTW fault)
        steps = s1.walk(data).steps
        l2, l3 = steps[-2].entry_pa & -p, steps[-1].entry_pa & -p
        shift, width = steps[-2].level.shift, steps[-2].level.bits
        free = [i for i in range(1, 1 << width) if not guest.read_entry(l2 + 8 * i, 8)][::7][:2]
        guest.write(l2 + 8 * free[0], (IPA_NONE | 3).to_bytes(8, "little"))
        guest.write(l2 + 8 * free[1], (self.ipa_wo | 3).to_bytes(8, "little"))
        guest.write(self.ipa_wo, guest.read(l3, p))
        for i in free:
            base = (data & -(1 << (shift + width))) | i << shift
            for off in (0x0, (data - (data & -(1 << shift))), (1 << shift) - p):
                self.vas[base + off] = None
        for hi in (0, 0xFFFF_0000_0000_0000):
            for _ in range(40):
                self.vas.setdefault(hi | rng.randrange(1 << 48), None)

        self.host = host = PhysicalMemory(regions=[(LOAD_BASE, RAM)])
        s2 = stage2_space(s2mode, host, SimpleFrameAllocator(S2_FRAMES, 4 * MIB))
        s2.map(stub_page, stub_page, p, RW | Perm.EXEC).ignore()
        for ipa in range(ipa_hi, ipa_hi + N_PAGES * p, p):
            s2.map(ipa, self.hpa(ipa) or 0, p, RW).ignore()
            host.write(self.hpa(ipa) or 0, guest.read(ipa, p))
        s2.map(self.ipa_wo, self.wo_host, p, Perm.WRITE).ignore()
        host.write(self.wo_host, guest.read(self.ipa_wo, p))
        s2.map(IPA_BLK, BLK_HOST, block, RW).ignore()
        self.stage2 = Stage2(s2mode, (s2.roots[0],), "arm", f"VTTBR_EL2={s2.roots[0]:#x}")
        self.roots = s1.roots
        code = el2_stub(REGS)
        host.write(STUB, code)
        self.el1_pc = STUB + len(code) - 4
        self.regs = {
            "VTCR_EL2": vtcr,
            "VTTBR_EL2": s2mode.vttbr(s2.roots[0]),
            "HCR_EL2": HCR_VM_RW,
            "TTBR0_EL1": m.ttbr(s1.roots[0]),
            "TTBR1_EL1": m.ttbr(s1.roots[1]),
            "TCR_EL1": m.tcr,
            "MAIR_EL1": m.mair,
            "SCTLR_EL1": SCTLR_DEFAULT,
            "SPSR_EL2": SPSR_EL1H,
            "ELR_EL2": self.el1_pc,
        }

    def hpa(self, ipa: int) -> int | None:
        """Where the test's stage 2 puts ``ipa`` (None: unmapped, or not readable)."""
        p = self.page
        if STUB & -p <= ipa < (STUB & -p) + p:
            return ipa
        if self.ipa_hi <= ipa < self.ipa_hi + N_PAGES * p:
            page = (ipa - self.ipa_hi) // p
            return G_HOST + ((page * 37) % N_PAGES) * p + (ipa & (p - 1))
        if IPA_BLK <= ipa < IPA_BLK + self.block:
            return BLK_HOST + (ipa - IPA_BLK)
        return None

    def pagewalk(self, va: int) -> int | None:
        """pagewalk's two-stage answer for a data read at EL1."""
        return nested_walk(self.host, self.mode, self.roots, self.stage2, va).pa

    def ask_qemu(self) -> dict[int, int | None]:
        """QEMU's ``gva2gpa`` for every VA, after the stub has put the CPU at EL1."""
        blob = bytes(self.host.read(LOAD_BASE, RAM))
        with QemuArm([(LOAD_BASE, blob)], machine="virt,virtualization=on") as q:
            q.run_el2_stub(STUB, self.regs, self.el1_pc)
            return {va: q.gva2gpa(va) for va in self.vas}


@pytest.fixture(scope="module", params=[4, 16, 64], ids=["4K", "16K", "64K"])
def scene_and_qemu(request: pytest.FixtureRequest) -> tuple[Scene, dict[int, int | None]]:
    if version() < (7, 2, 1):  # 7.2.0's debug walk failed every stage-1 table read via stage 2
        pytest.skip("QEMU before 7.2.1 (fix 4a1103afb1, 'Fix in_debug path in S1_ptw_translate')")
    scene = Scene(request.param, request.param)
    return scene, scene.ask_qemu()


def test_two_stage_walk_matches_qemu(scene_and_qemu: tuple[Scene, dict[int, int | None]]) -> None:
    scene, qemu = scene_and_qemu
    mapped = 0
    for va, want in scene.vas.items():
        got = scene.pagewalk(va)
        assert qemu[va] == got, f"VA {va:#x}: QEMU {qemu[va]}, pagewalk {got}"
        assert want is None or got == want, f"VA {va:#x}: meant {want:#x}, got {got}"
        mapped += got is not None
    assert mapped >= 30


def composed(scene: Scene, va: int, *, s2_tables: bool = True, s2_final: bool = True) -> int | None:
    """A copy of the composition, with switches to plant bugs: stage 1 over guest-physical
    memory (or, planted, over host memory as if IPAs were PAs), then stage 2 on the final IPA
    (or, planted, none)."""
    tables = GuestPhysical(scene.host, scene.stage2, "read", False) if s2_tables else scene.host
    try:
        gpa = translate(tables, scene.mode, scene.roots, va)[0]
    except PagingError:  # a stage-2 abort on a table read, or a read outside host RAM
        return None
    if gpa is None or not s2_final:
        return gpa
    return stage2_translate(scene.host, scene.stage2, gpa, "read", False).pa


@pytest.mark.parametrize(
    ("planted", "kw"),
    [
        ("none", {}),
        ("table reads skip stage 2", {"s2_tables": False}),
        ("final IPA skips stage 2", {"s2_final": False}),
    ],
)
def test_the_oracle_catches_planted_composition_bugs(
    scene_and_qemu: tuple[Scene, dict[int, int | None]], planted: str, kw: dict[str, bool]
) -> None:
    scene, qemu = scene_and_qemu
    wrong = [va for va in scene.vas if composed(scene, va, **kw) != qemu[va]]
    if planted == "none":
        assert wrong == []
    else:
        assert len(wrong) >= 10, f"{planted}: QEMU disagrees on only {len(wrong)} VAs"
