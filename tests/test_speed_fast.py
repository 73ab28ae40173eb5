"""The compiled batch walker must agree with the scalar reference on every mode, bit for bit.

Same random spaces as tests/test_batch.py (mixed page sizes, splits, corrupted entries); the
compiled path (pagewalk.fast) is checked against pagewalk.walk and against the numpy path. Also
checked: the shape tables learn across calls, dump-file memory, and the numpy fallback.
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
from pagewalk.batch import FAULT_KINDS, BatchResult, Translator, translate_batch
from pagewalk.enumerate import mappings
from pagewalk.errors import ConfigError
from pagewalk.fast._rules import level_rules
from pagewalk.formats import MODE_NAMES
from pagewalk.formats.base import PagingMode
from pagewalk.walk import walk
from test_batch import random_space, sample_vas

MIB = 1 << 20

needs_fast = pytest.mark.skipif(not fastmod.AVAILABLE, reason="compiled walker not built")


@pytest.mark.parametrize("name", MODE_NAMES)
def test_every_mode_reduces_to_rules(name: str) -> None:
    mode = make_mode(name)
    for half in mode.halves:
        for level in half.levels:
            assert level_rules(mode, level) is not None, level


@needs_fast
@pytest.mark.parametrize("name", MODE_NAMES)
@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_compiled_matches_scalar(name: str, seed: int) -> None:
    rng = random.Random(seed)
    mode = make_mode(name)
    mem, space = random_space(mode, rng)
    vas = sample_vas(mode, space, rng)
    got = translate_batch(mem, mode, space.roots, np.array(vas, np.uint64), impl="compiled")
    for i, va in enumerate(vas):
        ref = walk(mem, mode, space.roots, va)
        kind = FAULT_KINDS[int(got.fault[i])] or None
        assert kind == (ref.fault.kind if ref.fault else None), (hex(va), kind, ref)
        if ref.fault is None:
            assert int(got.pa[i]) == ref.pa and int(got.page_size[i]) == ref.page_size, hex(va)
        else:
            want_level = -1 if ref.fault.level is None else ref.fault.level
            assert int(got.level[i]) == want_level, (hex(va), ref.fault)
            assert int(got.pa[i]) == 2**64 - 1 and int(got.page_size[i]) == 0
    numpy_path = translate_batch(mem, mode, space.roots, np.array(vas, np.uint64), impl="numpy")
    for field in ("pa", "page_size", "fault", "level"):
        assert np.array_equal(getattr(got, field), getattr(numpy_path, field)), field


@needs_fast
def test_aarch64_tbi_and_epd() -> None:
    from pagewalk.formats.aarch64 import TCR_DEFAULT, TCR_EPD1, TCR_TBI0

    for tcr in (TCR_DEFAULT | TCR_TBI0, TCR_DEFAULT | TCR_EPD1):
        mode = make_mode("aarch64", tcr=tcr)
        rng = random.Random(tcr)
        mem, space = random_space(mode, rng)
        vas = [*sample_vas(mode, space, rng), 0xAB00_0000_0000_1000, 0xFF00_0000_0000_0000]
        got = translate_batch(mem, mode, space.roots, vas, impl="compiled")
        want = translate_batch(mem, mode, space.roots, vas, impl="numpy")
        assert got.kinds() == want.kinds() and np.array_equal(got.pa, want.pa)


@needs_fast
def test_chunks_share_learned_shapes() -> None:
    mode = make_mode("x86_64")
    mem, space = random_space(mode, random.Random(7))
    t = Translator(mem, mode, space.roots)
    assert t.impl == "compiled"
    vas = np.array(sample_vas(mode, space, random.Random(8)) * 3, np.uint64)
    parts = [t.translate(vas[i : i + 100]) for i in range(0, vas.size, 100)]
    whole = translate_batch(mem, mode, space.roots, vas, impl="numpy")
    assert np.array_equal(np.concatenate([p.pa for p in parts]), whole.pa)


@needs_fast
def test_dump_file_memory(tmp_path: object) -> None:
    from pathlib import Path

    from pagewalk.memory.dump import FileMemory, Segment

    mode = make_mode("sv39")
    mem, space = random_space(mode, random.Random(3))
    path = Path(str(tmp_path)) / "img"
    mem.save(path)
    import mmap

    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    half = mem.end // 2
    dump = FileMemory(
        buf, [Segment(0, half, 0), Segment(half + 4096, half - 4096, half + 4096)], "x"
    )
    vas = sample_vas(mode, space, random.Random(4))
    got = translate_batch(dump, mode, space.roots, vas, impl="compiled")
    want = translate_batch(dump, mode, space.roots, vas, impl="numpy")
    assert got.kinds() == want.kinds() and np.array_equal(got.pa, want.pa)


def test_numpy_fallback_and_bad_impl() -> None:
    mem = PhysicalMemory(1 << 20)
    mode = make_mode("x86_64")

    class Wrapped:  # memory the compiled path does not know: numpy is used
        def __init__(self) -> None:
            self.gather, self.is_ram_array, self.read_entry = (
                mem.gather, mem.is_ram_array, mem.read_entry,
            )  # fmt: skip

    assert Translator(Wrapped(), mode, (0,)).impl == "numpy"  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Translator(Wrapped(), mode, (0,), impl="compiled")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        translate_batch(mem, mode, (0,), [0], impl="fortran")


def _lane_vas(
    mode: PagingMode, space: AddressSpace, mem: PhysicalMemory, rng: random.Random
) -> list[int]:
    """Mostly mapped addresses in runs of one half (so the compiled loop walks 16 abreast and
    reaches the leaves together), mixed with runs of faults, other halves and junk."""
    mapped = [m for m in mappings(mem, mode, space.roots)]
    vas: list[int] = []
    while len(vas) < 3000:
        roll = rng.random()
        if mapped and roll < 0.6:
            for _ in range(rng.choice((1, 16, 17, 40))):
                m = rng.choice(mapped)
                vas.append(m.va + rng.randrange(m.size))
        elif roll < 0.9:
            vas += sample_vas(mode, space, rng)[: rng.randrange(1, 40)]
        else:
            vas.append(rng.randrange(1 << 64))
    return vas


@needs_fast
@pytest.mark.parametrize("name", MODE_NAMES)
@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_compiled_lanes_match_reference(name: str, seed: int) -> None:
    """The 16-abreast fast loop, its hand-offs to the general loop and its memo across calls."""
    rng = random.Random(seed)
    mode = make_mode(name)
    mem, space = random_space(mode, rng)
    vas = np.array(_lane_vas(mode, space, mem, rng), np.uint64)
    t = Translator(mem, mode, space.roots, impl="compiled")
    first, again = t.translate(vas), t.translate(vas[::-1].copy())  # the second starts warm
    want = translate_batch(mem, mode, space.roots, vas, impl="numpy")
    for field in ("pa", "page_size", "fault", "level"):
        assert np.array_equal(getattr(first, field), getattr(want, field)), field
        assert np.array_equal(getattr(again, field)[::-1], getattr(want, field)), field
    for i in rng.sample(range(len(vas)), 300):
        ref = walk(mem, mode, space.roots, int(vas[i]))
        assert (FAULT_KINDS[int(first.fault[i])] or None) == (ref.fault.kind if ref.fault else None)
        if ref.fault is None:
            assert int(first.pa[i]) == ref.pa and int(first.page_size[i]) == ref.page_size


@needs_fast
@pytest.mark.parametrize("where", ["top", "end"])
@pytest.mark.parametrize("name", ["x86_64", "aarch64", "sv39"])
def test_lanes_meet_a_table_outside_ram(name: str, where: str) -> None:
    """Sixteen walks abreast reach an entry whose table lies beyond RAM: each is a bad-table
    fault at the next level, exactly as the reference walker reports it, and nothing is read
    outside the memory."""
    mode = make_mode(name)
    mem = PhysicalMemory(16 * MIB)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(8 * MIB, 8 * MIB))
    base = mode.halves[0].va_start + 0x4000_0000
    space.map_range(base, 0, 4 * MIB, Perm.READ, page_sizes=(mode.page_size,)).ignore()
    space.map_range(base + 64 * MIB, 0, 64 * 1024, Perm.READ, page_sizes=(mode.page_size,)).ignore()
    # the directory entry above the second range's leaf table, pointed beyond RAM (same shape,
    # so the fast loop takes it): to the highest table address its field can hold, or to the
    # first page past the end of RAM
    steps = walk(mem, mode, space.roots, base + 64 * MIB).steps
    slot, level = steps[-2].entry_pa, steps[-2].level
    field = mode.address_mask(level, leaf=False)
    beyond = field if where == "top" else mode.encode_table(16 * MIB, level, Perm.READ) & field
    raw = mem.read_entry(slot, mode.entry_size)
    mem.write_entry(slot, mode.entry_size, (raw & ~field) | beyond)
    vas = np.array([base + 64 * MIB + 4096 * (i % 16) + i for i in range(48)], np.uint64)
    vas = np.concatenate([np.array([base + 4096 * i for i in range(32)], np.uint64), vas])
    t = Translator(mem, mode, space.roots, impl="compiled")
    t.translate(vas[:32])  # learn the shapes, so that the next call starts on the fast loop
    got = t.translate(vas)
    for i, va in enumerate(vas.tolist()):
        ref = walk(mem, mode, space.roots, va)
        assert (FAULT_KINDS[int(got.fault[i])] or None) == (ref.fault.kind if ref.fault else None)
        if ref.fault is None:
            assert int(got.pa[i]) == ref.pa
    assert (got.fault[32:] != 0).all()


@pytest.mark.parametrize("impl", ["compiled", "numpy"])
def test_out_arrays_are_filled_in_place(impl: str) -> None:
    mode = make_mode("x86_64")
    mem, space = random_space(mode, random.Random(11))
    vas = np.array(sample_vas(mode, space, random.Random(12)), np.uint64)
    want = translate_batch(mem, mode, space.roots, vas, impl="numpy")
    out = BatchResult.empty(vas.size)
    got = translate_batch(mem, mode, space.roots, vas, impl=impl, out=out)
    assert got is out
    for field in ("pa", "page_size", "fault", "level"):
        assert np.array_equal(getattr(out, field), getattr(want, field)), field
    with pytest.raises(ConfigError, match=r"out\.pa must be a contiguous uint64 array of 3"):
        translate_batch(mem, mode, space.roots, vas[:3], impl=impl, out=out)
    with pytest.raises(ConfigError, match=r"out\.fault"):
        bad = BatchResult(out.pa[:3], out.page_size[:3], np.empty(3, np.int16), out.level[:3])  # type: ignore[arg-type]
        translate_batch(mem, mode, space.roots, vas[:3], impl=impl, out=bad)


@needs_fast
def test_lanes_stop_at_the_end_of_a_dump_segment(tmp_path: object) -> None:
    """A table just past the end of a dump's only segment, where the file goes on with bytes
    that look like a valid leaf table: the walk must fault (bad-table), not read the file."""
    import mmap
    from pathlib import Path

    from pagewalk.memory.dump import FileMemory, Segment

    mode = make_mode("x86_64")
    mem = PhysicalMemory(32 * MIB)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(8 * MIB, 8 * MIB))
    base = 0x4000_0000
    space.map_range(base, 0, 4 * MIB, Perm.READ, page_sizes=(4096,)).ignore()
    steps = walk(mem, mode, space.roots, base + 2 * MIB).steps
    leaf_table = steps[-1].entry_pa & ~0xFFF
    mem.write(16 * MIB, mem.read(leaf_table, 4096))  # a plausible table beyond the segment
    slot, level = steps[-2].entry_pa, steps[-2].level
    field = mode.address_mask(level, leaf=False)
    raw = mem.read_entry(slot, mode.entry_size)
    mem.write_entry(slot, mode.entry_size, (raw & ~field) | (16 * MIB))
    path = Path(str(tmp_path)) / "img"
    mem.save(path)
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    dump = FileMemory(buf, [Segment(0, 16 * MIB, 0)], "img")
    vas = np.array([base + 4096 * i for i in range(1024)], np.uint64)
    t = Translator(dump, mode, space.roots, impl="compiled")
    t.translate(vas[:32])  # learn the shapes first
    got = t.translate(vas)
    want = translate_batch(dump, mode, space.roots, vas, impl="numpy")
    assert got.kinds() == want.kinds() and np.array_equal(got.pa, want.pa)
    assert got.kinds()[512:] == ["bad-table"] * 512


@needs_fast
@pytest.mark.parametrize("name", MODE_NAMES)
def test_lanes_at_the_edges_of_the_halves(name: str) -> None:
    """Groups of sixteen addresses just inside and just outside each half's VA range (the
    fast loop tests a group's half at once): each must get the reference's verdict."""
    mode = make_mode(name)
    mem = PhysicalMemory(32 * MIB)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(16 * MIB, 16 * MIB))
    size = 16 * mode.page_size
    for half in mode.halves:  # pages at both ends of each half, where a wrong half would land
        for va in (half.va_start, half.va_end - size):
            space.map_range(va, 0, size, Perm.READ, page_sizes=(mode.page_size,)).ignore()
    vas: list[int] = []
    for half in mode.halves:
        page = mode.page_size
        for base, step in ((half.va_start, page), (half.va_end - page, -page)):
            vas += [(base + k * step) % 2**64 for k in range(16)]  # inside
        for base, step in ((half.va_end, page), (half.va_start - page, -page)):
            vas += [(base + k * step) % 2**64 for k in range(16)]  # outside
    vas += [mode.halves[0].va_start + page * k for k in range(15)] + [mode.halves[-1].va_start]
    t = Translator(mem, mode, space.roots, impl="compiled")
    t.translate(np.array(vas, np.uint64))  # learn the shapes
    got = t.translate(np.array(vas, np.uint64))
    for i, va in enumerate(vas):
        ref = walk(mem, mode, space.roots, va)
        kind = FAULT_KINDS[int(got.fault[i])] or None
        assert kind == (ref.fault.kind if ref.fault else None), (hex(va), kind, ref.fault)
        assert ref.fault is not None or int(got.pa[i]) == ref.pa, hex(va)


def _configured_modes() -> list[tuple[str, PagingMode]]:
    """Every mode by name, and the settings that change where the address and leaf bits lie."""
    from pagewalk.formats.aarch64 import TCR_DEFAULT, TCR_HA, TCR_HD, TCR_TBI0, TCR_TBI1

    settings: list[tuple[str, dict[str, object]]] = [(name, {}) for name in MODE_NAMES]
    settings += [
        ("x86", {"cr4": 0}),
        ("x86", {"maxphyaddr": 36}),
        ("x86", {"maxphyaddr": 40}),
        ("pae", {"maxphyaddr": 36}),
        ("x86_64", {"maxphyaddr": 46}),
        ("x86_64", {"pdpe1gb": False}),
        ("aarch64", {"tcr": TCR_DEFAULT | TCR_TBI0 | TCR_TBI1 | TCR_HA | TCR_HD}),
        *((name, {"svpbmt": True}) for name in ("sv39", "sv48", "sv57")),
    ]
    base = TCR_DEFAULT & ~((3 << 14) | (3 << 30) | (7 << 32) | 0x3F | (0x3F << 16))
    for tg0, tg1 in ((0b00, 0b10), (0b10, 0b01), (0b01, 0b11)):  # 4, 16 and 64 KiB granules
        for ips, tsz in ((0, 25), (2, 33), (5, 16), (6, 16)):
            tcr = base | tsz | tsz << 16 | tg0 << 14 | tg1 << 30 | ips << 32
            settings.append(("aarch64", {"tcr": tcr}))
    return [(f"{name}{kw}", make_mode(name, **kw)) for name, kw in settings]  # type: ignore[arg-type]


@pytest.mark.parametrize(("label", "mode"), _configured_modes(), ids=lambda v: str(v))
def test_rules_match_the_codec_on_random_entries(label: str, mode: PagingMode) -> None:
    """The rules are read off the codec's helpers with one probe per bit, which is exact only
    for helpers of the forms the compiled loop supports: on random entries (random words, and
    words with two random bits) they must give ``np_is_leaf``'s verdicts and ``np_address``'s
    addresses exactly, at every level of every setting."""
    from pagewalk.fast._rules import MASK64, apply_fields, apply_leaf_rule

    rng = random.Random(label)
    samples = [1, MASK64, 0xFFF | 1, (1 << 63) | 1]
    samples += [rng.getrandbits(64) | 1 for _ in range(512)]
    samples += [(1 << rng.randrange(64)) | (1 << rng.randrange(64)) | 1 for _ in range(512)]
    raws = np.array(samples, np.uint64)
    for half in mode.halves:
        for level in half.levels:
            rules = level_rules(mode, level)
            assert rules is not None, level
            got = apply_leaf_rule(rules.leaf_rule, rules.leaf_bits, raws)
            assert np.array_equal(got, mode.np_is_leaf(raws, level)), level
            assert np.array_equal(
                apply_fields(rules.fields[0], raws), mode.np_address(raws, level, False)
            ), level
            if level.leaf_size:
                assert np.array_equal(
                    apply_fields(rules.fields[1], raws), mode.np_address(raws, level, True)
                ), level


IMPLS = ["numpy", *(["compiled"] if fastmod.AVAILABLE else [])]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("tbi", ["none", "tbi0", "tbi1", "both"])
def test_top_byte_and_half_select_match_scalar(tbi: str, impl: str) -> None:
    """The half comes from the mode's facts (the select bit, the ignored top byte): tagged and
    untagged addresses in both halves, with bit 55 flipped, get the scalar walker's verdict."""
    from pagewalk.formats.aarch64 import TCR_DEFAULT, TCR_TBI0, TCR_TBI1

    bits = {"none": 0, "tbi0": TCR_TBI0, "tbi1": TCR_TBI1, "both": TCR_TBI0 | TCR_TBI1}[tbi]
    mode = make_mode("aarch64", tcr=TCR_DEFAULT | bits)
    rng = random.Random(bits)
    mem, space = random_space(mode, rng)
    plain = sample_vas(mode, space, rng)[:300]
    vas = [va ^ (tag << 56) for va in plain for tag in (0, 0x5A, 0xFF)]
    vas += [va ^ (1 << 55) for va in plain[:50]]
    got = translate_batch(mem, mode, space.roots, np.array(vas, np.uint64), impl=impl)
    seen = set()
    for i, va in enumerate(vas):
        ref = walk(mem, mode, space.roots, va)
        kind = FAULT_KINDS[int(got.fault[i])] or None
        assert kind == (ref.fault.kind if ref.fault else None), (hex(va), kind, ref.fault)
        assert ref.fault is not None or int(got.pa[i]) == ref.pa, hex(va)
        seen.add(kind)
    assert None in seen and "translation" in seen  # both translations and misses were tried


@needs_fast
@pytest.mark.parametrize("name", ["x86_64", "sv39", "aarch64", "pae", "la57", "sv48"])
def test_translator_sees_a_repointed_table_in_the_next_batch(name: str) -> None:
    """The compiled walker's last-level table cache lives one batch: after a batch, point an
    upper entry at another table (same shapes, other PAs); the next batch must see it."""
    mode = make_mode(name)
    mem = PhysicalMemory(64 * MIB)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(32 * MIB, 32 * MIB))
    base = mode.halves[0].va_start + (64 << 21)
    rw = Perm.READ | Perm.WRITE
    space.map_range(base, 0, 2 * MIB, rw, page_sizes=(4096,)).ignore()
    space.map_range(base + (8 << 21), 4 * MIB, 2 * MIB, rw, page_sizes=(4096,)).ignore()
    tr = Translator(mem, mode, space.roots, impl="compiled")
    va = np.repeat(np.uint64(base) + np.arange(0, 2 * MIB, 4096 * 3, dtype=np.uint64), 16)
    tr.translate(va)
    before = tr.translate(va).pa.copy()
    above_a = walk(mem, mode, space.roots, base).steps[-2]
    above_b = walk(mem, mode, space.roots, base + (8 << 21)).steps[-2]
    mem.write_entry(above_a.entry_pa, mode.entry_size, above_b.raw)
    got = tr.translate(va)
    want = translate_batch(mem, mode, space.roots, va, impl="numpy")
    assert not np.array_equal(before, want.pa), "the repointed entry changed nothing"
    for field in ("pa", "page_size", "fault", "level"):
        assert np.array_equal(getattr(got, field), getattr(want, field)), field
