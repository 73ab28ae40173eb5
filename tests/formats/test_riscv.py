"""RISC-V Sv32/Sv39/Sv48/Sv57 PTEs against the privileged spec ("Supervisor-Level ISA").

PTE layout: V R W X U G A D (bits 7:0), RSW 9:8, PPN from bit 10; Sv39+ bits 63:54 reserved
(62:61 PBMT with Svpbmt, 63 N with Svnapot). The translation process: W=1 with R=0 faults, a PTE
with R or X is a leaf at any level, a misaligned superpage faults, a pointer at level 0 faults,
and for non-leaf PTEs D, A, U (and PBMT with Svpbmt) are reserved.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagewalk.errors import NonCanonicalAddressError
from pagewalk.formats.base import EntryKind, MemType, Perm
from pagewalk.formats.riscv import RiscVMode

V, R, W, X, U, G, A, D = 1, 2, 4, 8, 16, 32, 64, 128


def pte(pa: int, flags: int) -> int:
    return (pa >> 12) << 10 | flags


@pytest.mark.parametrize(
    ("variant", "number", "raw", "kind", "address", "size"),
    [
        ("sv32", 1, pte(0x40_0000, V | R | W | X | A | D), EntryKind.LEAF, 0x40_0000, 4 << 20),
        ("sv32", 0, 0xFFFF_FC0F, EntryKind.LEAF, 0x3_FFFF_F000, 4096),  # 34-bit PA
        ("sv32", 1, pte(0x2000, V), EntryKind.TABLE, 0x2000, 0),
        ("sv39", 2, pte(0x4000_0000, V | R | A), EntryKind.LEAF, 0x4000_0000, 1 << 30),
        ("sv39", 1, pte(0x20_0000, V | X | A), EntryKind.LEAF, 0x20_0000, 2 << 20),
        ("sv39", 0, 0x003F_FFFF_FFFF_FC03, EntryKind.LEAF, 0xFF_FFFF_FFFF_F000, 4096),  # 56 bits
        ("sv48", 3, pte(0x80_0000_0000, V | R | A), EntryKind.LEAF, 0x80_0000_0000, 1 << 39),
        ("sv57", 4, pte(1 << 48, V | R | A), EntryKind.LEAF, 1 << 48, 1 << 48),
        ("sv57", 4, pte(0x3000, V), EntryKind.TABLE, 0x3000, 0),
        # RSW (bits 9:8) is for software, never reserved.
        ("sv39", 0, pte(0x9000, V | R | A) | 0x300, EntryKind.LEAF, 0x9000, 4096),
    ],
)
def test_decode_good(
    variant: str, number: int, raw: int, kind: EntryKind, address: int, size: int
) -> None:
    m = RiscVMode(variant)
    level = next(lv for lv in m.halves[0].levels if lv.number == number)
    e = m.decode(raw, level)
    assert (e.kind, e.fault, e.address, e.size) == (kind, None, address, size)


@pytest.mark.parametrize(
    ("variant", "svpbmt", "number", "raw"),
    [
        ("sv39", False, 0, pte(0x9000, V | W)),  # W=1 R=0
        ("sv39", False, 0, pte(0x9000, V | W | X)),
        ("sv32", False, 0, pte(0x9000, V | W)),
        ("sv39", False, 1, pte(0x20_1000, V | R)),  # misaligned megapage
        ("sv39", False, 2, pte(0x4020_0000, V | R)),  # misaligned gigapage
        ("sv48", False, 3, pte(0x80_4000_0000, V | R)),  # misaligned terapage
        ("sv32", False, 1, pte(0x40_1000, V | R)),
        ("sv39", False, 1, pte(0x2000, V | A)),  # A/D/U reserved in a non-leaf
        ("sv39", False, 1, pte(0x2000, V | D)),
        ("sv32", False, 1, pte(0x2000, V | U)),
        ("sv39", False, 0, pte(0x2000, V)),  # a pointer at level 0
        ("sv39", False, 0, pte(0x9000, V | R) | 1 << 54),  # 63:54 reserved
        ("sv39", False, 0, pte(0x9000, V | R) | 1 << 61),  # PBMT without Svpbmt
        ("sv39", True, 0, pte(0x9000, V | R) | 1 << 63),  # N (Svnapot) not implemented
        ("sv39", True, 0, pte(0x9000, V | R) | 3 << 61),  # PBMT=3 reserved
        ("sv39", True, 1, pte(0x2000, V) | 1 << 61),  # PBMT reserved in a non-leaf
    ],
)
def test_decode_faults(variant: str, svpbmt: bool, number: int, raw: int) -> None:
    m = RiscVMode(variant, svpbmt=svpbmt)
    level = next(lv for lv in m.halves[0].levels if lv.number == number)
    assert m.decode(raw, level).fault == "page-fault"


def test_invalid() -> None:
    m = RiscVMode("sv39")
    assert m.decode(pte(0x9000, R | W | X), m.halves[0].levels[-1]).kind is EntryKind.INVALID


@pytest.mark.parametrize(
    ("pbmt", "memtype"), [(0, MemType.NORMAL), (1, MemType.WRITE_COMBINING), (2, MemType.DEVICE)]
)
def test_svpbmt(pbmt: int, memtype: MemType) -> None:
    m = RiscVMode("sv48", svpbmt=True)
    assert m.decode(pte(0x9000, V | R) | pbmt << 61, m.halves[0].levels[-1]).memtype == memtype


def test_permissions() -> None:
    m = RiscVMode("sv39")
    leaf = m.halves[0].levels[-1]
    assert m.decode(pte(0x9000, V | X | U | G), leaf).perm == Perm.EXEC | Perm.USER | Perm.GLOBAL
    assert m.decode(pte(0x9000, V | R | W), leaf).perm == Perm.READ | Perm.WRITE


@pytest.mark.parametrize(
    ("variant", "va", "ok"),
    [
        ("sv39", 0x0000_003F_FFFF_FFFF, True),
        ("sv39", 0x0000_0040_0000_0000, False),
        ("sv39", 0xFFFF_FFC0_0000_0000, True),
        ("sv39", 0xFFFF_FF80_0000_0000, False),
        ("sv48", 0x0000_7FFF_FFFF_FFFF, True),
        ("sv48", 0xFFFF_8000_0000_0000, True),
        ("sv48", 0x0000_8000_0000_0000, False),
        ("sv57", 0x00FF_FFFF_FFFF_FFFF, True),
        ("sv57", 0x0100_0000_0000_0000, False),
    ],
)
def test_sign_extension(variant: str, va: int, ok: bool) -> None:
    m = RiscVMode(variant)
    if ok:
        m.check_virtual(va)
    else:
        with pytest.raises(NonCanonicalAddressError):
            m.check_virtual(va)


def test_satp() -> None:
    assert RiscVMode("sv39").satp(0x8020_0000, asid=5) == 8 << 60 | 5 << 44 | 0x80200
    assert RiscVMode("sv32").satp(0x8020_0000, asid=5) == 1 << 31 | 5 << 22 | 0x80200


# ------------------------------------------------------------------- round trips

perms = st.sampled_from(
    [
        Perm.READ,
        Perm.READ | Perm.WRITE,
        Perm.EXEC,
        Perm.READ | Perm.EXEC,
        Perm.READ | Perm.WRITE | Perm.EXEC,
    ]
).flatmap(lambda p: st.sampled_from([p, p | Perm.USER, p | Perm.GLOBAL]))


@given(
    st.sampled_from(["sv32", "sv39", "sv48", "sv57"]),
    st.booleans(),
    st.data(),
    perms,
    st.sampled_from([MemType.NORMAL, MemType.WRITE_COMBINING, MemType.DEVICE]),
)
def test_round_trip_and_resize(
    variant: str, svpbmt: bool, data: st.DataObject, perm: Perm, memtype: MemType
) -> None:
    m = RiscVMode(variant, svpbmt=svpbmt)
    if not m.svpbmt:
        memtype = MemType.NORMAL
    levels = m.halves[0].levels
    a, b = data.draw(st.sampled_from(levels)), data.draw(st.sampled_from(levels))
    pa_a = data.draw(st.integers(0, (1 << m.pa_bits) // a.leaf_size - 1)) * a.leaf_size
    pa_b = data.draw(st.integers(0, (1 << m.pa_bits) // b.leaf_size - 1)) * b.leaf_size
    raw = m.encode_leaf(pa_a, a, perm, memtype)
    e = m.decode(raw, a)
    assert (e.kind, e.fault, e.address, e.size) == (EntryKind.LEAF, None, pa_a, a.leaf_size)
    assert (e.perm, e.memtype) == (perm, memtype)
    resized = m.resize_leaf(raw, a, b, pa_b)
    f = m.decode(resized, b)
    assert (f.fault, f.address, f.size, f.perm, f.memtype) == (
        None,
        pa_b,
        b.leaf_size,
        perm,
        memtype,
    )
    assert m.resize_leaf(resized, b, a, pa_a) == raw
