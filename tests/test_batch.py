"""The batch walker must agree with the scalar walker on every mode, bit for bit.

The scalar walker (pagewalk.walk) is the reference; the batch path (pagewalk.batch) is the fast
path. Spaces are random: mixed page sizes, random permissions, partial unmaps (splits) and
corrupted entries (random bits flipped in table and leaf entries), so faults of every kind occur.
"""

from __future__ import annotations

import mmap
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagewalk import AddressSpace, Perm, PhysicalMemory, make_mode
from pagewalk.alloc import SimpleFrameAllocator
from pagewalk.batch import FAULT_KINDS, translate_batch
from pagewalk.errors import PhysicalMemoryError
from pagewalk.formats import MODE_NAMES, PagingMode
from pagewalk.memory.dump import FileMemory, Segment
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


def _two_memories(tmp_path: Path) -> tuple[PhysicalMemory, FileMemory, FileMemory]:
    """Simulated RAM with a hole, and the same bytes as a dump twice: at their own offsets, and
    moved within the file (so reads must add each segment's offset)."""
    ram = PhysicalMemory(regions=[(0, 2 * MIB), (3 * MIB, MIB)])
    rng = random.Random(5)
    for pa in range(0, 2 * MIB, 4096):
        ram.write_u64(pa + 8 * rng.randrange(512), rng.getrandbits(64))
    ram.write(4 * MIB - 16, bytes(range(16)))
    path = tmp_path / "img"
    ram.save(path)
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    same = FileMemory(buf, [Segment(0, 2 * MIB, 0), Segment(3 * MIB, MIB, 3 * MIB)], "same")
    moved_buf = mmap.mmap(-1, 3 * MIB + 4096)
    moved_buf[4096 : 4096 + 2 * MIB] = buf[: 2 * MIB]
    moved_buf[4096 + 2 * MIB :] = buf[3 * MIB : 4 * MIB]
    moved = FileMemory(
        moved_buf, [Segment(0, 2 * MIB, 4096), Segment(3 * MIB, MIB, 4096 + 2 * MIB)], "moved"
    )
    return ram, same, moved


def test_simulated_and_dumped_memory_read_alike(tmp_path: Path) -> None:
    """One read side for both backends: every read, scalar and vectorised, at aligned and
    unaligned addresses, in holes, at the edges and wrapping past 2**64, gives the same answer,
    and a vectorised gather gives what the scalar read gives."""
    mems = _two_memories(tmp_path)
    pas = [0, 8, 0x1004, 2 * MIB - 8, 2 * MIB - 4, 2 * MIB, 3 * MIB - 8, 3 * MIB, 4 * MIB - 8]
    pas += [4 * MIB - 4, 4 * MIB, 2**64 - 4, 2**64 - 8]
    for esize in (4, 8):
        arr = np.array(pas, np.uint64)
        inside = [m.is_ram_array(arr, esize) for m in mems]
        want = [m.is_ram(pa, esize) for pa in pas for m in mems[:1]]
        for got in inside:
            assert got.tolist() == want
        ok = arr[np.array(want)]
        gathers = [m.gather(ok, esize) for m in mems]
        scalar = [mems[0].read_entry(int(pa), esize) for pa in ok]
        for got in gathers:
            assert got.tolist() == scalar
        for m in mems:
            assert [m.read_entry(int(pa), esize) for pa in ok] == scalar
            assert m.read_table(0x1000, 512, esize).tolist() == [
                mems[0].read_entry(0x1000 + esize * i, esize) for i in range(512)
            ]
    for m in mems:
        assert m.read(4 * MIB - 16, 16) == bytes(range(16))
        assert m.size == 3 * MIB and m.end == 4 * MIB
        with pytest.raises(PhysicalMemoryError, match="outside"):
            m.read_entry(2 * MIB, 8)


def test_memories_follow_the_protocols(tmp_path: Path) -> None:
    """Both backends are the one segmented memory: they satisfy the protocol ladder, and the
    compiled walker's view of their bytes puts every PA where the scalar read finds it."""
    from pagewalk.memory.protocols import Segmented

    for m in _two_memories(tmp_path):
        assert isinstance(m, Segmented)
        view = m.segment_view()
        assert not view.buf.flags.writeable
        assert [(s, e) for s, e, _ in view.spans] == [(0, 2 * MIB), (3 * MIB, 4 * MIB)]
        for start, end, delta in view.spans:
            for pa in (start, end - 8):
                got = int(view.buf[pa + delta : pa + delta + 8].view("<u8")[0])
                assert got == m.read_entry(pa, 8)


def test_unaligned_root_reads_what_the_scalar_walker_reads() -> None:
    """A root that is not entry-aligned: the numpy path gathers the same bytes as the scalar
    walker (it used to read the aligned word below on simulated memory)."""
    mode = make_mode("x86_64")
    mem = PhysicalMemory(MIB)
    mem.write_u64(0x1000, 0x2003)
    mem.write_u64(0x1008, 0x3003)
    root = 0x1004  # its first entry straddles the two words above
    vas = np.array([0, 1 << 39], np.uint64)
    got = translate_batch(mem, mode, (root,), vas, impl="numpy")
    for i, va in enumerate(vas.tolist()):
        ref = walk(mem, mode, (root,), va)
        assert (FAULT_KINDS[int(got.fault[i])] or None) == (ref.fault.kind if ref.fault else None)
        assert ref.fault is None or int(got.level[i]) == ref.fault.level
