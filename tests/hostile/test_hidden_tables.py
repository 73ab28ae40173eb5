"""No hidden mappings, and no crash on malformed entries.

A page table that runs past the end of the image or across a ``PT_LOAD`` boundary is used by
``translate``/``walk`` (they read the entries that exist, and fault on the others): ``maps``,
``p2v``, ``stats`` and ``lint`` must see the same entries, and say the table is partial. Entries
that break a format rule (an AArch64 block at level 0, x86 PS in a PML4E/PML5E or in a PDPTE
without 1-GByte pages, reserved bits, RISC-V misaligned superpages or W without R) are faults
that ``lint`` names, never internal errors (Intel SDM vol. 3A §4.5 tables 4-14 to 4-20; Arm ARM
D8.3; RISC-V privileged spec, "Sv39" PTE rules). Random tables in every mode family only ever
raise :class:`~pagewalk.errors.PagingError`.
"""

from __future__ import annotations

import bisect
import json
import struct
from pathlib import Path

import pytest
from hostile_images import (
    STRADDLE_IN,
    aarch64_l0_block,
    pagewalk_cli,
    random_tables,
    straddle_core,
    straddle_end,
    write_image,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagewalk.cli.machine import load_machine
from pagewalk.enumerate import EnumStats, mappings
from pagewalk.errors import PagingError
from pagewalk.formats import make_mode
from pagewalk.formats.base import PagingMode
from pagewalk.inspect.lint import lint
from pagewalk.inspect.stats import stats
from pagewalk.memory.physical import PhysicalMemory
from pagewalk.walk import translate, walk


@pytest.fixture(scope="module")
def partial(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("partial")
    return {"end": str(straddle_end(d)), "core": str(straddle_core(d))}


WARNING = "pagewalk: warning: table at 0x4000 (level 1, PT) lies partly outside the image"


# ------------------------------------------------------------------ tables partly outside RAM
@pytest.mark.parametrize("image", ["end", "core"])
def test_maps_lists_what_translate_resolves(partial: dict[str, str], image: str) -> None:
    proc = pagewalk_cli("maps", partial[image], "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["va"], r["size"], r["pa"]) for r in rows] == [(0, STRADDLE_IN * 0x1000, 0x100000)]
    assert WARNING in proc.stderr
    assert "0x4800-0x5000" in proc.stderr and "entries 256-511" in proc.stderr
    m = load_machine(partial[image], {})
    for i in (0, 1, 129, STRADDLE_IN - 1):
        pa, size, fault = translate(m.mem, m.mode, m.roots, i << 12)
        assert fault is None and pa == 0x100000 + (i << 12) and size == 0x1000
    w = walk(m.mem, m.mode, m.roots, STRADDLE_IN << 12)
    assert w.fault is not None and w.fault.kind == "bad-table" and w.fault.level == 1


@pytest.mark.parametrize("image", ["end", "core"])
def test_lint_reports_the_partial_table(partial: dict[str, str], image: str) -> None:
    proc = pagewalk_cli("lint", partial[image], "--json")
    assert proc.returncode == 1, proc.stderr
    found = [f for f in json.loads(proc.stdout)["findings"] if f["code"] == "partial-table"]
    assert len(found) == 1, found
    f = found[0]
    assert f["severity"] == "error" and f["level"] == "PT" and f["entry_pa"] == 0x4800
    assert f["va"] == STRADDLE_IN << 12
    assert "0x4000" in f["message"] and "0x4800-0x5000" in f["message"]
    proc = pagewalk_cli("lint", partial[image])
    assert proc.returncode == 1 and "partial-table" in proc.stdout


@pytest.mark.parametrize("image", ["end", "core"])
def test_stats_and_p2v_see_and_warn(partial: dict[str, str], image: str) -> None:
    proc = pagewalk_cli("stats", partial[image], "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {lv["name"]: lv["leaves"] for lv in report["levels"]}["PT"] == STRADDLE_IN
    assert report["partial_tables"] == [
        {"pa": 0x4000, "level": "PT", "missing": [[0x4800, 0x5000]]}
    ]
    assert WARNING in proc.stderr
    proc = pagewalk_cli("p2v", partial[image], "0x181000", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [a["va"] for a in json.loads(proc.stdout)[0]["vas"]] == [0x81000]
    assert WARNING in proc.stderr


def test_segments_adjacent_in_pa_only_are_not_partial(tmp_path: Path) -> None:
    """Two PT_LOADs that meet in PA but not in the file: every entry is in RAM, no warning."""
    from hostile_images import _chain, _table, write_core

    mem = bytearray(0x5000)
    _chain(mem, 0x4000)
    mem[0x4000:0x5000] = _table([(0x100000 + i * 0x1000) | 7 for i in range(512)])
    path = write_core(
        tmp_path / "split.core", [(0x4400, mem[0x4400:]), (0, mem[:0x4400])], cr3=0x1000
    )
    proc = pagewalk_cli("maps", str(path), "--json")
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    assert [(r["va"], r["size"]) for r in json.loads(proc.stdout)] == [(0, 0x200000)]
    m = load_machine(str(path), {})
    assert not [f for f in lint(m.mem, m.mode, m.roots) if f.code == "partial-table"]


def test_partial_root_table(tmp_path: Path) -> None:
    """A PML4 whose upper half lies past the end of the image: its lower half still counts."""
    mem = bytearray(0x1000 + 0x800)
    struct.pack_into("<Q", mem, 0x1000, 0x0 | 0x87)  # PML4E with PS: reserved, and a fault
    struct.pack_into("<Q", mem, 0x1008, 0x1000 | 7)  # recursive slot
    path = write_image(tmp_path / "root.img", mem)
    st_ = EnumStats()
    m = load_machine(str(path), {})
    rows = list(mappings(m.mem, m.mode, m.roots, stats=st_, limit=1 << 20))
    assert rows and all(r.va >> 39 == 1 for r in rows)
    assert {p.pa for p in st_.partial.values()} == {0x1000}
    codes = {f.code for f in lint(m.mem, m.mode, m.roots)}
    assert {"partial-table", "reserved", "recursive"} <= codes


# ------------------------------------------------------------------ malformed entries
def test_aarch64_level0_block_is_a_fault_not_a_crash(tmp_path: Path) -> None:
    path = str(aarch64_l0_block(tmp_path))
    proc = pagewalk_cli("maps", path, "--json")
    assert proc.returncode == 0, proc.stderr
    assert [(r["va"], r["pa"]) for r in json.loads(proc.stdout)] == [(1 << 39, 0x100000)]
    proc = pagewalk_cli("lint", path, "--json")
    found = json.loads(proc.stdout)["findings"]
    block = [f for f in found if f["entry_pa"] == 0x1000]
    assert block and "block descriptor is not allowed at level 0" in block[0]["message"]
    assert proc.returncode == 1, proc.stderr
    assert pagewalk_cli("stats", path).returncode == 0
    w = walk(*_machine(path), 0)
    assert w.fault is not None and w.fault.kind == "translation" and w.fault.level == 0


def _machine(path: str) -> tuple[object, object, tuple[int, ...]]:
    m = load_machine(path, {})
    return m.mem, m.mode, m.roots


# (mode, TCR or None, level index of the bad entry, raw entry, expected fault words)
TCR_16K = 16 | (0b10 << 14) | (16 << 16) | (0b01 << 30) | (5 << 32)
TCR_64K = 16 | (0b01 << 14) | (16 << 16) | (0b11 << 30) | (5 << 32)
MALFORMED = [
    ("x86_64", {}, 0x0 | 0x87, "PS (bit 7) is reserved"),
    ("la57", {}, 0x0 | 0x87, "PS (bit 7) is reserved"),
    ("x86_64", {"maxphyaddr": 46}, 0x2000 | 0x7 | (1 << 50), "reserved"),
    ("aarch64", {}, 0x40000000 | 0x401, "not allowed at level 0"),
    ("aarch64", {"tcr": TCR_16K}, 0x40000000 | 0x401, "not allowed"),
    ("aarch64", {"tcr": TCR_64K}, 0x40000000 | 0x401, "not allowed"),
    ("sv39", {}, (0x201 << 10) | 0xCF, "misaligned superpage"),
    ("sv39", {}, (0x200 << 10) | 0xC5, "W=1 with R=0"),
    ("sv48", {}, (0x2 << 10) | 0x1 | (1 << 60), "reserved bits"),
]


@pytest.mark.parametrize(("mode", "regs", "raw", "words"), MALFORMED)
def test_malformed_root_entries_are_findings(
    mode: str, regs: dict[str, int], raw: int, words: str
) -> None:
    m = make_mode(mode, **regs)
    mem = PhysicalMemory(1 << 20)
    esize = m.entry_size
    half = m.halves[0]
    root = 1 << 16
    mem.write_entry(root, esize, raw)
    roots = (root, 0) if mode == "aarch64" else (root,)
    rows = list(mappings(mem, m, roots, limit=1 << 16))
    assert not rows
    found = lint(mem, m, roots)
    bad = [f for f in found if f.entry_pa == root and f.level == half.levels[0].name]
    assert any(words in f.message for f in bad), [f.message for f in found]
    assert {f.severity for f in bad} == {"error"}
    stats(mem, m, roots)


def test_x86_ps_in_pdpte_without_1g_pages() -> None:
    m = make_mode("x86_64", pdpe1gb=False)
    mem = PhysicalMemory(1 << 20)
    mem.write_u64(0x10000, 0x11000 | 7)
    mem.write_u64(0x11000, 0x40000000 | 0x87)
    assert not list(mappings(mem, m, (0x10000,)))
    found = [f for f in lint(mem, m, (0x10000,)) if f.entry_pa == 0x11000]
    assert found and "PS (bit 7) is reserved" in found[0].message


# ------------------------------------------------------------------ random tables
MODES = ["x86", "pae", "x86_64", "la57", "aarch64", "sv32", "sv39", "sv48", "sv57"]


def _entries(esize: int, pages: int) -> st.SearchStrategy[int]:
    """Mostly pointers into the image (self, up, down, past the end), some random words."""
    top = (1 << (8 * esize)) - 1
    pointer = st.builds(
        lambda page, low: (page << 12) | low,
        st.integers(0, pages + 1),
        st.integers(0, 0xFFF),
    )
    riscv_pointer = st.builds(
        lambda page, low: (page << 10) | low, st.integers(0, pages + 1), st.integers(0, 0x3FF)
    )
    return st.one_of(st.just(0), pointer, riscv_pointer, st.integers(0, top))


@st.composite
def images(draw: st.DrawFn) -> tuple[str, bytes]:
    mode = draw(st.sampled_from(MODES))
    esize = 4 if mode in ("x86", "sv32") else 8
    pages = draw(st.integers(1, 3))
    words = draw(st.lists(_entries(esize, pages), min_size=1, max_size=24))
    spread = draw(st.lists(st.integers(0, pages * 4096 // esize - 1), min_size=len(words),
                           max_size=len(words)))  # fmt: skip
    data = bytearray(pages * 4096)
    for at, w in zip(spread, words, strict=True):
        struct.pack_into("<Q" if esize == 8 else "<I", data, at * esize, w)
    cut = draw(st.integers(esize, len(data)))  # the image may end inside a table
    return mode, bytes(data[:cut])


def _probes(mode: PagingMode) -> list[int]:
    """The first VA of every root entry, and of every entry below the first root entry."""
    out = []
    for half in mode.halves:
        top, nxt = half.levels[0], half.levels[min(1, len(half.levels) - 1)]
        base = half.va_start & ~((1 << (top.shift + top.bits)) - 1)
        out += [max(half.va_start, base + (i << top.shift)) for i in range(top.entries)]
        out += [half.va_start + (i << nxt.shift) for i in range(nxt.entries)]
    return [va for va in out if mode.half_for(va) is not None]


@settings(
    deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(image=images())
def test_random_tables_raise_only_paging_errors(tmp_path: Path, image: tuple[str, bytes]) -> None:
    mode, data = image
    path = str(random_tables(tmp_path, mode, data))
    try:
        m = load_machine(path, {})
    except PagingError:
        return
    try:
        rows = list(mappings(m.mem, m.mode, m.roots, limit=1 << 14))
    except PagingError:
        rows = []
    for r in rows[:50]:  # no invented mappings: each row is what a walk gives
        for va in (r.va, r.end - 1):
            pa, _, fault = translate(m.mem, m.mode, m.roots, va)
            assert fault is None and pa == r.pa + (va - r.va), (hex(va), fault)
    if len(rows) < 1 << 14:  # no hidden ones: what a walk resolves is listed
        starts = [r.va for r in rows]
        for va in _probes(m.mode):
            pa, _, fault = translate(m.mem, m.mode, m.roots, va)
            if fault is None:
                i = bisect.bisect_right(starts, va) - 1
                assert i >= 0 and rows[i].va <= va < rows[i].end, hex(va)
                assert rows[i].pa + (va - rows[i].va) == pa
    found = lint(m.mem, m.mode, m.roots)
    assert all(f.severity in ("error", "warning", "info") for f in found)
    stats(m.mem, m.mode, m.roots)


@settings(
    deadline=None, max_examples=4, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(image=images())
def test_random_tables_through_the_cli(tmp_path: Path, image: tuple[str, bytes]) -> None:
    mode, data = image
    path = str(random_tables(tmp_path, mode, data))
    for cmd in (["maps", "--max-mappings", "10000"], ["lint"], ["stats"]):
        proc = pagewalk_cli(cmd[0], path, *cmd[1:], "--json")
        assert proc.returncode in (0, 1, 2), (cmd, proc.stderr)
        assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
