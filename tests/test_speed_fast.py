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

from pagewalk import PhysicalMemory, make_mode
from pagewalk import fast as fastmod
from pagewalk.batch import FAULT_KINDS, Translator, translate_batch
from pagewalk.errors import ConfigError
from pagewalk.fast._rules import level_rules
from pagewalk.formats import MODE_NAMES
from pagewalk.walk import walk
from test_batch import random_space, sample_vas

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
