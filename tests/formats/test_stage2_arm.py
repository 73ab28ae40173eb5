"""Arm stage-2 descriptors and VTCR_EL2/VTTBR_EL2 against the Arm ARM (DDI 0487) D8 stage 2.

Hand-written descriptors check MemAttr[3:0] (bits 5:2), S2AP (7:6), AF (10), Contiguous (52),
XN[1:0] (54:53, FEAT_XNX), the block levels of each granule and the faults; the start level and
concatenated root tables follow ``AArch64.S2StartLevel``/``S2InconsistentSL``. Hypothesis compares
the one walker with ``AArch64.S2Walk`` written out in ``tests/oracles/stage2_pseudo.py``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stage2_tables import DictMem, compare, damaged, grow

from oracles.stage2_pseudo import s2_walk
from pagewalk.errors import ConfigError
from pagewalk.formats.base import EntryKind, MemType, Perm
from pagewalk.formats.stage2_arm import ArmStage2Mode, arm_s2_from_regs, decode_vttbr

AF = 1 << 10
S2R, S2W = 1 << 6, 1 << 7
BLOCK, PAGE = 0b01, 0b11


def vtcr(t0sz: int, sl0: int, tg0: int = 0, ps: int = 5, ha: bool = False) -> int:
    return t0sz | (sl0 << 6) | (tg0 << 14) | (ps << 16) | (int(ha) << 21)


KVM_40 = vtcr(24, 1)  # 40-bit IPA, 4K, start at level 1 with 2 concatenated tables


def lv(mode: ArmStage2Mode, number: int):  # type: ignore[no-untyped-def]
    return next(x for x in mode.halves[0].levels if x.number == number)


@pytest.mark.parametrize(
    ("value", "start", "root_bits", "concat"),
    [
        (KVM_40, 1, 10, 2),
        (vtcr(16, 2), 0, 9, 1),  # 48-bit, level 0
        (vtcr(21, 1), 1, 13, 16),  # 43-bit from level 1: 16 concatenated tables
        (vtcr(33, 0), 2, 10, 2),  # 31-bit IPA from level 2 (4K)
        (vtcr(25, 1, tg0=0b10), 2, 14, 8),  # 16K, 39-bit IPA from level 2: 8 tables
        (vtcr(22, 1, tg0=0b01), 2, 13, 1),  # 64K, 42-bit IPA from level 2
        (vtcr(16, 2, tg0=0b01), 1, 6, 1),  # 64K, 48-bit IPA from level 1
    ],
)
def test_start_level_and_concatenation(value: int, start: int, root_bits: int, concat: int) -> None:
    m = ArmStage2Mode(value)
    root = m.halves[0].levels[0]
    assert (m.start_level, root.bits, m.concatenated) == (start, root_bits, concat)
    assert m.halves[0].table_align == 8 << root_bits


@pytest.mark.parametrize(
    "value",
    [
        vtcr(16, 0),  # 48 bits cannot start at level 2 (needs 4 bits of concatenation at most)
        vtcr(39, 2),  # 25 bits cannot start at level 0
        vtcr(16, 1),  # 48 bits from level 1 would need 512 concatenated tables
        vtcr(34, 0, tg0=0b10),  # 16K, 30 bits cannot start at level 3
        vtcr(24, 3),  # SL0=3 is reserved with 4K (no FEAT_TTST)
        vtcr(24, 1, tg0=0b11),  # TG0=0b11 reserved
        vtcr(24, 1, ps=7),
    ],
)
def test_bad_vtcr(value: int) -> None:
    with pytest.raises(ConfigError, match="VTCR_EL2"):
        ArmStage2Mode(value)


@pytest.mark.parametrize(
    ("attr", "memtype"),
    [
        (0b0000, MemType.DEVICE_STRICT),
        (0b0001, MemType.DEVICE),
        (0b0010, "device-nGRE"),
        (0b0011, "device-GRE"),
        (0b0101, MemType.WRITE_COMBINING),
        (0b1010, MemType.WRITE_THROUGH),
        (0b1111, MemType.NORMAL),
        (0b1101, "normal-owb-inc"),
    ],
)
def test_memattr(attr: int, memtype: MemType | str) -> None:
    m = ArmStage2Mode(KVM_40)
    e = m.decode(0x5000 | PAGE | AF | S2R | (attr << 2), lv(m, 3))
    assert e.memtype == memtype


@pytest.mark.parametrize(
    ("xn", "xn_user", "xn_priv"),
    [
        (0b00, False, False),
        (0b01, False, True),
        (0b10, True, True),
        (0b11, True, False),
    ],
)
def test_s2ap_and_xn(xn: int, xn_user: bool, xn_priv: bool) -> None:
    m = ArmStage2Mode(KVM_40)
    for s2ap, (r, w) in ((0, (0, 0)), (1, (1, 0)), (2, (0, 1)), (3, (1, 1))):
        raw = 0x5000 | PAGE | AF | (s2ap << 6) | (xn << 53)
        rights = m.leaf_state(raw, m.walk_start()).rights
        assert (rights.readable, rights.writable) == (bool(r), bool(w))
        assert (rights.xn_user, rights.xn_priv, rights.user) == (xn_user, xn_priv, True)
    no_xnx = ArmStage2Mode(KVM_40, xnx=False)  # XN[0] is RES0: only bit 54 counts
    assert no_xnx.leaf_state(0x5000 | PAGE | (1 << 53), (False,) * 4).rights.xn_priv is False


def test_descriptors_and_faults() -> None:
    m = ArmStage2Mode(KVM_40)
    l1, l2, l3 = lv(m, 1), lv(m, 2), lv(m, 3)
    assert m.decode(0x4000_0000 | BLOCK | AF | S2R, l1).size == 1 << 30
    assert m.decode(0x20_0000 | BLOCK | AF | S2R, l2).size == 2 << 20
    e = m.decode(0x7000 | PAGE | (0xF << 59), l2)  # APTable/XNTable bits: ignored at stage 2
    assert (e.kind, e.fault, e.address) == (EntryKind.TABLE, None, 0x7000)
    assert m.decode(0x5000 | BLOCK | AF, l3).fault == "translation"
    assert m.decode(0x5000 | PAGE | S2R, l3).fault == "access-flag"
    assert ArmStage2Mode(vtcr(24, 1, ha=True)).decode(0x5000 | PAGE, l3).fault is None
    assert m.decode((1 << 48) | 0x5000 | PAGE | AF, l3).fault is None  # bits above 47: ignored
    small = ArmStage2Mode(vtcr(24, 1, ps=2))  # PS = 40 bits
    assert small.decode((1 << 41) | PAGE | AF, lv(small, 3)).fault == "address-size"
    assert m.decode(0x5000 | PAGE | AF | (1 << 52), l3).fault is None  # Contiguous: a hint
    assert [f.name for f in m.fields(0x5000 | PAGE | AF, l3)][:4] == [
        "valid", "type", "MemAttr", "S2AP"
    ]  # fmt: skip


def test_registers() -> None:
    mode, root = arm_s2_from_regs((5 << 48) | 0x8_4000 | 1, KVM_40)
    assert root == 0x8_4000 and mode.vttbr(root, 5) == (5 << 48) | 0x8_4000
    assert decode_vttbr((5 << 48) | 0x8_4000 | 1, KVM_40).vmid == 5
    with pytest.raises(ConfigError, match="VTTBR_EL2"):
        decode_vttbr(1 << 60, KVM_40)  # VMID bits 63:56 RES0 without VTCR_EL2.VS
    m = ArmStage2Mode(KVM_40)
    raw = m.encode_leaf(0x20_0000, lv(m, 2), Perm.READ | Perm.WRITE, MemType.DEVICE)
    e = m.decode(raw, lv(m, 2))
    assert (e.address, e.size, e.memtype) == (0x20_0000, 2 << 20, MemType.DEVICE)
    assert e.perm == Perm.READ | Perm.WRITE | Perm.USER


BITS = [0, 1, 2, 5, 6, 7, 10, 12, 13, 14, 16, 21, 30, 40, 44, 47, 48, 53, 54]


@settings(max_examples=300)
@given(
    data=st.data(),
    cfg=st.sampled_from(
        [
            KVM_40,
            vtcr(16, 2),
            vtcr(21, 1),
            vtcr(33, 0),
            vtcr(25, 1, 0b10),
            vtcr(22, 1, 0b01),
            vtcr(24, 1, ps=2, ha=True),
            vtcr(36, 0, 0b10),
        ]
    ),
    xnx=st.booleans(),
)
def test_walk_matches_s2walk(data: st.DataObject, cfg: int, xnx: bool) -> None:
    mode = ArmStage2Mode(cfg, xnx=xnx)
    g = mode.page_size
    align = mode.halves[0].table_align
    root = 16 * max(align, g)
    frames = [root + align + g * i for i in range(1, 6)] + [root + g]
    pointer = st.sampled_from(frames).map(lambda f: f | PAGE)
    leaf = st.tuples(
        st.sampled_from([*frames, 1 << 30, 1 << 41]), st.integers(0, 0x7FF), st.integers(0, 7)
    ).map(lambda t: t[0] | t[1] | (t[2] << 52) | 1)
    entry = st.one_of(damaged(pointer, BITS), damaged(leaf, BITS), st.integers(0, (1 << 64) - 1))
    mem = DictMem()
    top = mode.halves[0].va_end
    base = data.draw(st.integers(0, top - 1), label="base")
    for _ in range(4):
        ipa = (base + data.draw(st.integers(0, 1 << 31), label="off")) % top

        def oracle(read, a):  # type: ignore[no-untyped-def]
            return s2_walk(read, cfg, root, a, xnx=xnx)

        want = grow(data, mem, oracle, ipa, entry)
        compare(mode, mem, (root,), ipa, want)
    beyond = ArmStage2Mode(cfg).halves[0].va_end  # an IPA beyond T0SZ: level-0 fault
    compare(mode, mem, (root,), beyond, s2_walk(mem.read, cfg, root, beyond, xnx=xnx))
