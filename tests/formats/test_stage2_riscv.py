"""RISC-V G-stage Sv39x4/Sv48x4/Sv57x4 and hgatp against the privileged spec's hypervisor chapter.

hgatp: MODE 63:60 (8, 9, 10), VMID 57:44, PPN 43:0 with PPN[1:0] reading as zero (16-KiB root);
the root index has two more bits (11); a GPA is zero-extended, not sign-extended; a G-stage leaf
needs U = 1. Hypothesis compares the one walker with the spec's translation process as the
hypervisor chapter amends it (``tests/oracles/stage2_pseudo.py``).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stage2_tables import DictMem, compare, damaged, grow

from oracles.stage2_pseudo import gstage_walk
from pagewalk.errors import ConfigError, EntryFormatError
from pagewalk.formats.base import Perm
from pagewalk.formats.riscv_gstage import RiscVGStageMode, decode_hgatp, gstage_from_hgatp
from pagewalk.walk import walk

V, R, W, X, U, G, A, D = 1, 2, 4, 8, 16, 32, 64, 128


def pte(pa: int, flags: int) -> int:
    return (pa >> 12) << 10 | flags


def test_hgatp() -> None:
    h = decode_hgatp((8 << 60) | (0x123 << 44) | (0x80010 | 3))
    assert (h.mode, h.vmid, h.root) == ("sv39x4", 0x123, 0x8001_0000)  # PPN[1:0] read as 0
    for bad in (0, 1 << 60, 11 << 60):
        with pytest.raises(ConfigError, match="hgatp"):
            decode_hgatp(bad)
    mode, root = gstage_from_hgatp((10 << 60) | 0x80010)
    assert (mode.name, root, mode.hgatp(root)) == ("sv57x4", 0x8001_0000, (10 << 60) | 0x80010)


@pytest.mark.parametrize(("variant", "gpa_bits"), [("sv39x4", 41), ("sv48x4", 50), ("sv57x4", 59)])
def test_x4_root(variant: str, gpa_bits: int) -> None:
    m = RiscVGStageMode(variant)
    half = m.halves[0]
    assert (half.va_start, half.va_end, half.table_align) == (0, 1 << gpa_bits, 16384)
    assert half.levels[0].entries == 2048
    mem = DictMem()
    root = 0x10000
    top = half.levels[0]
    mem.words[root + 8 * 2047] = pte(1 << top.shift, V | R | U | A)  # the last of 2048 entries
    gpa = (1 << gpa_bits) - 1
    w = walk(mem, m, (root,), gpa)
    assert (w.pa, w.fault) == ((1 << top.shift) | (gpa & ((1 << top.shift) - 1)), None)
    # not sign-extended: the top bit set in a 64-bit GPA is out of range
    assert walk(mem, m, (root,), gpa | (1 << 63)).fault is not None


def test_leaves_need_u() -> None:
    m = RiscVGStageMode("sv39x4")
    leaf = m.halves[0].levels[-1]
    assert m.decode(pte(0x5000, V | R | W | A | D), leaf).fault == "page-fault"
    assert m.decode(pte(0x5000, V | R | W | U | A | D), leaf).fault is None
    raw = m.encode_leaf(0x5000, leaf, Perm.READ | Perm.WRITE)
    assert raw & U
    with pytest.raises(EntryFormatError):
        m.encode_leaf(0x5000, leaf, Perm.READ | Perm.GLOBAL)


BITS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 19, 20, 54, 61, 63]


@settings(max_examples=300)
@given(data=st.data(), variant=st.sampled_from(["sv39x4", "sv48x4", "sv57x4"]))
def test_walk_matches_translation_process(data: st.DataObject, variant: str) -> None:
    mode = RiscVGStageMode(variant)
    root = 0x40000
    hgatp = mode.hgatp(root)
    frames = [0x50000 + 0x1000 * i for i in range(6)]
    pointer = st.sampled_from(frames).map(lambda f: pte(f, V))
    leaf = st.tuples(st.sampled_from([*frames, 1 << 30, 1 << 21]), st.integers(0, 0x3FF)).map(
        lambda t: pte(t[0], t[1] | V | U)
    )
    entry = st.one_of(damaged(pointer, BITS), damaged(leaf, BITS), st.integers(0, (1 << 64) - 1))
    mem = DictMem()
    top = mode.halves[0].va_end
    base = data.draw(st.integers(0, top - 1), label="base")
    for _ in range(4):
        gpa = (base + data.draw(st.integers(0, 1 << 31), label="off")) % top

        def oracle(read, a):  # type: ignore[no-untyped-def]
            return gstage_walk(read, hgatp, a)

        want = grow(data, mem, oracle, gpa, entry)
        compare(mode, mem, (root,), gpa, want)
    compare(mode, mem, (root,), top, gstage_walk(mem.read, hgatp, top))
