"""Intel EPT entries and EPTPs against Intel SDM vol. 3C §29.3 (tables 29-1 to 29-6, §29.3.3).

Hand-written entries check each field (R/W/X bits 2:0, memory type 5:3, ignore-PAT 6, page size
7, accessed 8, dirty 9, user-execute 10 under mode-based execute control, the address, reserved
bits 51:N and 29:12/20:12) and each misconfiguration rule; Hypothesis compares the one walker with
the SDM's translation procedure written out in ``tests/oracles/stage2_pseudo.py`` on random and
damaged tables.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stage2_tables import DictMem, compare, damaged, grow

from oracles.stage2_pseudo import ept_translate
from pagewalk.errors import ConfigError, EntryFormatError
from pagewalk.formats import make_stage2_mode
from pagewalk.formats.base import EntryKind, MemType, Perm
from pagewalk.formats.ept import EptMode, decode_eptp, ept_from_eptp
from pagewalk.walk import walk

R, W, X, PS, A, D, UX = 1, 2, 4, 1 << 7, 1 << 8, 1 << 9, 1 << 10
WB = 6 << 3


def lv(mode: EptMode, number: int):  # type: ignore[no-untyped-def]
    return next(x for x in mode.halves[0].levels if x.number == number)


@pytest.mark.parametrize(
    ("number", "raw", "kind", "address", "size", "memtype"),
    [
        (1, 0x1234_5000 | R | W | X | WB, EntryKind.LEAF, 0x1234_5000, 4096, MemType.NORMAL),
        (1, 0x5000 | R | (0 << 3), EntryKind.LEAF, 0x5000, 4096, MemType.UNCACHED),
        (1, 0x5000 | R | (1 << 3), EntryKind.LEAF, 0x5000, 4096, MemType.WRITE_COMBINING),
        (1, 0x5000 | R | (4 << 3), EntryKind.LEAF, 0x5000, 4096, MemType.WRITE_THROUGH),
        (1, 0x5000 | R | (5 << 3), EntryKind.LEAF, 0x5000, 4096, MemType.WRITE_PROTECT),
        (2, 0x4020_0000 | R | PS | WB, EntryKind.LEAF, 0x4020_0000, 2 << 20, MemType.NORMAL),
        (3, 0x8000_0000 | R | W | PS | WB, EntryKind.LEAF, 0x8000_0000, 1 << 30, MemType.NORMAL),
        (2, 0x7000 | R | W | X, EntryKind.TABLE, 0x7000, 0, None),
        (4, 0x7000 | R, EntryKind.TABLE, 0x7000, 0, None),
        # execute-only is present (bits 2:0 = 100b) where the CPU supports it
        (1, 0x9000 | X | WB, EntryKind.LEAF, 0x9000, 4096, MemType.NORMAL),
        # bit 7 of an EPT PTE is ignored, and so are bits 63:52 (bit 63: suppress #VE)
        (1, 0x9000 | R | WB | PS | (0xFFF << 52), EntryKind.LEAF, 0x9000, 4096, MemType.NORMAL),
        # the full 52-bit address field
        (1, ((1 << 52) - 4096) | R | WB, EntryKind.LEAF, (1 << 52) - 4096, 4096, MemType.NORMAL),
    ],
)
def test_decode_fields(
    number: int, raw: int, kind: EntryKind, address: int, size: int, memtype: MemType | None
) -> None:
    m = EptMode()
    e = m.decode(raw, lv(m, number))
    assert (e.kind, e.fault, e.address, e.size, e.memtype) == (kind, None, address, size, memtype)


@pytest.mark.parametrize(
    ("number", "raw", "why"),
    [
        (1, 0x5000 | W | WB, "write without read"),  # 010b
        (1, 0x5000 | W | X | WB, "write without read"),  # 110b
        (1, 0x5000 | R | (2 << 3), "memory type 2"),
        (1, 0x5000 | R | (3 << 3), "memory type 3"),
        (1, 0x5000 | R | (7 << 3), "memory type 7"),
        (2, 0x4020_0000 | R | PS | WB | (1 << 12), "large-page"),  # bits 20:12
        (3, 0x8000_0000 | R | PS | WB | (1 << 21), "large-page"),  # bits 29:12
        (4, 0x7000 | R | PS, "bit 7"),  # PS is reserved in an EPT PML4E
        (4, 0x7000 | R | (1 << 3), "7:3"),  # bits 7:3 of a PML4E
        (2, 0x7000 | R | (1 << 5), "7:3"),  # bits 6:3 of a PDE that references a table
        (1, (1 << 46) | 0x5000 | R | WB, "51:46"),  # reserved above MAXPHYADDR = 46
    ],
)
def test_misconfigurations(number: int, raw: int, why: str) -> None:
    m = EptMode(maxphyaddr=46)
    e = m.decode(raw, lv(m, number))
    assert e.fault == "reserved"
    assert "EPT misconfiguration" in e.reason and why in e.reason


def test_not_present_and_exec_only_support() -> None:
    m = EptMode()
    e = m.decode(0x5000 | WB | A | D | UX, lv(m, 1))  # bits 2:0 = 0: not present
    assert (e.kind, e.fault) == (EntryKind.INVALID, "not-present")
    assert EptMode(exec_only=False).decode(0x5000 | X | WB, lv(m, 1)).fault == "reserved"
    no1g = EptMode(page_1g=False)
    assert no1g.decode(0x8000_0000 | R | PS, lv(no1g, 3)).fault == "reserved"
    # with mode-based execute control, bit 10 alone makes an entry present
    mb = EptMode(mbec=True)
    assert mb.decode(0x5000 | UX | WB, lv(mb, 1)).kind is EntryKind.LEAF
    # ...and is no execute-only entry: only bits 2:0 = 100b are one (SDM §29.3.3.1), so a CPU
    # without execute-only support still takes bits 2:0 = 000b with bit 10 set
    mb_no_xo = EptMode(mbec=True, exec_only=False)
    e = mb_no_xo.decode(0x5000 | UX | WB, lv(mb_no_xo, 1))
    assert (e.kind, e.fault) == (EntryKind.LEAF, None)


def test_permissions_and_ad() -> None:
    m = EptMode(mbec=True, ad=True)
    half = m.halves[0]
    acc = m.fold_table(half, lv(m, 4), 0x1000 | R | X, m.walk_start())  # no W, no UX above
    st_ = m.leaf_state(0x5000 | R | W | X | UX | WB | A | D, acc)
    assert (st_.rights.readable, st_.rights.writable) == (True, False)
    assert (st_.rights.xn_priv, st_.rights.xn_user) == (False, True)
    assert (st_.accessed, st_.dirty, st_.global_) == (True, True, False)
    assert m.table_accessed(lv(m, 4), 0x1000 | R) == 0x1000 | R | A
    assert m.mark_leaf(0x5000 | R | W, True, False, False) == 0x5000 | R | W | A | D
    assert EptMode().table_accessed(lv(m, 4), 0x1000 | R) == 0x1000 | R  # A/D off


def test_eptp() -> None:
    e = decode_eptp(0x1234_5000 | 6 | (3 << 3) | (1 << 6))
    assert (e.memtype, e.levels, e.ad, e.root) == (6, 4, True, 0x1234_5000)
    assert decode_eptp(0x5000 | 0 | (4 << 3)).levels == 5
    for bad in (0x5000 | 1 | (3 << 3), 0x5000 | 6 | (2 << 3), 0x5000 | 6 | (3 << 3) | (1 << 8)):
        with pytest.raises(ConfigError, match="EPTP"):
            decode_eptp(bad)
    mode, root = ept_from_eptp(0x5000 | 6 | (4 << 3))
    assert (mode.name, root) == ("ept5", 0x5000)
    assert mode.eptp(root) == 0x5000 | 6 | (4 << 3)


def test_encode_round_trip() -> None:
    m = make_stage2_mode("ept", mbec=True)
    for number, pa in ((1, 0x5000), (2, 0x20_0000), (3, 0x4000_0000)):
        level = lv(m, number)  # type: ignore[arg-type]
        raw = m.encode_leaf(pa, level, Perm.READ | Perm.EXEC, MemType.WRITE_THROUGH)
        e = m.decode(raw, level)
        assert (e.kind, e.address, e.memtype) == (EntryKind.LEAF, pa, MemType.WRITE_THROUGH)
        assert e.perm == Perm.READ | Perm.EXEC | Perm.USER
        moved = m.resize_leaf(raw, level, lv(m, 1), 0x7000)  # type: ignore[arg-type]
        assert m.decode(moved, lv(m, 1)).address == 0x7000  # type: ignore[arg-type]
    with pytest.raises(EntryFormatError):
        m.encode_leaf(0x5000, lv(m, 1), Perm.USER)  # type: ignore[arg-type]


def test_walk_hand_built() -> None:
    mem = DictMem()
    mem.words[0x1000 + 8 * 1] = 0x2000 | R | W | X  # PML4[1]
    mem.words[0x2000 + 8 * 2] = 0x3000 | R | X  # PDPT[2]: no W below
    mem.words[0x3000 + 8 * 3] = 0x4000 | R | W | X  # PD[3]
    mem.words[0x4000 + 8 * 4] = 0xABC_D000 | R | W | WB  # PT[4]
    gpa = (1 << 39) | (2 << 30) | (3 << 21) | (4 << 12) | 0x123
    w = walk(mem, EptMode(), (0x1000,), gpa)
    assert (w.pa, w.page_size, w.fault) == (0xABC_D123, 4096, None)
    assert w.perm == Perm.READ | Perm.USER  # R from all four, W lost at the PDPTE, X at the PTE


ENTRY_BITS = [*list(range(0, 12)), 12, 13, 20, 21, 29, 30, 45, 46, 47, 51, 52, 63]


def ept_entries(frames: list[int]) -> st.SearchStrategy[int]:
    pointer = st.sampled_from(frames).map(lambda f: f | R | W | X)
    attrs = st.integers(0, 0x7FF)
    leaf = st.tuples(st.sampled_from([*frames, 1073741824, 2097152]), attrs).map(
        lambda t: t[0] | t[1] | 1
    )
    return st.one_of(
        damaged(pointer, ENTRY_BITS), damaged(leaf, ENTRY_BITS), st.integers(0, (1 << 64) - 1)
    )


@settings(max_examples=300)
@given(
    data=st.data(),
    levels=st.sampled_from([4, 5]),
    n=st.sampled_from([46, 52]),
    mbec=st.booleans(),
    exec_only=st.booleans(),
)
def test_walk_matches_sdm_procedure(
    data: st.DataObject, levels: int, n: int, mbec: bool, exec_only: bool
) -> None:
    frames = [0x10000 + 0x1000 * i for i in range(6)]
    mode = EptMode(levels, maxphyaddr=n, mbec=mbec, exec_only=exec_only)
    eptp = mode.eptp(frames[0])
    mem = DictMem()
    top = 1 << (12 + 9 * levels)
    base = data.draw(st.integers(0, top - 1), label="base")
    for _ in range(4):
        gpa = (base + data.draw(st.integers(0, 1 << 31), label="off")) % top

        def oracle(read, a):  # type: ignore[no-untyped-def]
            return ept_translate(read, eptp, a, n=n, mbec=mbec, exec_only=exec_only)

        want = grow(data, mem, oracle, gpa, ept_entries(frames))
        compare(mode, mem, (frames[0],), gpa, want)
