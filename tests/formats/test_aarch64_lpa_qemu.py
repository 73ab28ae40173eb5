"""AArch64 52-bit translation (FEAT_LPA, FEAT_LVA, FEAT_LPA2) against QEMU 7.2's own MMU.

pagewalk builds the tables (:class:`AddressSpace`), QEMU (``-M virt -cpu max``, which implements
FEAT_LPA2 and FEAT_LPA) loads them, takes TTBR0/1_EL1, TCR_EL1, MAIR_EL1 and SCTLR_EL1 from a
stub it runs itself (:mod:`oracles.qemu_arm`), and ``gva2gpa`` answers for every VA: mapped ones
(blocks at level 0 with 4K/DS, level 1 with 16K/DS and 64K/LPA, pages with PAs above 2**48),
their unmapped neighbours, and random VAs through populated and empty level -1 entries. The
translation rules are those of Arm ARM D8.2-D8.3 and "52-bit addressing".
"""

from __future__ import annotations

import random

import pytest

from oracles.qemu_arm import LOAD_BASE, QemuArm, stub
from pagewalk.alloc.simple import SimpleFrameAllocator
from pagewalk.formats import make_mode
from pagewalk.formats.aarch64 import AArch64Mode
from pagewalk.formats.base import Perm
from pagewalk.memory.physical import PhysicalMemory
from pagewalk.mmu.arm import SCTLR_DEFAULT
from pagewalk.space import AddressSpace
from pagewalk.walk import translate

# selected with -m qemu_stub, which CI runs once QEMU is installed
pytestmark = pytest.mark.qemu_stub

TG0 = {12: 0b00, 16: 0b01, 14: 0b10}
TG1 = {12: 0b10, 16: 0b11, 14: 0b01}
DS = 1 << 59
RAM = 32 << 20
STUB = LOAD_BASE + 0x1_0000
REGS = ("TTBR0_EL1", "TTBR1_EL1", "TCR_EL1", "MAIR_EL1", "SCTLR_EL1")


def tcr(granule: int, tsz: int, ips: int = 6, ds: bool = False) -> int:
    return tsz | tsz << 16 | TG0[granule] << 14 | TG1[granule] << 30 | ips << 32 | (DS if ds else 0)


def build(m: AArch64Mode, seed: int) -> tuple[PhysicalMemory, AddressSpace, dict[int, int | None]]:
    """Tables in QEMU's RAM: the stub identity-mapped, then blocks and pages of every size at
    random VAs in both halves with random PAs up to the output size. Returns the VAs to ask,
    with the PA each was mapped to where the test knows it (None: unmapped or not known)."""
    rng = random.Random(seed)
    mem = PhysicalMemory(regions=[(LOAD_BASE, RAM)])
    space = AddressSpace(m, mem, SimpleFrameAllocator(LOAD_BASE + (8 << 20), RAM - (8 << 20)))
    page = m.page_size
    space.map_range(STUB & -page, STUB & -page, page, Perm.parse("rx")).ignore()
    vas: dict[int, int | None] = {STUB: STUB}
    for half in m.halves:
        sizes = sorted({x.leaf_size for x in half.levels if x.leaf_size})
        for size in sizes * 2:
            for _ in range(20):
                va = half.va_start + rng.randrange((half.va_end - half.va_start) // size) * size
                if space.translate(va) is not None or abs(va - STUB) < size:
                    continue
                pa = rng.randrange((1 << m.pa_bits) // size) * size
                perm = Perm.parse(rng.choice(["rw", "rxu", "rg"]))
                space.map_range(va, pa, size, perm).ignore()
                off = rng.randrange(size)
                vas.update({va: pa, va + size - 8: pa + size - 8, va + off: pa + off})
                vas.setdefault(va + size, None)
                vas.setdefault(va - 8, None)
                break
        span = half.va_end - half.va_start
        for _ in range(40):
            vas.setdefault(half.va_start + rng.randrange(span), None)
    code = stub(REGS)
    mem.write(STUB, code)
    return mem, space, vas


def compare(m: AArch64Mode, seed: int) -> int:
    """Ask QEMU about every VA of a fresh build; return how many were mapped."""
    mem, space, vas = build(m, seed)
    roots = space.roots
    regs = {
        "TTBR0_EL1": m.ttbr(roots[0]),
        "TTBR1_EL1": m.ttbr(roots[1]),
        "TCR_EL1": m.tcr,
        "MAIR_EL1": m.mair,
        "SCTLR_EL1": SCTLR_DEFAULT,
    }
    mapped = 0
    with QemuArm([(LOAD_BASE, bytes(mem.read(LOAD_BASE, RAM)))]) as q:
        q.run_stub(STUB, regs)
        for va, meant in vas.items():
            va &= (1 << 64) - 1
            pa = translate(mem, m, roots, va)[0]
            got = q.gva2gpa(va)
            assert got == pa, f"{m.describe()}: VA {va:#x}"
            assert meant is None or got == meant, f"{m.describe()}: VA {va:#x} meant {meant:#x}"
            mapped += pa is not None
    return mapped


def test_lpa2_4k_52bit_va_against_qemu() -> None:
    """4K, DS=1, 52-bit VAs (level -1), 52-bit PAs: the fast one, run by default."""
    m = make_mode("aarch64", tcr=tcr(12, 12, ds=True))
    assert isinstance(m, AArch64Mode)
    assert compare(m, 1) > 20


@pytest.mark.qemu_stub
@pytest.mark.parametrize(
    ("granule", "tsz", "ips", "ds", "seed"),
    [
        (12, 12, 6, True, 2),
        (12, 14, 6, True, 3),  # a 4-entry level -1 table
        (12, 16, 6, True, 4),  # 48-bit VAs, 52-bit PAs, L0 blocks
        (12, 20, 5, True, 5),  # DS with a 48-bit output size
        (14, 12, 6, True, 6),
        (14, 17, 6, True, 7),
        (16, 12, 6, False, 8),  # FEAT_LVA + FEAT_LPA
        (16, 16, 6, False, 9),
        (16, 16, 5, False, 10),  # 64K with a 48-bit IPS: no L1 block, bits [15:12] ignored
    ],
)
def test_52bit_modes_against_qemu(granule: int, tsz: int, ips: int, ds: bool, seed: int) -> None:
    m = make_mode("aarch64", tcr=tcr(granule, tsz, ips, ds))
    assert isinstance(m, AArch64Mode)
    assert compare(m, seed) > 20


@pytest.mark.qemu_stub
def test_qemu_ignores_oa_51_50_below_a_52_bit_output_size() -> None:
    """A known difference, kept visible: with DS=1 and IPS=48, a page descriptor with bits [9:8]
    set holds OA[51:50] beyond the output size, an Address size fault in the Arm ARM's
    pseudocode (AArch64.LeafBase, AArch64.OAOutOfRange), which pagewalk reports; QEMU 7.2
    ignores the bits and translates."""
    m = make_mode("aarch64", tcr=tcr(12, 16, ips=5, ds=True))
    assert isinstance(m, AArch64Mode)
    mem, space, _ = build(m, 11)
    va = 0x7000_0000_0000
    space.map_range(va, 0x1234_5000, 4096, Perm.parse("rw")).ignore()
    leaf = space.walk(va).steps[-1]
    mem.write(leaf.entry_pa, (leaf.raw | 0x100).to_bytes(8, "little"))
    fault = translate(mem, m, space.roots, va)[2]
    assert fault is not None and fault.kind == "address-size"
    regs = dict(zip(REGS, (m.ttbr(space.roots[0]), m.ttbr(space.roots[1]), m.tcr, m.mair,
                           SCTLR_DEFAULT), strict=True))  # fmt: skip
    with QemuArm([(LOAD_BASE, bytes(mem.read(LOAD_BASE, RAM)))]) as q:
        q.run_stub(STUB, regs)
        assert q.gva2gpa(va) == 0x1234_5000
