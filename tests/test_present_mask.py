"""The per-mode valid mask (``PagingMode.present_mask``): EPT entries are present when any of
R, W, X (bits 2:0; and UX, bit 10, under mode-based execute control) is set (Intel SDM vol. 3C
§29.3.2), where x86, Arm and RISC-V use bit 0. Enumeration, range operations and both batch
walkers must see an execute-only EPT page (bits 2:0 = 100b) as the scalar walker does.
"""

from __future__ import annotations

import numpy as np
import pytest

from nested_scenes import build, hpa_of
from pagewalk import fast
from pagewalk.batch import Translator
from pagewalk.enumerate import mappings
from pagewalk.formats import Perm, make_mode
from pagewalk.walk import translate, walk

XO = Perm.EXEC | Perm.USER
IMPLS = ["numpy", "compiled"] if fast.AVAILABLE else ["numpy"]


def test_masks() -> None:
    scene = build("x86_64", "ept", [])
    assert scene.stage2.mode.present_mask == 0b111 | (1 << 10)  # nested_scenes sets MBEC
    for name in ("x86", "pae", "x86_64", "aarch64", "sv39"):
        assert make_mode(name).present_mask == 1


@pytest.mark.parametrize("impl", IMPLS)
def test_execute_only_pages_everywhere(impl: str) -> None:
    scene = build("x86_64", "ept", [])
    mode, roots, host = scene.stage2.mode, scene.stage2.roots, scene.host
    scene.s2.protect_range(0x8000, 0x2000, XO).ignore()  # two execute-only 4-KiB pages
    leaf = walk(host, mode, roots, 0x8000).steps[-1]
    assert leaf.raw & 0b111 == 0b100  # X only: R (bit 0) is clear
    vas = np.array([0x8000, 0x9FFF, 0xA000], dtype=np.uint64)
    want = [hpa_of(0x8000), hpa_of(0x9FFF), hpa_of(0xA000)]
    assert Translator(host, mode, roots, impl=impl).translate(vas).pa.tolist() == want
    assert translate(host, mode, roots, 0x9FFF)[0] == want[1]
    xo = [(m.va, m.size) for m in mappings(host, mode, roots) if not m.perm & Perm.READ]
    assert xo == [(0x8000, 0x1000), (0x9000, 0x1000)]  # stage 2 permutes host pages
    # range operations see them as mapped: unmapping removes them
    scene.s2.unmap_range(0x8000, 0x2000).ignore()
    after = Translator(host, mode, roots, impl=impl).translate(vas)
    assert after.pa.tolist()[2] == want[2] and after.fault.tolist()[:2] != [0, 0]
    assert all(m.perm & Perm.READ for m in mappings(host, mode, roots))


def test_stage2_lint_and_stats() -> None:
    """Stage-2 RWX guest RAM is not a "user W+X" finding; the per-level table bytes of a
    stage 2 whose root is 16 KiB (RISC-V x4) or two concatenated tables (Arm) count the root's
    size once and each lower table at its own size."""
    from pagewalk.inspect.lint import lint
    from pagewalk.inspect.stats import stats

    for regime, root_bytes in (("riscv", 16384), ("arm", 8192), ("ept", 4096)):
        scene = build("x86_64" if regime == "ept" else "sv39", regime, [])
        mode, roots = scene.stage2.mode, scene.stage2.roots
        assert mode.facts.stage == 2
        found = [f.code for f in lint(scene.host, mode, roots)]
        assert "w+x" not in found
        got = stats(scene.host, mode, roots).levels
        top, *lower = mode.halves[0].levels
        assert got[top.name].bytes == root_bytes
        for level in lower:
            assert got[level.name].bytes == got[level.name].tables * 4096
    assert make_mode("x86_64").facts.stage == 1
