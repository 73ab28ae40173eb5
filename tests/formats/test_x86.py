"""x86 entry formats against Intel SDM vol. 3A ch. 4 (tables 4-4 to 4-20, §4.9 PAT).

Every raw value below is built by hand from the SDM's bit tables; the expected address, size and
fault come from the same tables, never from running pagewalk.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagewalk.errors import NonCanonicalAddressError
from pagewalk.formats.base import EntryKind, Level, MemType, Perm
from pagewalk.formats.x86 import X86Mode
from pagewalk.formats.x86_bits import CR4_LA57, CR4_PAE, CR4_PSE, EFER_LME, EFER_NXE

MIB, GIB = 1 << 20, 1 << 30


def mode(variant: str, **kw: object) -> X86Mode:
    return X86Mode(variant, **kw)  # type: ignore[arg-type]


def level(m: X86Mode, name: str) -> Level:
    return next(lv for lv in m.halves[0].levels if lv.name == name)


# (variant, options, level, raw, kind, address, size) for entries that decode without fault.
GOOD = [
    # 32-bit paging (tables 4-5, 4-6): PDE -> PT, PTE -> 4 KiB.
    ("x86", {}, "PD", 0x0000_2007, EntryKind.TABLE, 0x2000, 0),
    ("x86", {}, "PT", 0x0000_5003, EntryKind.LEAF, 0x5000, 4096),
    # 4-MByte PDE (table 4-4): PA 31:22 from bits 31:22, PSE-36 PA 39:32 from bits 20:13.
    ("x86", {}, "PD", 0x0080_0083, EntryKind.LEAF, 0x80_0000, 4 * MIB),
    ("x86", {}, "PD", 0x0080_6087, EntryKind.LEAF, 0x3_0080_0000, 4 * MIB),
    ("x86", {}, "PD", 0xFFC0_0000 | 0x1F_E083, EntryKind.LEAF, 0xFF_FFC0_0000, 4 * MIB),
    ("x86", {"maxphyaddr": 36}, "PD", 0x0001_E083, EntryKind.LEAF, 0xF_0000_0000, 4 * MIB),
    # CR4.PSE=0: PS is ignored and the PDE points to a page table (§4.3).
    ("x86", {"cr4": 0}, "PD", 0x0080_0083, EntryKind.TABLE, 0x80_0000, 0),
    # PAE (tables 4-8 to 4-11).
    ("pae", {}, "PDPT", 0x2001, EntryKind.TABLE, 0x2000, 0),
    ("pae", {}, "PD", 0x0040_0083, EntryKind.LEAF, 0x40_0000, 2 * MIB),
    ("pae", {}, "PD", 0x0040_1083, EntryKind.LEAF, 0x40_0000, 2 * MIB),  # bit 12 = PAT
    ("pae", {}, "PT", 0x8000_0000_0000_9003, EntryKind.LEAF, 0x9000, 4096),
    ("pae", {}, "PT", 0x000F_FFFF_FFFF_F003, EntryKind.LEAF, 0xF_FFFF_FFFF_F000, 4096),
    # 4-level (tables 4-14 to 4-19).
    ("x86_64", {}, "PML4", 0x2007, EntryKind.TABLE, 0x2000, 0),
    ("x86_64", {}, "PDPT", 0x4000_0083, EntryKind.LEAF, 0x4000_0000, GIB),
    ("x86_64", {}, "PDPT", 0x4000_1083, EntryKind.LEAF, 0x4000_0000, GIB),  # PAT
    ("x86_64", {}, "PD", 0x0020_0083, EntryKind.LEAF, 0x20_0000, 2 * MIB),
    ("x86_64", {}, "PT", 0x7FF0_0000_0000_9003, EntryKind.LEAF, 0x9000, 4096),  # 62:52 ignored
    (
        "x86_64",
        {"maxphyaddr": 46},
        "PT",
        0x0000_2000_0000_9003,
        EntryKind.LEAF,
        1 << 45 | 0x9000,
        4096,
    ),
    (
        "x86_64",
        {"maxphyaddr": 52},
        "PT",
        0x0008_0000_0000_9003,
        EntryKind.LEAF,
        1 << 51 | 0x9000,
        4096,
    ),
    ("la57", {}, "PML5", 0x3003, EntryKind.TABLE, 0x3000, 0),
]


@pytest.mark.parametrize(("variant", "opts", "name", "raw", "kind", "address", "size"), GOOD)
def test_decode_good(
    variant: str,
    opts: dict[str, int],
    name: str,
    raw: int,
    kind: EntryKind,
    address: int,
    size: int,
) -> None:
    m = mode(variant, **opts)
    e = m.decode(raw, level(m, name))
    assert (e.kind, e.address, e.size, e.fault) == (kind, address, size, None)


# (variant, options, level, raw) that must fault as reserved (P=1 with a reserved bit).
EFER_LEGACY = EFER_LME  # NXE clear
RESERVED = [
    ("x86", {}, "PD", 0x00A0_0087),  # bit 21 of a 4-MByte PDE (table 4-4)
    ("x86", {"maxphyaddr": 36}, "PD", 0x0002_0083),  # bits 21:17 with MAXPHYADDR 36
    # PDPTE bits 2:1 and 8:5 (table 4-8) only when strict: by default accepted, as QEMU does
    ("pae", {"strict": True}, "PDPT", 0x2003),
    ("pae", {"strict": True}, "PDPT", 0x2021),
    ("pae", {"strict": True}, "PDPT", 0x2081),  # PS is inside 8:5: no 1-GByte pages in PAE
    ("pae", {}, "PDPT", 0x8000_0000_0000_2001),  # 63:M even with NXE
    ("pae", {"maxphyaddr": 36}, "PDPT", 0x0000_0010_0000_2001),
    ("pae", {}, "PD", 0x0040_2083),  # 2-MByte PDE bits 20:13 (table 4-9)
    ("pae", {}, "PT", 0x0010_0000_0000_9003),  # PAE 62:M (M=52: bit 52)
    ("pae", {"efer": 0}, "PT", 0x8000_0000_0000_9003),  # XD reserved when NXE=0
    ("x86_64", {"efer": EFER_LEGACY}, "PT", 0x8000_0000_0000_9003),
    ("x86_64", {"efer": EFER_LEGACY}, "PML4", 0x8000_0000_0000_2003),
    ("x86_64", {}, "PML4", 0x2087),  # PS reserved in a PML4E (table 4-15)
    ("la57", {}, "PML5", 0x2087),  # and in a PML5E (table 4-14)
    ("x86_64", {}, "PDPT", 0x4000_2083),  # 1-GByte page bits 29:13 (table 4-16)
    ("x86_64", {}, "PDPT", 0x6000_0083),  # bit 29
    ("x86_64", {"pdpe1gb": False}, "PDPT", 0x4000_0083),  # no Page1GB: PS reserved
    ("x86_64", {"maxphyaddr": 36}, "PT", 0x0000_0010_0000_9003),  # bit 36
    ("x86_64", {"maxphyaddr": 46}, "PD", 0x0000_4000_0000_3003),  # bit 46
    ("x86_64", {"maxphyaddr": 40}, "PDPT", 0x0008_0000_0000_3003),  # bit 51
]


@pytest.mark.parametrize(("variant", "opts", "name", "raw"), RESERVED)
def test_decode_reserved(variant: str, opts: dict[str, object], name: str, raw: int) -> None:
    m = mode(variant, **opts)
    assert m.decode(raw, level(m, name)).fault == "reserved"


@pytest.mark.parametrize("variant", ["x86", "pae", "x86_64", "la57"])
def test_not_present_ignores_everything_else(variant: str) -> None:
    m = mode(variant)
    for lv in m.halves[0].levels:
        assert m.decode(0xFFFF_FFFE, lv).fault == "not-present"


def test_permissions_and_polarities() -> None:
    m = mode("x86_64")
    pt = level(m, "PT")
    assert m.decode(0x9001 | 1 << 63, pt).perm == Perm.READ  # RW=0 US=0 XD=1 G=0
    assert m.decode(0x9107, pt).perm == Perm.READ | Perm.WRITE | Perm.USER | Perm.EXEC | Perm.GLOBAL
    # NXE off in PAE: no execute-disable at all (and bit 63 is reserved, above).
    pae = mode("pae", efer=0)
    assert pae.decode(0x9003, level(pae, "PT")).perm & Perm.EXEC


# PAT index = PAT<<2 | PCD<<1 | PWT (SDM §4.9.2); IA32_PAT reset: WB WT UC- UC WB WT UC- UC.
@pytest.mark.parametrize(
    ("bits", "memtype"),
    [
        (0x000, MemType.NORMAL),
        (0x008, MemType.WRITE_THROUGH),
        (0x010, MemType.UNCACHED_MINUS),
        (0x018, MemType.UNCACHED),
        (0x080, MemType.NORMAL),
        (0x098, MemType.UNCACHED),
    ],
)
def test_pat_memtype_pte(bits: int, memtype: MemType) -> None:
    m = mode("x86_64")
    assert m.decode(0x9003 | bits, level(m, "PT")).memtype == memtype


def test_pat_bit_moves_to_12_in_large_pages() -> None:
    m = mode("x86_64", pat=0x0000_0001_0000_0006)  # PAT4 = WC, PAT0 = WB
    assert m.decode(0x20_1083, level(m, "PD")).memtype == MemType.WRITE_COMBINING
    assert m.decode(0x9083, level(m, "PT")).memtype == MemType.WRITE_COMBINING
    assert m.decode(0x20_0083, level(m, "PD")).memtype == MemType.NORMAL


def test_pae_cr3_is_32_byte_aligned() -> None:
    m = mode("pae")
    assert m.halves[0].table_align == 32
    assert m.root_from_register(0x1234_5FE7) == 0x1234_5FE0
    assert mode("x86").root_from_register(0x1234_5FE7) == 0x1234_5000


@pytest.mark.parametrize(
    ("variant", "va", "ok"),
    [
        ("x86_64", 0x0000_7FFF_FFFF_FFFF, True),
        ("x86_64", 0x0000_8000_0000_0000, False),
        ("x86_64", 0xFFFF_7FFF_FFFF_FFFF, False),
        ("x86_64", 0xFFFF_8000_0000_0000, True),
        ("la57", 0x00FF_FFFF_FFFF_FFFF, True),
        ("la57", 0x0100_0000_0000_0000, False),
        ("la57", 0xFF00_0000_0000_0000, True),
        ("la57", 0x0000_8000_0000_0000, True),
    ],
)
def test_canonical(variant: str, va: int, ok: bool) -> None:
    m = mode(variant)
    if ok:
        m.check_virtual(va)
    else:
        with pytest.raises(NonCanonicalAddressError):
            m.check_virtual(va)


def test_level_shapes() -> None:
    assert [(lv.name, lv.shift, lv.bits) for lv in mode("x86").halves[0].levels] == [
        ("PD", 22, 10),
        ("PT", 12, 10),
    ]
    pae_root = mode("pae").halves[0].levels[0]
    assert (pae_root.name, pae_root.bits) == ("PDPT", 2)
    assert [lv.number for lv in mode("la57").halves[0].levels] == [5, 4, 3, 2, 1]
    assert mode("x86_64").leaf_sizes() == [GIB, 2 * MIB, 4096]
    assert mode("x86", cr4=0).leaf_sizes() == [4096]


# ------------------------------------------------------------------- round trips

CONFIGS = [
    ("x86", {"cr4": CR4_PSE}),
    ("pae", {"cr4": CR4_PSE | CR4_PAE, "efer": EFER_NXE}),
    ("pae", {"efer": 0}),
    ("x86_64", {}),
    ("x86_64", {"efer": EFER_LME, "maxphyaddr": 36}),
    ("la57", {"cr4": CR4_PAE | CR4_LA57, "maxphyaddr": 46}),
]
MEMTYPES = [MemType.NORMAL, MemType.WRITE_THROUGH, MemType.UNCACHED_MINUS, MemType.UNCACHED]
perms = st.builds(
    lambda bits: Perm.READ | Perm(bits),
    st.integers(0, int(Perm.WRITE | Perm.EXEC | Perm.USER | Perm.GLOBAL)).map(lambda b: b & ~1),
)


def _expected_perm(m: X86Mode, perm: Perm) -> Perm:
    return perm if m.nxe else perm | Perm.EXEC


@given(st.sampled_from(CONFIGS), st.data(), perms, st.sampled_from(MEMTYPES))
def test_encode_decode_round_trip(
    config: tuple[str, dict[str, int]], data: st.DataObject, perm: Perm, memtype: MemType
) -> None:
    m = mode(config[0], **config[1])
    lv = data.draw(st.sampled_from([lv for lv in m.halves[0].levels if lv.leaf_size]))
    limit = 32 if not m.wide and lv.depth == 0 else m.pa_bits
    pa = data.draw(st.integers(0, (1 << limit) // lv.leaf_size - 1)) * lv.leaf_size
    e = m.decode(m.encode_leaf(pa, lv, perm, memtype), lv)
    assert (e.kind, e.fault, e.address, e.size) == (EntryKind.LEAF, None, pa, lv.leaf_size)
    assert e.perm == _expected_perm(m, perm)
    assert e.memtype == memtype


@given(st.sampled_from(CONFIGS), st.data(), perms, st.sampled_from(MEMTYPES))
def test_resize_keeps_attributes(
    config: tuple[str, dict[str, int]], data: st.DataObject, perm: Perm, memtype: MemType
) -> None:
    m = mode(config[0], **config[1])
    leaves = [lv for lv in m.halves[0].levels if lv.leaf_size]
    a, b = data.draw(st.sampled_from(leaves)), data.draw(st.sampled_from(leaves))
    top = 32 if not m.wide else m.pa_bits
    pa_a = data.draw(st.integers(0, (1 << top) // a.leaf_size - 1)) * a.leaf_size
    pa_b = data.draw(st.integers(0, (1 << top) // b.leaf_size - 1)) * b.leaf_size
    raw = m.encode_leaf(pa_a, a, perm, memtype) | 0x60  # A and D set: attributes too
    resized = m.resize_leaf(raw, a, b, pa_b)
    e = m.decode(resized, b)
    assert (e.fault, e.address, e.size) == (None, pa_b, b.leaf_size)
    assert (e.perm, e.memtype) == (_expected_perm(m, perm), memtype)
    assert m.resize_leaf(resized, b, a, pa_a) == raw
