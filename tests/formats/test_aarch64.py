"""AArch64 VMSAv8-64 stage 1 formats against the Arm ARM (DDI 0487) chapter D8.

Start levels and root sizes follow the "TnSZ and starting level" tables of D8.2; descriptor
encodings follow D8.3 (table/block/page, which levels may hold a block per granule); permissions
follow D8.4 (AP[2:1], UXN/PXN, APTable/UXNTable/PXNTable, HPD); memory types follow MAIR_EL1.
Walk-level faults follow the AArch64.TranslationTableWalk pseudocode (out-of-range VA, EPD and a
TTBR above the PA size fault at level 0).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagewalk.formats.aarch64 import (
    AP_TABLE0,
    AP_TABLE1,
    MAIR_DEFAULT,
    PXN_TABLE,
    TCR_EPD0,
    TCR_HA,
    TCR_HPD0,
    TCR_TBI0,
    TCR_TBI1,
    UXN_TABLE,
    AArch64Mode,
    mair_type,
)
from pagewalk.formats.base import EntryKind, MemType, Perm
from pagewalk.memory.physical import PhysicalMemory
from pagewalk.walk import walk

TG0 = {12: 0b00, 16: 0b01, 14: 0b10}
TG1 = {12: 0b10, 16: 0b11, 14: 0b01}
MIB, GIB = 1 << 20, 1 << 30


def tcr(granule: int = 12, t0sz: int = 16, t1sz: int = 16, ips: int = 2, extra: int = 0) -> int:
    return t0sz | t1sz << 16 | TG0[granule] << 14 | TG1[granule] << 30 | ips << 32 | extra


def mode(**kw: int) -> AArch64Mode:
    extra = kw.pop("extra", 0)
    return AArch64Mode(tcr=tcr(**kw, extra=extra))


def lv(m: AArch64Mode, number: int, half: int = 0):  # type: ignore[no-untyped-def]
    return next(x for x in m.halves[half].levels if x.number == number)


# (granule shift, TnSZ) -> (start level, root entries, root alignment in bytes)
@pytest.mark.parametrize(
    ("granule", "tsz", "start", "entries", "align"),
    [
        (12, 16, 0, 512, 4096),
        (12, 20, 0, 32, 256),
        (12, 24, 0, 2, 64),
        (12, 25, 1, 512, 4096),
        (12, 33, 1, 2, 64),
        (12, 34, 2, 512, 4096),
        (12, 39, 2, 16, 128),
        (14, 16, 0, 2, 64),
        (14, 17, 1, 2048, 16384),
        (14, 28, 2, 2048, 16384),
        (14, 36, 2, 8, 64),
        (14, 39, 3, 2048, 16384),
        (16, 16, 1, 64, 512),
        (16, 22, 2, 8192, 65536),
        (16, 36, 3, 4096, 32768),
    ],
)
def test_start_level_and_root_size(
    granule: int, tsz: int, start: int, entries: int, align: int
) -> None:
    for half in (0, 1):
        m = mode(granule=granule, t0sz=tsz, t1sz=tsz)
        root = m.halves[half].levels[0]
        assert (root.number, root.entries, m.halves[half].table_align) == (start, entries, align)
        assert m.halves[half].levels[-1].number == 3


@pytest.mark.parametrize(
    ("granule", "sizes"),
    [(12, [GIB, 2 * MIB, 4096]), (14, [32 * MIB, 16384]), (16, [512 * MIB, 65536])],
)
def test_block_sizes_per_granule(granule: int, sizes: list[int]) -> None:
    assert mode(granule=granule, t0sz=16, t1sz=16).leaf_sizes() == sizes


def test_ttbr_selection_and_tbi() -> None:
    m = mode(t0sz=16, t1sz=25)
    half = m.half_for
    assert half(0x0000_FFFF_FFFF_FFFF).root == 0  # type: ignore[union-attr]
    assert half(0xFFFF_FF80_0000_0000).root == 1  # type: ignore[union-attr]
    assert half(0xFFFF_FF7F_FFFF_FFFF) is None  # below TTBR1's 39-bit range
    assert half(0x0001_0000_0000_0000) is None
    assert half(0x5A00_0000_1234_5000) is None  # tag without TBI0
    t = mode(t0sz=16, t1sz=16, extra=TCR_TBI0 | TCR_TBI1)
    assert t.half_for(0x5A00_0000_1234_5000).root == 0  # type: ignore[union-attr]
    assert t.half_for(0x12FF_8000_0000_0000).root == 1  # type: ignore[union-attr]
    assert t.half_for(0x5A80_0000_0000_0000) is None  # bit 55 = 1 but 54:48 not ones


@pytest.mark.parametrize(
    ("granule", "number", "raw", "kind", "address", "size", "fault"),
    [
        (12, 0, 0x0000_0000_0000_2003, EntryKind.TABLE, 0x2000, 0, None),
        (12, 0, 0x0000_0000_0000_0401, EntryKind.INVALID, 0, 0, "translation"),  # L0 block
        (12, 1, 0x0000_0000_4000_0401, EntryKind.LEAF, 0x4000_0000, GIB, None),
        (12, 2, 0x0000_0000_0020_0401, EntryKind.LEAF, 0x20_0000, 2 * MIB, None),
        (12, 3, 0x0000_0000_0000_9403, EntryKind.LEAF, 0x9000, 4096, None),
        (12, 3, 0x0000_0000_0000_9401, EntryKind.INVALID, 0, 0, "translation"),  # type 01
        (12, 3, 0x0000_0000_0000_9002, EntryKind.INVALID, 0, 0, "translation"),  # valid=0
        (14, 1, 0x0000_0010_0000_0401, EntryKind.INVALID, 0, 0, "translation"),  # 16K L1 block
        (14, 2, 0x0000_0000_0200_0401, EntryKind.LEAF, 0x200_0000, 32 * MIB, None),
        (14, 3, 0x0000_0000_0000_C403, EntryKind.LEAF, 0xC000, 16384, None),
        (16, 1, 0x0000_0400_0000_0401, EntryKind.INVALID, 0, 0, "translation"),  # 64K L1 block
        (16, 2, 0x0000_0000_2000_0401, EntryKind.LEAF, 0x2000_0000, 512 * MIB, None),
        (16, 2, 0x0000_0000_0003_0003, EntryKind.TABLE, 0x3_0000, 0, None),
        (16, 3, 0x0000_0000_0003_0403, EntryKind.LEAF, 0x3_0000, 65536, None),
        # IPS = 40 bits: OA bit 40 (leaf) and next-table bit 44 give Address size faults.
        (12, 3, 0x0000_0100_0000_0403, EntryKind.LEAF, 1 << 40, 4096, "address-size"),
        (12, 1, 0x0000_1000_0000_2003, EntryKind.TABLE, 1 << 44 | 0x2000, 0, "address-size"),
        (12, 3, 0x0000_0000_0000_9003, EntryKind.LEAF, 0x9000, 4096, "access-flag"),  # AF=0
    ],
)
def test_descriptors(
    granule: int,
    number: int,
    raw: int,
    kind: EntryKind,
    address: int,
    size: int,
    fault: str | None,
) -> None:
    m = mode(granule=granule, t0sz=16, t1sz=16)
    e = m.decode(raw, lv(m, number))
    assert (e.kind, e.fault) == (kind, fault)
    if kind is not EntryKind.INVALID:
        assert (e.address, e.size) == (address, size)


def test_hardware_access_flag_removes_the_fault() -> None:
    m = mode(extra=TCR_HA)
    assert m.decode(0x9003, lv(m, 3)).fault is None


@pytest.mark.parametrize(
    ("raw", "perm"),
    [
        # AP[2:1]=00: EL1 RW; PXN=0: EL1 may execute; nG=0: global.
        (0x0040_0000_0000_9403, Perm.READ | Perm.WRITE | Perm.EXEC | Perm.GLOBAL),
        (0x0060_0000_0000_9C03, Perm.READ | Perm.WRITE),  # nG, PXN|UXN
        (0x0020_0000_0000_9483, Perm.READ | Perm.GLOBAL),  # AP=10: EL1 RO, PXN
        (0x0020_0000_0000_9443, Perm.READ | Perm.WRITE | Perm.USER | Perm.EXEC | Perm.GLOBAL),
        (0x0040_0000_0000_94C3, Perm.READ | Perm.USER | Perm.GLOBAL),  # AP=11, UXN
    ],
)
def test_leaf_permissions(raw: int, perm: Perm) -> None:
    m = mode()
    assert m.decode(raw, lv(m, 3)).perm == perm


@pytest.mark.parametrize(
    ("attr_index", "memtype"),
    [
        (0, MemType.NORMAL),
        (1, MemType.DEVICE),
        (2, MemType.DEVICE_STRICT),
        (3, MemType.WRITE_COMBINING),
        (4, MemType.WRITE_THROUGH),
    ],
)
def test_attr_index_selects_mair_byte(attr_index: int, memtype: MemType) -> None:
    m = AArch64Mode(tcr=tcr(), mair=MAIR_DEFAULT)
    assert m.decode(0x9403 | attr_index << 2, lv(m, 3)).memtype == memtype
    # The same AttrIndx through another MAIR picks that MAIR's byte.
    other = AArch64Mode(tcr=tcr(), mair=0x44 << (8 * attr_index))
    assert other.decode(0x9403 | attr_index << 2, lv(other, 3)).memtype == MemType.WRITE_COMBINING


@pytest.mark.parametrize(
    ("attr", "memtype"),
    [
        (0x00, MemType.DEVICE_STRICT),
        (0x04, MemType.DEVICE),
        (0x08, "device-nGRE"),
        (0x0C, "device-GRE"),
        (0xFF, MemType.NORMAL),
        (0x77, MemType.NORMAL),  # write-back transient
        (0x44, MemType.WRITE_COMBINING),
        (0xBB, MemType.WRITE_THROUGH),
        (0x4F, "normal-onc-iwb"),
        (0xF0, "unpredictable-0xf0"),
        (0x01, "unpredictable-0x01"),
    ],
)
def test_mair_type(attr: int, memtype: MemType | str) -> None:
    assert mair_type(attr) == memtype


def _path(m: AArch64Mode, table_bits: int, leaf: int):  # type: ignore[no-untyped-def]
    return [m.decode(0x2003 | table_bits, lv(m, 2)), m.decode(leaf, lv(m, 3))]


USER_RWX = 0x0020_0000_0000_9443  # AP=01, PXN, UXN=0
KERNEL_RWX = 0x0040_0000_0000_9403  # AP=00, UXN, PXN=0


@pytest.mark.parametrize(
    ("table_bits", "leaf", "perm"),
    [
        (0, USER_RWX, Perm.READ | Perm.WRITE | Perm.USER | Perm.EXEC | Perm.GLOBAL),
        (AP_TABLE0, USER_RWX, Perm.READ | Perm.WRITE | Perm.GLOBAL),  # no EL0 below
        (AP_TABLE1, USER_RWX, Perm.READ | Perm.USER | Perm.EXEC | Perm.GLOBAL),  # no write
        (UXN_TABLE, USER_RWX, Perm.READ | Perm.WRITE | Perm.USER | Perm.GLOBAL),
        (PXN_TABLE, USER_RWX, Perm.READ | Perm.WRITE | Perm.USER | Perm.EXEC | Perm.GLOBAL),
        (PXN_TABLE, KERNEL_RWX, Perm.READ | Perm.WRITE | Perm.GLOBAL),
        (UXN_TABLE, KERNEL_RWX, Perm.READ | Perm.WRITE | Perm.EXEC | Perm.GLOBAL),
    ],
)
def test_table_limits(table_bits: int, leaf: int, perm: Perm) -> None:
    m = mode()
    assert m.effective(_path(m, table_bits, leaf), m.halves[0]) == perm


def test_hpd_is_per_half_and_ignores_descriptor_bits() -> None:
    m = mode(extra=TCR_HPD0)
    path = _path(m, AP_TABLE1 | UXN_TABLE, USER_RWX)
    full = Perm.READ | Perm.WRITE | Perm.USER | Perm.EXEC | Perm.GLOBAL
    assert m.effective(path, m.halves[0]) == full  # HPD0: table limits ignored for TTBR0
    assert m.effective(path, m.halves[1]) == Perm.READ | Perm.USER | Perm.GLOBAL
    # Bit 55 of a descriptor is for software: it must not switch HPD on or off.
    sw = _path(m, AP_TABLE1, USER_RWX | 1 << 55)
    assert m.effective(sw, m.halves[1]) == Perm.READ | Perm.USER | Perm.EXEC | Perm.GLOBAL


def _mem() -> PhysicalMemory:
    mem = PhysicalMemory(1 << 20)
    mem.write_u64(0x1000, 0x2003)  # L0[0] -> L1
    mem.write_u64(0x2000, 0x3003)  # L1[0] -> L2
    mem.write_u64(0x3000, 0x4003)  # L2[0] -> L3
    mem.write_u64(0x4000 + 5 * 8, 0x9403)  # VA 0x5000 -> 0x9000
    return mem


@pytest.mark.parametrize(
    ("extra", "ttbr0", "va", "kind", "level"),
    [
        (0, 0x1000, 0x5123, None, None),
        (TCR_EPD0, 0x1000, 0x5123, "translation", 0),
        (0, 0x1000, 0x0001_0000_0000_0000, "translation", 0),  # between the ranges
        (0, 1 << 41 | 0x1000, 0x5123, "address-size", 0),  # TTBR0 above IPS (40 bits)
        (0, 0x1000, 0x6000, "translation", 3),
    ],
)
def test_walk_faults(extra: int, ttbr0: int, va: int, kind: str | None, level: int | None) -> None:
    m = mode(extra=extra)
    w = walk(_mem(), m, (ttbr0, 0x1000), va)
    if kind is None:
        assert w.pa == 0x9123
    else:
        assert w.fault is not None and (w.fault.kind, w.fault.level) == (kind, level)


# ------------------------------------------------------------------- round trips

MEMTYPES = [
    MemType.NORMAL,
    MemType.WRITE_THROUGH,
    MemType.WRITE_COMBINING,
    MemType.DEVICE,
    MemType.DEVICE_STRICT,
]
perms = st.integers(0, 15).map(
    lambda b: Perm.READ | Perm(b << 1) & (Perm.WRITE | Perm.EXEC | Perm.USER | Perm.GLOBAL)
)


@given(st.sampled_from([12, 14, 16]), st.data(), perms, st.sampled_from(MEMTYPES))
def test_round_trip_and_resize(
    granule: int, data: st.DataObject, perm: Perm, memtype: MemType
) -> None:
    m = mode(granule=granule, t0sz=16, t1sz=16)
    half = m.halves[data.draw(st.integers(0, 1))]
    leaves = [x for x in half.levels if x.leaf_size]
    a, b = data.draw(st.sampled_from(leaves)), data.draw(st.sampled_from(leaves))
    pa_a = data.draw(st.integers(0, (1 << 40) // a.leaf_size - 1)) * a.leaf_size
    pa_b = data.draw(st.integers(0, (1 << 40) // b.leaf_size - 1)) * b.leaf_size
    raw = m.encode_leaf(pa_a, a, perm, memtype)
    e = m.decode(raw, a)
    assert (e.kind, e.fault, e.address, e.size) == (EntryKind.LEAF, None, pa_a, a.leaf_size)
    assert (e.perm, e.memtype) == (perm, memtype)
    resized = m.resize_leaf(raw, a, b, pa_b)
    f = m.decode(resized, b)
    assert (f.kind, f.fault, f.address, f.size) == (EntryKind.LEAF, None, pa_b, b.leaf_size)
    assert (f.perm, f.memtype) == (perm, memtype)
    assert m.resize_leaf(resized, b, a, pa_a) == raw
