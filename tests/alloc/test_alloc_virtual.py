"""The virtual-range allocator: first and best fit, take, coalescing, guards, page 0."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pagewalk.alloc import VirtualRangeAllocator
from pagewalk.alloc._treap import Treap
from pagewalk.errors import AllocatorError, MisalignedAddressError, OutOfMemoryError

PAGE = 0x1000


def test_page_zero_is_held_back_unless_asked() -> None:
    va = VirtualRangeAllocator(0, 1 << 20)
    assert va.alloc(PAGE) == PAGE
    with pytest.raises(AllocatorError, match="page 0 is held back"):
        va.take(0, PAGE)
    open_zero = VirtualRangeAllocator(0, 1 << 20, allow_page_zero=True)
    assert open_zero.alloc(PAGE) == 0


def test_first_fit_and_best_fit() -> None:
    va = VirtualRangeAllocator(0x10000, 0x100000)
    runs = [va.alloc(PAGE) for _ in range(8)]
    va.free(runs[1], PAGE)  # a one-page hole
    va.free(runs[4], PAGE)
    va.free(runs[5], PAGE)  # a two-page hole
    assert va.alloc(PAGE, best_fit=True) == runs[1]
    va.free(runs[1], PAGE)
    assert va.alloc(PAGE) == runs[1]  # first fit: the lowest hole
    assert va.alloc(2 * PAGE, best_fit=True) == runs[4]


def test_alignment_is_honoured() -> None:
    va = VirtualRangeAllocator(0x1000, 1 << 30)
    va.alloc(PAGE)
    assert va.alloc(PAGE, 0x200000) % 0x200000 == 0
    assert va.alloc(0x3000, 0x10000, best_fit=True) % 0x10000 == 0


def test_take_claims_a_fixed_range_or_says_what_is_in_use() -> None:
    va = VirtualRangeAllocator(0x1000, 1 << 20)
    assert va.take(0x10000, 0x4000) == 0x10000
    with pytest.raises(AllocatorError, match="0x12000-0x15fff: 0x12000 is in use"):
        va.take(0x12000, 0x4000)
    with pytest.raises(AllocatorError, match="0xe000-0x15fff: 0x10000 is in use"):
        va.take(0xE000, 0x8000)


def test_free_coalesces_with_both_neighbours() -> None:
    va = VirtualRangeAllocator(0x1000, 0x100000)
    a, b, c = va.alloc(PAGE), va.alloc(PAGE), va.alloc(PAGE)
    va.free(a, PAGE)
    va.free(c, PAGE)
    va.free(b, PAGE)
    assert list(va.holes()) == [(0x1000, 0xFF000)]


def test_guard_pages_surround_each_allocation() -> None:
    va = VirtualRangeAllocator(0x1000, 0x100000, guard_pages=1)
    a = va.alloc(0x2000)
    b = va.alloc(PAGE)
    assert a == 0x2000 and b == 0x6000  # guards at 0x1000, 0x4000 and 0x5000, 0x7000
    with pytest.raises(AllocatorError, match="in use"):
        va.take(0x4000, PAGE)
    va.free(a, 0x2000)
    va.free(b, PAGE)
    assert va.free_bytes == 0xFF000


@pytest.mark.parametrize(
    ("call", "error", "text"),
    [
        (lambda v: v.alloc(0), AllocatorError, "size must be > 0"),
        (lambda v: v.alloc(0x800), MisalignedAddressError, "not aligned"),
        (lambda v: v.alloc(PAGE, 0x3000), AllocatorError, "power of two"),
        (lambda v: v.take(0x10800, PAGE), MisalignedAddressError, "0x10800"),
        (lambda v: v.take(0x200000, PAGE), AllocatorError, "outside the managed space"),
        (lambda v: v.free(0x10000, PAGE), AllocatorError, "not a live range"),
        (lambda v: v.alloc(1 << 21), OutOfMemoryError, "no free virtual range"),
    ],
)
def test_bad_arguments(call, error, text) -> None:  # type: ignore[no-untyped-def]
    va = VirtualRangeAllocator(0x1000, 0x100000)
    with pytest.raises(error, match=text):
        call(va)


def test_free_must_match_the_live_range() -> None:
    va = VirtualRangeAllocator(0x1000, 0x100000)
    a = va.alloc(0x2000)
    with pytest.raises(AllocatorError, match=r"live range there is 0x2000 bytes"):
        va.free(a, PAGE)
    assert len(va) == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["alloc", "take", "free"]), st.integers(0, 63), st.integers(1, 6)
        ),
        max_size=60,
    ),
    st.booleans(),
    st.integers(0, 1),
)
def test_against_a_page_model(ops: list[tuple[str, int, int]], best: bool, guard: int) -> None:
    va = VirtualRangeAllocator(0, 64 * PAGE, best_fit=best, guard_pages=guard)
    used: dict[int, set[int]] = {}  # live VA -> pages it claims (guards included)
    sizes: dict[int, int] = {}
    for op, page, n in ops:
        busy = set().union(*used.values()) | {0}
        if op == "alloc":
            try:
                got = va.alloc(n * PAGE, PAGE << (page % 3))
            except OutOfMemoryError:
                continue
            assert got % (PAGE << (page % 3)) == 0
            claim = set(range(got // PAGE - guard, got // PAGE + n + guard))
            assert not claim & busy and min(claim) >= 0 and max(claim) < 64
            used[got], sizes[got] = claim, n * PAGE
        elif op == "take":
            want = set(range(page, page + n))
            if max(want) >= 64:
                continue
            if want & busy:
                with pytest.raises(AllocatorError):
                    va.take(page * PAGE, n * PAGE)
            else:
                va.take(page * PAGE, n * PAGE)
                used[page * PAGE], sizes[page * PAGE] = want, n * PAGE
        elif used:
            victim = sorted(used)[page % len(used)]
            va.free(victim, sizes.pop(victim))
            del used[victim]
        free_pages = 63 - len(set().union(*used.values()))
        assert va.free_bytes == free_pages * PAGE
        holes = list(va.holes())
        assert all(a + s < b for (a, s), (b, _) in itertools.pairwise(holes))


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 50)), max_size=80))
def test_treap_matches_a_dict(pairs: list[tuple[int, int]]) -> None:
    tree, model = Treap(), {}
    for key, value in pairs:
        if key in model:
            tree.delete(key)
            del model[key]
        else:
            tree.insert(key, value)
            model[key] = value
    assert list(tree.items()) == sorted(model.items())
    for probe in (0, 50, 100, 201):
        below = [k for k in model if k <= probe]
        assert tree.floor(probe) == ((max(below), model[max(below)]) if below else None)
        fits = sorted(k for k in model if k >= probe and model[k] >= 25)
        assert tree.first_at_least(25, probe) == ((fits[0], model[fits[0]]) if fits else None)
