"""An entry with a reserved bit set, or of a reserved type, faults: in translate() and in batches.

Each case maps real pages, then sets one reserved bit (or writes one reserved encoding) in one
entry of the walk, and checks the fault the manuals give, at the level of that entry:

- x86 (Intel SDM vol. 3A §4.3-4.5, tables 4-4 to 4-20; #PF error code §4.7): bits 51:MAXPHYADDR
  of a PTE or a table entry, bits 20:13 of a 2 MiB PDE and 29:13 of a 1 GiB PDPTE, PS in a
  PML4E/PML5E (and in a PDPTE without Page1GB), XD while EFER.NXE=0, PAE PDPTE bits 2:1 and 8:5
  (only in a strict mode: by default they are accepted as QEMU's walker does, see
  tests/inspect/test_pae_pdpte.py), PAE PDPTE bits 63:MAXPHYADDR, PAE bits 62:MAXPHYADDR,
  bit 21 and bits 20:(M-19) of a 32-bit 4 MiB PDE. Kind ``reserved``;
  the #PF error code has P and RSVD (bit 3) set.
- AArch64 (Arm ARM D8.3): a level-3 descriptor of type 0b01, a block where the granule allows
  none (L0 with 4K, L1 with 16K), output or table addresses above the IPS size. Kinds
  ``translation`` / ``address-size``, with the fault status code of the level.
- RISC-V (privileged spec, "Virtual Address Translation Process"): bits 63:54 without Svpbmt,
  W=1 with R=0, A/D/U in a non-leaf PTE, a misaligned superpage, PBMT=3. Kind ``page-fault``,
  cause 13 for a load.

Every case goes through the public :func:`pagewalk.translate`, :func:`pagewalk.walk`, and a
reused batch :class:`~pagewalk.batch.Translator` (numpy and compiled, in batches of 64 so the
compiled walker's 16-lane loop runs).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import pagewalk
from pagewalk import AddressSpace, Perm, PhysicalMemory, make_mode
from pagewalk import fast as fastmod
from pagewalk.alloc import SimpleFrameAllocator
from pagewalk.batch import _CODE, NO_PA, Translator
from pagewalk.errors import PageFault
from pagewalk.formats.aarch64 import TCR_DEFAULT
from pagewalk.formats.base import PagingMode
from pagewalk.formats.x86_bits import EFER_LME
from pagewalk.mmu import check_access
from pagewalk.mmu.faults import FSC_BASE, PF_P, PF_RSVD, RV_PAGE_FAULT, walk_fault
from pagewalk.mmu.regs import default_regs

MIB, GIB = 1 << 20, 1 << 30
RWX = Perm.READ | Perm.WRITE | Perm.EXEC


def bit(n: int) -> int:
    return 1 << n


def tcr(ips: int = 5, granule: str = "4k") -> int:
    """TCR_EL1 with 48-bit VAs, both halves on one granule, and IPS ``ips``."""
    tg0, tg1 = {"4k": (0b00, 0b10), "16k": (0b10, 0b01), "64k": (0b01, 0b11)}[granule]
    return 16 | (16 << 16) | (tg0 << 14) | (tg1 << 30) | (ips << 32)


@dataclass(frozen=True)
class Case:
    """One reserved encoding: where it goes and the fault it must give.

    Attributes:
        mode: builds the configured mode.
        page: the page size mapped.
        level: the level number of the entry corrupted (the fault's level).
        set_bits / clear_bits: the change made to that entry.
        kind: the fault kind.
    """

    name: str
    mode: Callable[[], PagingMode]
    page: int
    level: int
    set_bits: int
    kind: str
    clear_bits: int = 0


X86 = {
    "x86_64-m40": lambda: make_mode("x86_64", maxphyaddr=40),
    "la57-m40": lambda: make_mode("la57", maxphyaddr=40),
    "x86_64-nonxe": lambda: make_mode("x86_64", efer=EFER_LME),
    "x86_64-no1g": lambda: make_mode("x86_64", pdpe1gb=False),
    "pae-m40": lambda: make_mode("pae", maxphyaddr=40),
    "pae-m40-strict": lambda: make_mode("pae", maxphyaddr=40, strict=True),
    "pae-nonxe": lambda: make_mode("pae", efer=0),
    "x86-m36": lambda: make_mode("x86", maxphyaddr=36),
    "x86-m40": lambda: make_mode("x86", maxphyaddr=40),
}
ARM = {
    "aarch64-ips40": lambda: make_mode("aarch64", tcr=tcr(ips=2)),
    "aarch64-16k": lambda: make_mode("aarch64", tcr=tcr(granule="16k")),
    "aarch64-64k": lambda: make_mode("aarch64", tcr=tcr(granule="64k")),
    "aarch64": lambda: make_mode("aarch64", tcr=TCR_DEFAULT),
}
RV = {
    "sv32": lambda: make_mode("sv32"),
    "sv39": lambda: make_mode("sv39"),
    "sv48": lambda: make_mode("sv48"),
    "sv57": lambda: make_mode("sv57"),
    "sv39-pbmt": lambda: make_mode("sv39", svpbmt=True),
}
K4, M2, M4 = 4096, 2 * MIB, 4 * MIB
ARM_TYPE = bit(1)  # descriptor bit 1: table/page (1) or block (0)
RV_R, RV_W, RV_X, RV_U, RV_A, RV_D = bit(1), bit(2), bit(3), bit(4), bit(6), bit(7)

CASES = [
    # x86-64 and LA57: bits 51:MAXPHYADDR, PS-reserved low address bits, PS in a PML4E/PML5E
    Case("pte-bit40", X86["x86_64-m40"], K4, 1, bit(40), "reserved"),
    Case("pte-bit51", X86["x86_64-m40"], K4, 1, bit(51), "reserved"),
    Case("pde-table-bit45", X86["x86_64-m40"], K4, 2, bit(45), "reserved"),
    Case("pml4e-bit40", X86["x86_64-m40"], K4, 4, bit(40), "reserved"),
    Case("pde-2m-bit13", X86["x86_64-m40"], M2, 2, bit(13), "reserved"),
    Case("pde-2m-bit20", X86["x86_64-m40"], M2, 2, bit(20), "reserved"),
    Case("pdpte-1g-bit13", X86["x86_64-m40"], GIB, 3, bit(13), "reserved"),
    Case("pdpte-1g-bit29", X86["x86_64-m40"], GIB, 3, bit(29), "reserved"),
    Case("pml4e-ps", X86["x86_64-m40"], K4, 4, bit(7), "reserved"),
    Case("la57-pml5e-ps", X86["la57-m40"], K4, 5, bit(7), "reserved"),
    Case("la57-pte-bit47", X86["la57-m40"], K4, 1, bit(47), "reserved"),
    Case("xd-pte-nonxe", X86["x86_64-nonxe"], K4, 1, bit(63), "reserved"),
    Case("xd-pde-2m-nonxe", X86["x86_64-nonxe"], M2, 2, bit(63), "reserved"),
    Case("xd-pml4e-nonxe", X86["x86_64-nonxe"], K4, 4, bit(63), "reserved"),
    Case("pdpte-ps-no1g", X86["x86_64-no1g"], M2, 3, bit(7), "reserved"),
    # PAE
    Case("pae-pdpte-bit1", X86["pae-m40-strict"], K4, 3, bit(1), "reserved"),
    Case("pae-pdpte-bit2", X86["pae-m40-strict"], K4, 3, bit(2), "reserved"),
    Case("pae-pdpte-bit5", X86["pae-m40-strict"], K4, 3, bit(5), "reserved"),
    Case("pae-pdpte-bit8", X86["pae-m40-strict"], K4, 3, bit(8), "reserved"),
    Case("pae-pdpte-bit63", X86["pae-m40"], K4, 3, bit(63), "reserved"),
    Case("pae-pdpte-bit40", X86["pae-m40"], K4, 3, bit(40), "reserved"),
    Case("pae-pdpte-bit63-strict", X86["pae-m40-strict"], K4, 3, bit(63), "reserved"),
    Case("pae-pte-bit62", X86["pae-m40"], K4, 1, bit(62), "reserved"),
    Case("pae-pte-bit40", X86["pae-m40"], K4, 1, bit(40), "reserved"),
    Case("pae-pde-2m-bit14", X86["pae-m40"], M2, 2, bit(14), "reserved"),
    Case("pae-xd-nonxe", X86["pae-nonxe"], K4, 1, bit(63), "reserved"),
    # 32-bit paging, 4 MiB PDEs (PSE-36)
    Case("x86-pde-4m-bit21", X86["x86-m40"], M4, 2, bit(21), "reserved"),
    Case("x86-pde-4m-bit17-m36", X86["x86-m36"], M4, 2, bit(17), "reserved"),
    Case("x86-pde-4m-bit20-m36", X86["x86-m36"], M4, 2, bit(20), "reserved"),
    # AArch64: reserved descriptor types, addresses above IPS
    Case("l3-type-01", ARM["aarch64"], K4, 3, 0, "translation", ARM_TYPE),
    Case("l0-block-4k", ARM["aarch64"], K4, 0, 0, "translation", ARM_TYPE),
    Case("l1-block-16k", ARM["aarch64-16k"], 16 * 1024, 1, 0, "translation", ARM_TYPE),
    Case("l1-block-64k", ARM["aarch64-64k"], 64 * 1024, 1, 0, "translation", ARM_TYPE),
    Case("page-oa-above-ips", ARM["aarch64-ips40"], K4, 3, bit(44), "address-size"),
    Case("block-oa-above-ips", ARM["aarch64-ips40"], M2, 2, bit(47), "address-size"),
    Case("table-above-ips", ARM["aarch64-ips40"], K4, 1, bit(40), "address-size"),
    # RISC-V
    Case("sv39-bit54", RV["sv39"], K4, 0, bit(54), "page-fault"),
    Case("sv39-bit60-megapage", RV["sv39"], M2, 1, bit(60), "page-fault"),
    Case("sv48-bit63-table", RV["sv48"], K4, 3, bit(63), "page-fault"),
    Case("sv57-bit61-gigapage", RV["sv57"], GIB, 2, bit(61), "page-fault"),
    Case("sv39-w-without-r", RV["sv39"], K4, 0, RV_W, "page-fault", RV_R | RV_X),
    Case("sv32-w-without-r", RV["sv32"], K4, 0, RV_W, "page-fault", RV_R | RV_X),
    Case("sv32-w-without-r-4m", RV["sv32"], M4, 1, RV_W, "page-fault", RV_R | RV_X),
    Case("sv39-nonleaf-a", RV["sv39"], K4, 2, RV_A, "page-fault"),
    Case("sv39-nonleaf-d", RV["sv39"], K4, 1, RV_D, "page-fault"),
    Case("sv32-nonleaf-u", RV["sv32"], K4, 1, RV_U, "page-fault"),
    Case("sv39-pointer-at-level0", RV["sv39"], K4, 0, 0, "page-fault", RV_R | RV_W | RV_X),
    Case("sv39-misaligned-megapage", RV["sv39"], M2, 1, bit(10), "page-fault"),
    Case("sv48-misaligned-gigapage", RV["sv48"], GIB, 2, bit(27), "page-fault"),
    Case("sv39-pbmt3", RV["sv39-pbmt"], K4, 0, bit(61) | bit(62), "page-fault"),
    Case("sv39-pbmt-nonleaf", RV["sv39-pbmt"], K4, 1, bit(61), "page-fault"),
]


def build(case: Case) -> tuple[PagingMode, PhysicalMemory, AddressSpace, int, int]:
    """A space with two pages of ``case.page`` and the first one's walk corrupted.

    Returns (mode, memory, space, VA of the bad page, the corrupted raw entry).
    """
    mode = case.mode()
    mem = PhysicalMemory(64 * MIB)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(48 * MIB, 16 * MIB))
    half = mode.halves[0]
    base = 0 if half.va_end <= 1 << 32 else 1 << 36
    va = base + 2 * max(case.page, half.levels[0].leaf_size or 0)
    space.map_range(va, 4 * case.page, 2 * case.page, RWX, page_sizes=(case.page,)).ignore()
    steps = space.walk(va).steps
    step = next(s for s in steps if s.level.number == case.level)
    bad = (step.raw | case.set_bits) & ~case.clear_bits
    assert bad != step.raw, "the case changes nothing"
    mem.write_entry(step.entry_pa, mode.entry_size, bad)
    return mode, mem, space, va, bad


def expect_arch_code(mode: PagingMode, va: int, fault: pagewalk.Fault, case: Case) -> None:
    """The architecture's own report of the fault: #PF RSVD, Arm FSC, RISC-V cause."""
    got = walk_fault(mode, default_regs(mode), va, fault, "read", False)
    assert isinstance(got, PageFault)
    if mode.name in ("x86", "pae", "x86_64", "la57"):
        assert got.code is not None and got.code & PF_RSVD and got.code & PF_P, got.code
    elif mode.name == "aarch64":
        assert got.code == FSC_BASE[case.kind] + case.level, got.code
    else:
        assert got.code == RV_PAGE_FAULT["read"], got.code
    assert f"{va:#x}" in str(got).lower() or f"{va:x}" in str(got).lower(), str(got)


#: the batch implementations here (the compiled one when it is built)
IMPLS = ["numpy", *(["compiled"] if fastmod.AVAILABLE else [])]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reserved_entry_faults(case: Case) -> None:
    mode, mem, space, va, bad = build(case)
    for off in (0, case.page // 2 + 8, case.page - 1):
        pa, size, fault = pagewalk.translate(mem, mode, space.roots, va + off)
        assert pa is None and size is None, f"{case.name}: {va + off:#x} -> {pa}"
        assert fault is not None and fault.kind == case.kind, fault
        assert fault.level == case.level and fault.raw == bad, fault
        full = pagewalk.walk(mem, mode, space.roots, va + off)
        assert full.fault == fault, (full.fault, fault)
        assert space.translate(va + off) is None
        expect_arch_code(mode, va + off, fault, case)
    raised = check_access(mem, mode, space.roots, va, "read", False)
    assert isinstance(raised, PageFault) and f"{va:#x}" in str(raised)
    for impl in IMPLS:
        check_batches(case, mode, mem, space, va, impl)


def check_batches(
    case: Case, mode: PagingMode, mem: PhysicalMemory, space: AddressSpace, va: int, impl: str
) -> None:
    """Three batches of 64 through one Translator: bad lanes fault, the rest match walk()."""
    tr = Translator(mem, mode, space.roots, impl=impl)
    assert tr.impl == impl
    rng = np.random.default_rng(len(case.name))
    good = va + case.page  # the neighbour: faults too when a table entry above it is bad
    for _ in range(3):  # one translator, several batches: learned shapes must not hide faults
        offs = rng.integers(0, case.page, 64, dtype=np.uint64)
        vas = np.where(np.arange(64) % 32 < 16, np.uint64(va), np.uint64(good)) + offs
        got = tr.translate(vas)
        for i, v in enumerate(vas.tolist()):
            ref = pagewalk.walk(mem, mode, space.roots, v)
            if va <= v < va + case.page:  # the bad page: the case's fault, whatever the walk says
                assert got.kinds()[i] == case.kind, (case.name, hex(v), got.kinds()[i])
                assert int(got.level[i]) == case.level, (case.name, hex(v), int(got.level[i]))
            if ref.fault is None:
                assert int(got.fault[i]) == 0 and int(got.pa[i]) == ref.pa, hex(v)
                assert int(got.page_size[i]) == ref.page_size, hex(v)
                continue
            assert int(got.fault[i]) == _CODE[ref.fault.kind], (hex(v), got.kinds()[i], ref)
            assert int(got.level[i]) == ref.fault.level, (hex(v), int(got.level[i]), ref)
            assert got.pa[i] == NO_PA and int(got.page_size[i]) == 0, hex(v)
