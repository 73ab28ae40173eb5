"""AddressSpace against a dict model, as a Hypothesis state machine, for every paging mode.

One idea: the model knows, from the manuals alone, which leaf sizes each level of each mode holds
(Intel SDM vol. 3A §4.3-4.5, Arm ARM D8.3 with the 4 KiB granule, RISC-V privileged spec Sv32 to
Sv57), so it predicts the exact leaves of every operation: ``map_range`` takes the largest page
whose VA and PA are aligned and that fits, and a huge page that a range only partly covers is
split into leaves one level down, again and again at the range's edges. After every step the
tables must translate every sampled leaf to the model's PA, size and effective permission, and
every sampled gap must fault; no table frame may leak; and an operation that raises must leave
every table byte, the owned set and the allocator exactly as they were.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pagewalk.alloc.simple import SimpleFrameAllocator
from pagewalk.errors import (
    AlreadyMappedError,
    HugePageConflictError,
    MisalignedAddressError,
    NotMappedError,
    OutOfMemoryError,
    PagingError,
)
from pagewalk.flush import Flush
from pagewalk.formats import MODE_NAMES, Perm, make_mode
from pagewalk.memory.physical import PhysicalMemory
from pagewalk.space import AddressSpace

KIB, MIB, GIB, TIB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

#: leaf sizes per level, root first, as the manuals give them (SDM tables 4-4/4-8/4-15..4-20:
#: 4-MByte PDEs with CR4.PSE, 2-MByte PDEs, 1-GByte PDPTEs with Page1GB, no PML4/PML5 leaves;
#: Arm ARM D8.3 4K granule: L1 1 GiB and L2 2 MiB blocks; RISC-V: a leaf at every level).
LEAF_SIZES: dict[str, tuple[int, ...]] = {
    "x86": (4 * MIB, 4 * KIB),
    "pae": (2 * MIB, 4 * KIB),
    "x86_64": (GIB, 2 * MIB, 4 * KIB),
    "la57": (GIB, 2 * MIB, 4 * KIB),
    "aarch64": (GIB, 2 * MIB, 4 * KIB),
    "sv32": (4 * MIB, 4 * KIB),
    "sv39": (GIB, 2 * MIB, 4 * KIB),
    "sv48": (512 * GIB, GIB, 2 * MIB, 4 * KIB),
    "sv57": (256 * TIB, 512 * GIB, GIB, 2 * MIB, 4 * KIB),
}
#: where the upper (kernel) half starts: canonical 48/57-bit x86 and Sv39-57, TTBR1 with T1SZ=16
UPPER_START: dict[str, int | None] = {
    "x86": None,
    "pae": None,
    "sv32": None,
    "x86_64": (1 << 64) - (1 << 47),
    "la57": (1 << 64) - (1 << 56),
    "aarch64": (1 << 64) - (1 << 48),
    "sv39": (1 << 64) - (1 << 38),
    "sv48": (1 << 64) - (1 << 47),
    "sv57": (1 << 64) - (1 << 56),
}
TABLE_POOL_BASE = 0x10_0000
TABLE_POOL_FRAMES = 2048
PERM_BITS = (Perm.WRITE, Perm.EXEC, Perm.USER, Perm.GLOBAL)


def expected_perm(mode_name: str, perm: Perm) -> Perm:
    """The effective permission the hardware shows for a leaf mapped with ``perm``.

    Every format here reads whatever it maps (x86 has no read bit, Arm AP has no no-read
    encoding); 32-bit x86 paging has no XD bit (SDM §4.3), so everything is executable there.
    """
    out = perm | Perm.READ
    if mode_name == "x86":
        out |= Perm.EXEC
    return out


class Model:
    """The leaves a space should hold: leaf VA -> (size, PA, perm)."""

    def __init__(self, sizes: tuple[int, ...]) -> None:
        self.sizes = sizes
        self.leaves: dict[int, tuple[int, int, Perm]] = {}
        self._keys: list[int] | None = None

    def keys(self) -> list[int]:
        if self._keys is None:
            self._keys = sorted(self.leaves)
        return self._keys

    def _touch(self) -> None:
        self._keys = None

    def find(self, va: int) -> int | None:
        """The start of the leaf holding ``va``."""
        keys = self.keys()
        i = bisect.bisect_right(keys, va) - 1
        if i >= 0 and va < keys[i] + self.leaves[keys[i]][0]:
            return keys[i]
        return None

    def overlapping(self, lo: int, hi: int) -> list[int]:
        keys = self.keys()
        i = max(bisect.bisect_right(keys, lo) - 1, 0)
        out = []
        while i < len(keys) and keys[i] < hi:
            if keys[i] + self.leaves[keys[i]][0] > lo:
                out.append(keys[i])
            i += 1
        return out

    def first_hole(self, lo: int, hi: int) -> int | None:
        at = lo
        for k in self.overlapping(lo, hi):
            if k > at:
                return at
            at = k + self.leaves[k][0]
        return at if at < hi else None

    def plan_map(self, va: int, pa: int, size: int, allowed: tuple[int, ...]) -> list[int]:
        """The leaf sizes ``map_range`` must use: the largest aligned size that fits, in order."""
        out, at = [], va
        while at < va + size:
            fit = [
                s
                for s in allowed
                if at % s == 0 and (pa + at - va) % s == 0 and at + s <= va + size
            ]
            if not fit:
                raise AssertionError("the model could not plan a 4 KiB-aligned range")
            out.append(max(fit))
            at += max(fit)
        return out

    def map(self, va: int, pa: int, size: int, perm: Perm, allowed: tuple[int, ...]) -> None:
        at = va
        for s in self.plan_map(va, pa, size, allowed):
            self.leaves[at] = (s, pa + at - va, perm)
            at += s
        self._touch()

    def carve(self, lo: int, hi: int) -> None:
        """Split leaves that straddle ``lo`` or ``hi`` into next-level leaves, cascading."""
        work = [k for k in self.overlapping(lo, hi) if k < lo or k + self.leaves[k][0] > hi]
        while work:
            va = work.pop()
            size, pa, perm = self.leaves.pop(va)
            child = self.sizes[self.sizes.index(size) + 1]
            for off in range(0, size, child):
                c = va + off
                self.leaves[c] = (child, pa + off, perm)
                if c < hi and c + child > lo and (c < lo or c + child > hi):
                    work.append(c)
        self._touch()

    def unmap(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        self.carve(lo, hi)
        gone = []
        for k in self.overlapping(lo, hi):
            size, pa, _perm = self.leaves.pop(k)
            gone.append((k, pa, size))
        self._touch()
        return merge_runs(gone)

    def protect(self, lo: int, hi: int, perm: Perm) -> None:
        self.carve(lo, hi)
        for k in self.overlapping(lo, hi):
            size, pa, _old = self.leaves[k]
            self.leaves[k] = (size, pa, perm)


def merge_runs(runs: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Merge ``(va, pa, size)`` runs that continue each other in VA and PA."""
    out: list[tuple[int, int, int]] = []
    for va, pa, size in sorted(runs):
        if out and out[-1][0] + out[-1][2] == va and out[-1][1] + out[-1][2] == pa:
            out[-1] = (out[-1][0], out[-1][1], out[-1][2] + size)
        else:
            out.append((va, pa, size))
    return out


class RecordingTLB:
    """A stand-in TLB that only records what it was told to forget."""

    def __init__(self) -> None:
        self.flushes: list[Flush] = []

    def apply_flush(self, flush: Flush) -> None:
        self.flushes.append(flush)


def compose(units: tuple[int, ...], top: int) -> st.SearchStrategy[int]:
    """Offsets built from every page size: edges of tables (0, 1, 2, last) at each level."""
    parts: list[st.SearchStrategy[int]] = [st.integers(0, top).map(lambda n: n * units[0])]
    for big, small in itertools.pairwise(units):
        last = big // small - 1
        parts.append(st.sampled_from((0, 1, 2, last)).map(lambda n, s=small: n * s))
    return st.tuples(*parts).map(sum)


class SpaceMachine(RuleBasedStateMachine):
    """Runs AddressSpace operations against :class:`Model` (subclassed once per mode)."""

    mode_name = "x86_64"

    def __init__(self) -> None:
        super().__init__()
        self.mode = make_mode(self.mode_name)
        self.mem = PhysicalMemory(16 * MIB)
        self.frames = SimpleFrameAllocator(TABLE_POOL_BASE, TABLE_POOL_FRAMES * 4096)
        self.space = AddressSpace(self.mode, self.mem, self.frames)
        self.model = Model(LEAF_SIZES[self.mode_name])
        self.tlb = RecordingTLB()
        self.hoard: list[int] = []
        self.steps = 0

    # ------------------------------------------------------------------ helpers
    @classmethod
    def units(cls) -> tuple[int, ...]:
        return tuple(s for s in LEAF_SIZES[cls.mode_name] if s <= GIB)

    @classmethod
    def window_size(cls) -> int:
        return 4 * cls.units()[0]

    def base(self, upper: bool) -> int:
        start = UPPER_START[self.mode_name]
        return start if upper and start is not None else self.window_size()

    def span(self, upper: bool, offset: int, length: int) -> tuple[int, int]:
        """A VA and a nonzero size inside the window."""
        length = max(length, 4096)
        length = min(length, self.window_size() - offset)
        return self.base(upper) + offset, length

    def draw_range(self, data: st.DataObject, upper: bool) -> tuple[int, int, int]:
        """A range ``(va, size, pa)``: PA congruent to VA modulo some page size, and at most
        about a thousand pages of that size long, so the model stays small."""
        units = self.units()
        va, size = self.span(upper, data.draw(compose(units, 3)), data.draw(compose(units, 2)))
        align = data.draw(st.sampled_from(units))
        pa = data.draw(st.integers(0, 7)) * units[0] + va % align
        size = min(size, align * 1024)
        return va, size, pa

    def draw_target(self, data: st.DataObject, upper: bool) -> tuple[int, int]:
        """A range ``(va, size)`` that often starts inside an existing (huge) leaf, so that
        operations split pages; otherwise anywhere in the window."""
        units = self.units()
        keys = self.model.keys()
        if not keys or data.draw(st.integers(0, 3)) == 0:
            return self.span(upper, data.draw(compose(units, 3)), data.draw(compose(units, 1)))
        huge = [k for k in keys if self.model.leaves[k][0] > units[-1]]
        pool = huge if huge and data.draw(st.booleans()) else keys
        start = pool[data.draw(st.integers(0, len(pool) - 1))]
        leaf_size = self.model.leaves[start][0]
        inner = tuple(u for u in units if u < leaf_size) or (units[-1],)
        offset = data.draw(compose(inner, leaf_size // inner[0] - 1)) % leaf_size
        length = data.draw(st.one_of(compose(inner, 3), compose(units, 1)))
        window_end = self.base(upper) + self.window_size()
        if not self.base(upper) <= start < window_end:
            window_end = self.base(not upper) + self.window_size()
        va = start + offset
        return va, max(4096, min(length, window_end - va))

    def snapshot(self) -> tuple[Any, ...]:
        tb = self.space.table_bytes
        tables = {pa: self.mem.read(pa, tb) for pa in sorted(self.space.owned)}
        return tables, set(self.space.owned), self.frames.usage(), self.space.roots

    def expect_unchanged(self, before: tuple[Any, ...], exc: BaseException) -> None:
        after = self.snapshot()
        assert after[1] == before[1], f"{exc!r} changed the owned tables"
        assert after[2] == before[2], f"{exc!r} changed the allocator"
        for pa, data in before[0].items():
            assert after[0][pa] == data, f"{exc!r} changed the table at {pa:#x}"

    def attempt(
        self,
        expected: tuple[type[BaseException], ...] | None,
        call: Callable[[], Flush],
        oom_ok: bool = False,
    ) -> Flush | None:
        """Run ``call``; it must raise one of ``expected`` (and change nothing) or succeed."""
        before = self.snapshot()
        try:
            flush = call()
        except PagingError as exc:
            self.expect_unchanged(before, exc)
            if isinstance(exc, OutOfMemoryError) and oom_ok:
                return None
            assert expected is not None, f"unexpected {exc!r}"
            assert isinstance(exc, expected), f"expected {expected}, got {exc!r}"
            return None
        assert expected is None, f"expected {expected}, but the call succeeded"
        assert flush.space_id == self.space.id
        flush.apply(self.tlb)
        return flush

    def pick_leaf(self, index: int, upper: bool, offset: int) -> int:
        keys = self.model.keys()
        if keys and index % 3:
            return keys[index % len(keys)]
        return self.base(upper) + offset

    # -------------------------------------------------------------------- rules
    @rule(
        data=st.data(),
        upper=st.booleans(),
        align=st.booleans(),
        perm=st.sets(st.sampled_from(PERM_BITS)),
    )
    def map_page(self, data: st.DataObject, upper: bool, align: bool, perm: set[Perm]) -> None:
        units = self.units()
        page_size = data.draw(st.sampled_from(units))
        offset = data.draw(compose(units, 3))
        pa = data.draw(compose(units, 7))
        if align:
            offset -= offset % page_size
            pa -= pa % page_size
        va = self.base(upper) + offset
        p = Perm.READ | _join(perm)
        expected: tuple[type[BaseException], ...] | None = None
        if va % page_size or pa % page_size:
            expected = (MisalignedAddressError,)
        elif self.model.overlapping(va, va + page_size):
            expected = (AlreadyMappedError, HugePageConflictError)
        flush = self.attempt(expected, lambda: self.space.map(va, pa, page_size, p))
        if flush is not None:
            self.model.map(va, pa, page_size, p, (page_size,))
            assert flush.covers(va) and flush.covers(va + page_size - 1)

    @rule(
        upper=st.booleans(),
        offset=st.data(),
        perm=st.sets(st.sampled_from(PERM_BITS)),
        huge=st.booleans(),
    )
    def map_range(self, upper: bool, offset: st.DataObject, perm: set[Perm], huge: bool) -> None:
        va, size, pa = self.draw_range(offset, upper)
        if huge:
            # Around a whole largest page: some small pages, the huge page, some more.
            units = self.units()
            before = offset.draw(compose(units[1:], 0)) if len(units) > 1 else 0
            after = offset.draw(compose(units[1:], 0)) if len(units) > 1 else 0
            top = units[0] * offset.draw(st.integers(1, 3))
            va = self.base(upper) + top - before
            size = min(before + units[0] + after, self.window_size() - (top - before))
            pa = offset.draw(st.integers(0, 7)) * units[0] + va % units[0]
        p = Perm.READ | _join(perm)
        busy = self.model.overlapping(va, va + size)
        expected = (AlreadyMappedError, HugePageConflictError) if busy else None
        flush = self.attempt(expected, lambda: self.space.map_range(va, pa, size, p))
        if flush is None:
            return
        self.model.map(va, pa, size, p, LEAF_SIZES[self.mode_name])
        assert flush.covers(va) and flush.covers(va + size - 1)

    @rule(index=st.integers(0, 1 << 16), upper=st.booleans(), data=st.data())
    def unmap_page(self, index: int, upper: bool, data: st.DataObject) -> None:
        units = self.units()
        va = self.pick_leaf(index, upper, data.draw(compose(units, 3)))
        if data.draw(st.booleans()):
            va += data.draw(st.sampled_from(units[1:] or (0,)))
        start = self.model.find(va)
        expected: tuple[type[BaseException], ...] | None = None
        if start is None:
            expected = (NotMappedError,)
        elif start != va:
            expected = (MisalignedAddressError,)
        flush = self.attempt(expected, lambda: self.space.unmap(va))
        if flush is not None and start is not None:
            size, pa, _perm = self.model.leaves[start]
            gone = self.model.unmap(start, start + size)
            assert merge_runs(flush.unmapped) == gone == [(va, pa, size)]
            assert flush.covers(va) and flush.covers(va + size - 1)

    @rule(upper=st.booleans(), data=st.data())
    def unmap_range(self, upper: bool, data: st.DataObject) -> None:
        va, size = self.draw_target(data, upper)
        before = set(self.space.owned)
        flush = self.attempt(None, lambda: self.space.unmap_range(va, size))
        assert flush is not None
        gone = self.model.unmap(va, va + size)
        assert merge_runs(flush.unmapped) == gone
        assert flush.covers(va) and flush.covers(va + size - 1)
        if before - self.space.owned:
            assert flush.tables_freed, "tables were freed but the flush does not say so"

    @rule(
        index=st.integers(0, 1 << 16),
        upper=st.booleans(),
        data=st.data(),
        perm=st.sets(st.sampled_from(PERM_BITS)),
    )
    def protect_page(self, index: int, upper: bool, data: st.DataObject, perm: set[Perm]) -> None:
        units = self.units()
        va = self.pick_leaf(index, upper, data.draw(compose(units, 3)))
        if data.draw(st.booleans()):
            va += data.draw(st.sampled_from(units[1:] or (0,)))
        p = Perm.READ | _join(perm)
        start = self.model.find(va)
        expected: tuple[type[BaseException], ...] | None = None
        if start is None:
            expected = (NotMappedError,)
        elif start != va:
            expected = (MisalignedAddressError,)
        flush = self.attempt(expected, lambda: self.space.protect(va, p))
        if flush is not None and start is not None:
            size = self.model.leaves[start][0]
            self.model.protect(start, start + size, p)
            assert flush.covers(va) and flush.covers(va + size - 1)

    @rule(upper=st.booleans(), data=st.data(), perm=st.sets(st.sampled_from(PERM_BITS)))
    def protect_range(self, upper: bool, data: st.DataObject, perm: set[Perm]) -> None:
        units = self.units()
        if self.model.leaves and data.draw(st.booleans()):
            # Mostly mapped ranges: from a leaf's start to somewhere inside a later leaf.
            keys = self.model.keys()
            i = data.draw(st.integers(0, len(keys) - 1))
            j = data.draw(st.integers(i, min(i + 8, len(keys) - 1)))
            while keys[j] - keys[i] >= self.window_size():
                j -= 1
            va = keys[i] + data.draw(st.sampled_from((0, *units[1:])))
            va = min(va, keys[i] + self.model.leaves[keys[i]][0] - 4096)
            end = keys[j] + data.draw(st.sampled_from(units))
            end = max(min(end, keys[j] + self.model.leaves[keys[j]][0]), va + 4096)
            size = end - va
        else:
            va, size = self.draw_target(data, upper)
        p = Perm.READ | _join(perm)
        hole = self.model.first_hole(va, va + size)
        expected = (NotMappedError,) if hole is not None else None
        try:
            flush = self.space.protect_range(va, size, p)
        except NotMappedError as exc:
            assert expected is not None, f"unexpected {exc!r}"
            assert va <= exc.va < va + size and self.model.find(exc.va) is None, exc
            return
        assert expected is None, f"protect_range over the hole at {hole:#x} succeeded"
        flush.apply(self.tlb)
        self.model.protect(va, va + size, p)
        assert flush.covers(va) and flush.covers(va + size - 1)

    @rule(index=st.integers(0, 1 << 16), upper=st.booleans(), data=st.data())
    def remap(self, index: int, upper: bool, data: st.DataObject) -> None:
        units = self.units()
        va = self.pick_leaf(index, upper, data.draw(compose(units, 3)))
        if data.draw(st.booleans()):
            va += data.draw(st.sampled_from(units[1:] or (0,)))
        new_pa = data.draw(compose(units, 7))
        start = self.model.find(va)
        expected: tuple[type[BaseException], ...] | None = None
        if start is None:
            expected = (NotMappedError,)
        elif start != va or new_pa % self.model.leaves[start][0]:
            expected = (MisalignedAddressError,)
        flush = self.attempt(expected, lambda: self.space.remap(va, new_pa))
        if flush is not None and start is not None:
            size, old_pa, perm = self.model.leaves[start]
            self.model.leaves[start] = (size, new_pa, perm)
            assert flush.unmapped == [(va, old_pa, size)]
            assert flush.covers(va) and flush.covers(va + size - 1)

    @rule(
        free_left=st.integers(0, 3),
        upper=st.booleans(),
        data=st.data(),
        op=st.sampled_from(("map_range", "unmap_range", "protect_range")),
    )
    def squeezed(self, free_left: int, upper: bool, data: st.DataObject, op: str) -> None:
        """Leave only a few free frames: the operation completes or raises and changes nothing."""
        va, size, pa = self.draw_range(data, upper)
        if op != "map_range":
            va, size = self.draw_target(data, upper)
        while self.frames.usage().free > free_left:
            self.hoard.append(self.frames.allocate())
        try:
            if op == "map_range":
                busy = self.model.overlapping(va, va + size)
                expected = (AlreadyMappedError, HugePageConflictError) if busy else None
                call = lambda: self.space.map_range(va, pa, size, Perm.READ)  # noqa: E731
                if self.attempt(expected, call, oom_ok=True) is not None:
                    self.model.map(va, pa, size, Perm.READ, LEAF_SIZES[self.mode_name])
            elif op == "unmap_range":
                flush = self.attempt(None, lambda: self.space.unmap_range(va, size), oom_ok=True)
                if flush is not None:
                    assert merge_runs(flush.unmapped) == self.model.unmap(va, va + size)
            else:
                hole = self.model.first_hole(va, va + size)
                expected = (NotMappedError,) if hole is not None else None
                call = lambda: self.space.protect_range(va, size, Perm.READ)  # noqa: E731
                if self.attempt(expected, call, oom_ok=True) is not None:
                    self.model.protect(va, va + size, Perm.READ)
        finally:
            for frame in self.hoard:
                self.frames.free(frame)
            self.hoard.clear()

    @precondition(lambda self: bool(self.model.leaves))
    @rule(share_kernel=st.booleans())
    def clone_and_destroy(self, share_kernel: bool) -> None:
        """A clone translates like its source; destroying it gives back exactly its tables."""
        used = self.frames.usage().used
        clone = self.space.clone(share_kernel=share_kernel)
        assert set(clone.table_frames()) >= clone.owned
        assert not clone.owned & self.space.owned
        assert self.frames.usage().used == used + len(clone.owned)
        self.check_translations(clone, limit=16)
        clone.destroy().apply(self.tlb)
        assert self.frames.usage().used == used

    # --------------------------------------------------------------- invariants
    def check_translations(self, space: AddressSpace, limit: int) -> None:
        keys = self.model.keys()
        rng = random.Random(self.steps)
        sample = keys if len(keys) <= limit else rng.sample(keys, limit)
        for va in sample:
            size, pa, perm = self.model.leaves[va]
            for probe in (va, va + size - 1):
                result = space.walk(probe)
                assert result.ok, f"{probe:#x} should map to {pa + probe - va:#x}: {result.fault}"
                assert result.pa == pa + probe - va, f"{probe:#x}: {result.pa:#x}"
                assert result.page_size == size, f"{probe:#x}: page {result.page_size:#x}"
                want = expected_perm(self.mode_name, perm)
                assert result.perm == want, f"{probe:#x}: {result.perm!r} != {want!r}"
        # Gaps: the first and last byte of every unmapped span in the windows must fault.
        gaps: list[tuple[int, int]] = []
        for upper in {False, UPPER_START[self.mode_name] is not None}:
            at, end = self.base(upper), self.base(upper) + self.window_size()
            for k in self.model.overlapping(at, end):
                if k > at:
                    gaps.append((at, k))
                at = k + self.model.leaves[k][0]
            if at < end:
                gaps.append((at, end))
        for lo, hi in gaps if len(gaps) <= limit else rng.sample(gaps, limit):
            for probe in (lo, hi - 1):
                result = space.walk(probe)
                assert not result.ok, f"{probe:#x} should be unmapped, maps to {result.pa:#x}"

    @invariant()
    def tables_match_model(self) -> None:
        self.steps += 1
        self.check_translations(self.space, limit=24)

    @invariant()
    def no_table_frame_leaks(self) -> None:
        owned = self.space.owned
        assert self.frames.usage().used == len(owned), "allocator and owned tables disagree"
        assert set(self.space.table_frames()) == owned
        assert set(self.space.roots) <= owned
        # Tables left empty are freed: every non-root table holds a valid entry.
        entry = self.mode.entry_size
        n = self.space.table_bytes // entry
        for pa in owned - set(self.space.roots):
            raws = self.mem.read_table(pa, n, entry)
            assert (raws & 1).any(), f"empty table at {pa:#x} was kept"


def _join(perms: set[Perm]) -> Perm:
    out = Perm.NONE
    for p in perms:
        out |= p
    return out


def machine_for(mode_name: str) -> type[SpaceMachine]:
    return type(f"SpaceMachine_{mode_name}", (SpaceMachine,), {"mode_name": mode_name})


FAST = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW = settings(
    max_examples=120,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("mode_name", MODE_NAMES)
def test_space_state_machine(mode_name: str) -> None:
    run_state_machine_as_test(machine_for(mode_name), settings=FAST)


@pytest.mark.slow
@pytest.mark.parametrize("mode_name", MODE_NAMES)
def test_space_state_machine_long(mode_name: str) -> None:
    run_state_machine_as_test(machine_for(mode_name), settings=SLOW)
