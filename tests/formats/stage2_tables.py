"""Random (and damaged) stage-2 tables for comparing a codec with a manual's procedure.

Tables grow along the walks an oracle makes: every entry the oracle reads that is not yet in
memory is drawn (a pointer into a small pool of frames, a leaf, or either with random bits
flipped, or a random word) and the walk is re-run, so each example reaches deep levels without
any knowledge of the format under test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hypothesis import strategies as st

from oracles.stage2_pseudo import Outcome
from pagewalk.formats.base import PagingMode
from pagewalk.walk import Fault, descend, start, translate, walk

Oracle = Callable[[Callable[[int], int], int], Outcome]


class DictMem:
    """Physical memory as a dict of 8-byte entries (absent entries read as 0)."""

    def __init__(self) -> None:
        self.words: dict[int, int] = {}
        self.misses: list[int] = []

    def read(self, pa: int) -> int:
        if pa not in self.words:
            self.misses.append(pa)
        return self.words.get(pa, 0)

    def read_entry(self, pa: int, size: int) -> int:
        return self.words.get(pa, 0)


def damaged(base: st.SearchStrategy[int], bits: Sequence[int]) -> st.SearchStrategy[int]:
    """``base`` values, sometimes with one to three of ``bits`` flipped."""
    flips = st.lists(st.sampled_from(bits), max_size=3)
    return st.tuples(base, st.booleans(), flips).map(
        lambda t: t[0] ^ (sum({1 << b for b in t[2]}) if t[1] else 0)
    )


def grow(
    data: st.DataObject, mem: DictMem, oracle: Oracle, addr: int, entry: st.SearchStrategy[int]
) -> Outcome:
    """Run ``oracle`` on ``addr``, drawing every entry it reads that memory lacks."""
    for _ in range(8):
        mem.misses.clear()
        out = oracle(mem.read, addr)
        if not mem.misses:
            return out
        mem.words[mem.misses[-1]] = data.draw(entry, label=f"entry@{mem.misses[-1]:#x}")
    return oracle(mem.read, addr)


def compare(
    mode: PagingMode, mem: DictMem, roots: tuple[int, ...], addr: int, want: Outcome
) -> None:
    """The codec's walk, translate and leaf rights agree with the oracle's outcome."""
    got = walk(mem, mode, roots, addr)
    fault = None if got.fault is None else (got.fault.kind, got.fault.level)
    assert (got.pa, got.page_size, fault) == (want.pa, want.size, want.fault), got
    pa, size, tfault = translate(mem, mode, roots, addr)
    assert (pa, size) == (want.pa, want.size)
    assert (tfault is None) == (want.fault is None)
    if tfault is not None:
        assert (tfault.kind, tfault.level) == want.fault
    if want.fault is None:
        begun = start(mode, roots, addr)
        assert not isinstance(begun, Fault)
        reached = descend(mem, mode, begun[0], addr, begun[1])
        assert not isinstance(reached, Fault)
        rights = mode.leaf_state(reached.entry.raw, reached.acc).rights
        assert (rights.readable, rights.writable) == (want.r, want.w)
        assert (not rights.xn_user, not rights.xn_priv) == (want.xu, want.xs)
