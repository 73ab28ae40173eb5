"""Batch translation of large pages equals the scalar walk, lane by lane, on a reused Translator.

The compiled walker (``pagewalk/fast/_walk.c``) walks sixteen addresses abreast and writes all
sixteen results at once when every lane meets a leaf of the shape it saw last; that write ORs in
the offset inside the page, under the leaf level's size mask. Random spaces rarely give sixteen
lanes in mapped large pages, so here every batch is made of groups of sixteen addresses at
random offsets inside one large page (or inside several pages of one size and shape), for every
large-page size of every mode: x86 4 MiB (PSE), PAE 2 MiB, x86-64 and LA57 2 MiB / 1 GiB,
AArch64 4K (1 GiB, 2 MiB), 16K (32 MiB) and 64K (512 MiB) granules with 48-bit and short VAs,
Sv32 4 MiB, Sv39 to Sv57 up to 256 TiB pages (Intel SDM vol. 3A §4.3-4.5, Arm ARM D8.2-D8.3,
RISC-V privileged spec). One :class:`~pagewalk.batch.Translator` per space serves several
batches while the space changes under it (new sizes, new permissions, unmaps), and every space of
a mode shares the mode's learned shapes. Each lane must equal :func:`pagewalk.walk.walk`: PA,
page size, fault kind and level (the compiled and the numpy paths alike).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagewalk import AddressSpace, Perm, PhysicalMemory, make_mode
from pagewalk import fast as fastmod
from pagewalk.alloc import SimpleFrameAllocator
from pagewalk.batch import FAULT_KINDS, BatchResult, Translator
from pagewalk.errors import PagingError
from pagewalk.formats.base import PagingMode
from pagewalk.walk import walk

MIB = 1 << 20
LANES = 16  # _walk.c's LANES
PERMS = (
    Perm.READ | Perm.WRITE,
    Perm.READ | Perm.EXEC,
    Perm.READ | Perm.WRITE | Perm.USER,
    Perm.READ | Perm.WRITE | Perm.GLOBAL,
)


def tcr(granule: str, tsz: int) -> int:
    """TCR_EL1: both halves on one granule with ``64 - tsz``-bit VAs, IPS 48 bits."""
    tg0, tg1 = {"4k": (0b00, 0b10), "16k": (0b10, 0b01), "64k": (0b01, 0b11)}[granule]
    return tsz | (tsz << 16) | (tg0 << 14) | (tg1 << 30) | (5 << 32)


#: one mode object per configuration, shared by every space (and so its learned shapes)
MODES: dict[str, PagingMode] = {
    "x86": make_mode("x86"),
    "pae": make_mode("pae"),
    "x86_64": make_mode("x86_64"),
    "la57": make_mode("la57"),
    "aarch64-4k": make_mode("aarch64", tcr=tcr("4k", 16)),
    "aarch64-4k-39bit": make_mode("aarch64", tcr=tcr("4k", 25)),
    "aarch64-16k": make_mode("aarch64", tcr=tcr("16k", 16)),
    "aarch64-64k": make_mode("aarch64", tcr=tcr("64k", 16)),
    "aarch64-64k-31bit": make_mode("aarch64", tcr=tcr("64k", 33)),
    "sv32": make_mode("sv32"),
    "sv39": make_mode("sv39"),
    "sv48": make_mode("sv48"),
    "sv57": make_mode("sv57"),
}


def pa_limit(mode: PagingMode, size: int) -> int:
    """One past the highest PA a page of ``size`` can have (32-bit x86 PTEs hold 32 bits)."""
    if mode.name == "x86" and size == mode.page_size:
        return 1 << 32
    return 1 << mode.pa_bits


class Space:
    """A space of one mode, the pages mapped in it, and the one Translator that serves it."""

    def __init__(self, mode: PagingMode, rng: random.Random, impl: str) -> None:
        self.mode, self.rng = mode, rng
        self.mem = PhysicalMemory(32 * MIB)
        self.space = AddressSpace(mode, self.mem, SimpleFrameAllocator(16 * MIB, 16 * MIB))
        self.pages: list[tuple[int, int]] = []  # (va, size) of each mapped page
        self.holed: set[int] = set()  # pages with a hole punched in them
        self.tr = Translator(self.mem, mode, self.space.roots, impl=impl)

    def map_some(self, size: int, count: int, perm: Perm) -> None:
        """Map ``count`` pages of ``size`` at random free places (each as one leaf)."""
        rng, mode = self.rng, self.mode
        for _ in range(count):
            half = rng.choice(mode.halves)
            slots = (half.va_end - half.va_start) // size
            va = half.va_start + rng.randrange(min(slots, 1 << 20)) * size
            if rng.random() < 0.5:  # high in the half too: upper index bits and sign bits
                va = half.va_start + (slots - 1 - rng.randrange(min(slots, 64))) * size
            pa = rng.randrange(1, pa_limit(mode, size) // size) * size
            try:
                self.space.map_range(va, pa, size, perm, page_sizes=(size,)).ignore()
            except PagingError:  # taken already, or a table in the way: another place next time
                continue
            self.pages.append((va, size))

    def batch(self, groups: int) -> list[int]:
        """``groups`` groups of sixteen VAs: mostly inside one page, or one size, or anywhere."""
        rng, out = self.rng, []
        for _ in range(groups):
            kind = rng.random()
            if kind < 0.6 or len(self.pages) < 2:
                va, size = rng.choice(self.pages)
                group = [va + self.offset(size) for _ in range(LANES)]
            elif kind < 0.85:
                size = rng.choice(self.pages)[1]
                same = [p for p in self.pages if p[1] == size]
                group = [(p := rng.choice(same))[0] + self.offset(p[1]) for _ in range(LANES)]
            else:
                group = [self.anywhere() for _ in range(LANES)]
            out += group
        return out

    def offset(self, size: int) -> int:
        r = self.rng.random()
        if r < 0.1:
            return 0
        if r < 0.2:
            return size - 1 - self.rng.randrange(8)
        return self.rng.randrange(size)

    def anywhere(self) -> int:
        if self.pages and self.rng.random() < 0.5:
            va, size = self.rng.choice(self.pages)
            return va + self.offset(size)
        half = self.rng.choice(self.mode.halves)
        return self.rng.randrange(half.va_start, half.va_end)

    def mutate(self) -> None:
        """Change the space under the Translator: new permissions, a split, an unmap."""
        rng = self.rng
        whole = [p for p in self.pages if p[0] not in self.holed]
        if len(whole) > 2 and rng.random() < 0.5:
            va, size = rng.choice(whole)
            self.space.protect_range(va, size, rng.choice(PERMS)).ignore()
        large = [p for p in whole if p[1] > self.mode.page_size]
        if large and rng.random() < 0.3:  # a hole in a large page: smaller leaves around it
            va, size = rng.choice(large)
            try:
                self.space.unmap_range(va + size // 2, self.mode.page_size).ignore()
            except PagingError:  # a 32-bit PTE cannot hold the PA of a split 4 MiB page
                return
            self.holed.add(va)
        if len(self.pages) > 3 and rng.random() < 0.3:
            va, size = self.pages.pop(rng.randrange(len(self.pages)))
            self.space.unmap_range(va, size).ignore()


def check(mode: PagingMode, sp: Space, vas: list[int], got: BatchResult) -> None:
    """Every lane equals the scalar walk."""
    for i, va in enumerate(vas):
        ref = walk(sp.mem, mode, sp.space.roots, va)
        kind = FAULT_KINDS[int(got.fault[i])] or None
        assert kind == (ref.fault.kind if ref.fault else None), (hex(va), kind, ref.fault)
        if ref.fault is None:
            assert int(got.pa[i]) == ref.pa, (
                f"lane {i}: {va:#x} -> {int(got.pa[i]):#x}, want {ref.pa:#x}"
            )
            assert int(got.page_size[i]) == ref.page_size, (hex(va), int(got.page_size[i]))
        else:
            want = -1 if ref.fault.level is None else ref.fault.level
            assert int(got.level[i]) == want, (hex(va), int(got.level[i]), ref.fault)
            assert int(got.pa[i]) == 2**64 - 1 and int(got.page_size[i]) == 0, hex(va)


IMPLS = [pytest.param("compiled", marks=pytest.mark.skipif(
    not fastmod.AVAILABLE, reason="compiled walker not built")), "numpy"]  # fmt: skip


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", sorted(MODES))
@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_large_pages_batch_equals_scalar(name: str, impl: str, seed: int) -> None:
    mode, rng = MODES[name], random.Random(seed)
    sizes = mode.leaf_sizes()
    for _ in range(2):  # two spaces of the same mode object: shared shape tables
        sp = Space(mode, rng, impl)
        if impl == "compiled":
            assert sp.tr.impl == "compiled", f"{name} has no compiled path"
        order = sizes[:-1] if len(sizes) > 1 else sizes
        rng.shuffle(order)
        sp.map_some(sizes[-1], 2, rng.choice(PERMS))  # base pages: a memo at the last level
        for size in order:  # a new large size before each batch, on the same Translator
            sp.map_some(size, rng.randrange(1, 4), rng.choice(PERMS[:2]))
            if not sp.pages:
                continue
            vas = sp.batch(rng.randrange(4, 9))
            got = sp.tr.translate(np.array(vas, dtype=np.uint64))
            check(mode, sp, vas, got)
            sp.mutate()
        if sp.pages:  # and once more after the last change, into reused output arrays
            vas = sp.batch(6)
            out = BatchResult.empty(len(vas))
            check(mode, sp, vas, sp.tr.translate(np.array(vas, dtype=np.uint64), out=out))


#: per mode, leaf bits that change neither the translation nor a fault (software, A/D, G...)
FREE_BITS = {
    "x86_64": (9, 10, 11, 52, 53, 54, 55, 56),
    "sv39": (5, 6, 7, 8, 9),
    "aarch64": (51, 52, 55, 56, 57, 58),
}


@pytest.mark.skipif(not fastmod.AVAILABLE, reason="compiled walker not built")
@pytest.mark.parametrize("name", sorted(FREE_BITS))
def test_translators_of_one_mode_outlive_each_others_learning(name: str) -> None:
    """Two live Translators of one mode: one learns so many shapes that the shared tables grow.

    The other must use the grown tables (not the old, released arrays) and agree with walk().
    """
    mode = make_mode(name)  # a fresh mode object: a fresh plan, with the smallest tables
    mem = PhysicalMemory(32 * MIB)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(16 * MIB, 16 * MIB))
    va0 = 1 << 36
    space.map_range(va0, 8 * MIB, 512 * 4096, PERMS[0], page_sizes=(4096,)).ignore()
    table = space.walk(va0).steps[-1].entry_pa
    bits = FREE_BITS[name]
    for i in range(512):  # up to 2**len(bits) shapes at the leaf level
        extra = sum(1 << b for k, b in enumerate(bits) if i >> k & 1)
        mem.write_entry(table + 8 * i, 8, mem.read_entry(table + 8 * i, 8) ^ extra)
    vas = np.array([va0 + i * 4096 + 8 * i for i in range(512)], dtype=np.uint64)
    early = Translator(mem, mode, space.roots, impl="compiled")
    early.translate(vas[:LANES])  # knows the first shapes, and points at the first tables
    late = Translator(mem, mode, space.roots, impl="compiled")
    late.translate(vas)  # learns every shape: the shared tables are reallocated as they grow
    for tr in (early, late):
        got = tr.translate(vas)
        for i, va in enumerate(vas.tolist()):
            ref = walk(mem, mode, space.roots, va)
            assert ref.pa is not None and int(got.pa[i]) == ref.pa, hex(va)
            assert int(got.page_size[i]) == 4096 and int(got.fault[i]) == 0, hex(va)
