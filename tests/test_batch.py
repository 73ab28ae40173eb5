"""The batch walker must agree with the scalar walker on every mode, bit for bit.

The scalar walker (pagewalk.walk) is the reference; the batch path (pagewalk.batch) is the fast
path. Spaces are random: mixed page sizes, random permissions, partial unmaps (splits) and
corrupted entries (random bits flipped in table and leaf entries), so faults of every kind occur.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagewalk import AddressSpace, Perm, PhysicalMemory, make_mode
from pagewalk.alloc import SimpleFrameAllocator
from pagewalk.batch import FAULT_KINDS, translate_batch
from pagewalk.formats import MODE_NAMES, PagingMode
from pagewalk.walk import walk

MIB = 1 << 20


def random_space(mode: PagingMode, rng: random.Random) -> tuple[PhysicalMemory, AddressSpace]:
    mem = PhysicalMemory(64 * MIB)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(48 * MIB, 16 * MIB))
    sizes = [s for s in mode.leaf_sizes() if s <= 4 * MIB]
    for _ in range(rng.randrange(3, 10)):
        half = rng.choice(mode.halves)
        size = rng.choice(sizes)
        n = rng.randrange(1, 4)
        va = half.va_start + rng.randrange(0, 64) * 4 * MIB + rng.randrange(4) * size
        pa = rng.randrange(0, 32 * MIB // size) * size
        perm = Perm(rng.randrange(1, 32)) | Perm.READ
        try:
            space.map_range(va, pa, size * n, perm, page_sizes=(size,)).ignore()
        except Exception:  # overlaps with an earlier range are fine to skip here
            continue
        if rng.random() < 0.3:
            space.unmap_range(va + mode.page_size, mode.page_size).ignore()
    for table in rng.sample(space.table_frames(), k=min(3, len(space.table_frames()))):
        slot = table + rng.randrange(512 if mode.entry_size == 8 else 1024) * mode.entry_size
        raw = mem.read_entry(slot, mode.entry_size)
        if raw & 1:
            bit = rng.randrange(mode.entry_size * 8)
            mem.write_entry(slot, mode.entry_size, raw ^ (1 << bit))
    return mem, space


def sample_vas(mode: PagingMode, space: AddressSpace, rng: random.Random) -> list[int]:
    vas = []
    for half in mode.halves:
        for _ in range(150):
            vas.append(half.va_start + rng.randrange(0, 256 * MIB))
    vas += [rng.randrange(1 << 64) for _ in range(50)]
    return vas


@pytest.mark.parametrize("name", MODE_NAMES)
@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_batch_matches_scalar(name: str, seed: int) -> None:
    rng = random.Random(seed)
    mode = make_mode(name)
    mem, space = random_space(mode, rng)
    vas = sample_vas(mode, space, rng)
    got = translate_batch(mem, mode, space.roots, np.array(vas, dtype=np.uint64))
    for i, va in enumerate(vas):
        ref = walk(mem, mode, space.roots, va)
        kind = FAULT_KINDS[int(got.fault[i])] or None
        want_kind = ref.fault.kind if ref.fault else None
        assert kind == want_kind, (hex(va), kind, ref)
        if ref.fault is None:
            assert int(got.pa[i]) == ref.pa and int(got.page_size[i]) == ref.page_size, hex(va)
        else:
            want_level = -1 if ref.fault.level is None else ref.fault.level
            assert int(got.level[i]) == want_level, (hex(va), ref.fault)
            assert int(got.pa[i]) == 2**64 - 1


def test_empty_and_bad_root() -> None:
    mode = make_mode("x86_64")
    mem = PhysicalMemory(MIB)
    got = translate_batch(mem, mode, (0,), np.array([], dtype=np.uint64))
    assert got.pa.size == 0
    got = translate_batch(mem, mode, (2 * MIB,), np.array([0x1000], dtype=np.uint64))
    assert got.kinds() == ["bad-table"] and int(got.level[0]) == 4
