"""The inspectors on hand-built tables: filters that prune, p2v, diff, lint, stats, formats.

Expected values come from the specs (which VA maps which PA with which permission) and from the
Intel SDM's rules (a table's R/W and U/S bound every leaf below, §4.6), not from our output.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pagewalk.cli.main import main
from pagewalk.enumerate import EnumStats, mappings
from pagewalk.enumerate_filter import Filter
from pagewalk.image import build, save
from pagewalk.inspect.diff import diff
from pagewalk.inspect.filters import parse_perm
from pagewalk.inspect.lint import lint
from pagewalk.inspect.reverse import ReverseMap
from pagewalk.inspect.stats import stats

K = 0xFFFF800000000000
SPEC = {
    "mode": "x86_64",
    "ram": "16M",
    "tables": {"base": "0x800000", "size": "4M"},
    "map": [
        {"va": "0x400000", "pa": "0x100000", "size": "0x4000", "perm": "rxu"},
        {"va": "0x600000", "pa": "0x200000", "size": "0x2000", "perm": "rwu"},
        {"va": hex(K), "pa": "0x0", "size": "0x400000", "perm": "rw", "page_size": "0x200000"},
        {"va": hex(K + (1 << 39)), "pa": "0x200000", "size": "0x1000", "perm": "rwx"},
        {
            "va": hex(K + (2 << 39)),
            "pa": "0x400000",
            "size": "0x200000",
            "perm": "r",
            "page_size": "0x1000",
        },
    ],
}


@pytest.fixture(scope="module")
def built():  # type: ignore[no-untyped-def]
    return build(SPEC)


def rows(b, **kw):  # type: ignore[no-untyped-def]
    return list(mappings(b.mem, b.mode, b.space.roots, **kw))


def test_perm_filter_prunes_during_the_walk(built) -> None:  # type: ignore[no-untyped-def]
    st = EnumStats()
    need, forbid = parse_perm("w")
    got = rows(built, filt=Filter(need, forbid), stats=st)
    assert {m.va for m in got} == {0x600000, K, K + (1 << 39)}
    full = EnumStats()
    rows(built, stats=full)
    assert st.pruned >= 1 and st.tables < full.tables


def test_user_and_kernel_filters(built) -> None:  # type: ignore[no-untyped-def]
    assert {m.va for m in rows(built, filt=Filter(*parse_perm("u,w")))} == {0x600000}
    kernel = rows(built, filt=Filter(*parse_perm("k,!x")))
    assert {m.va for m in kernel} == {K, K + (2 << 39)}


def test_size_and_phys_filters(built) -> None:  # type: ignore[no-untyped-def]
    big = rows(built, filt=Filter(sizes=frozenset({0x200000})))
    assert [(m.va, m.size) for m in big] == [(K, 0x400000)]
    phys = rows(built, filt=Filter(pa_range=(0x200000, 0x201000)))
    assert {m.va for m in phys} == {0x600000, K + 0x200000, K + (1 << 39)}


def test_p2v_finds_every_alias(built) -> None:  # type: ignore[no-untyped-def]
    rev = ReverseMap(rows(built))
    assert [a.va for a in rev.lookup(0x200123)] == [0x600123, K + 0x200123, K + (1 << 39) + 0x123]
    assert rev.lookup(0xF00000) == []


def test_diff_names_permission_changes() -> None:
    a = build(SPEC)
    spec_b = json.loads(json.dumps(SPEC))
    spec_b["map"][1]["perm"] = "ru"
    spec_b["map"].pop(3)
    spec_b["map"].append({"va": "0x700000", "pa": "0x500000", "size": "0x1000", "perm": "ru"})
    b = build(spec_b)
    changes = diff(rows(a), rows(b))
    kinds = {(c.kind, c.va) for c in changes}
    assert ("added", 0x700000) in kinds and ("removed", K + (1 << 39)) in kinds
    changed = [c for c in changes if c.kind == "changed"]
    assert [(c.va, c.size, c.perm_change) for c in changed] == [
        (0x600000, 0x2000, "rw-u- -> r--u-")
    ]


def test_lint_finds_wx_and_user_kernel_half(built) -> None:  # type: ignore[no-untyped-def]
    found = lint(built.mem, built.mode, built.space.roots)
    assert ("w+x", K + (1 << 39)) in {(f.code, f.va) for f in found}
    assert not [f for f in found if f.code == "user-kernel-half"]


def test_lint_reserved_bit_names_the_entry() -> None:
    b = build(SPEC)
    from pagewalk.walk import walk

    step = walk(b.mem, b.mode, b.space.roots, 0x400000).steps[-1]
    b.mem.write_u64(step.entry_pa, step.raw | (1 << 51))  # above MAXPHYADDR=46
    from pagewalk.formats import make_mode

    mode = make_mode("x86_64", maxphyaddr=46)
    found = [f for f in lint(b.mem, mode, b.space.roots) if f.code == "reserved"]
    assert found and found[0].entry_pa == step.entry_pa and found[0].severity == "error"


def test_stats_counts_tables_and_savings(built) -> None:  # type: ignore[no-untyped-def]
    s = stats(built.mem, built.mode, built.space.roots)
    assert s.levels["PML4"].tables == 1
    assert s.leaves_by_size == {0x1000: 4 + 2 + 1 + 512, 0x200000: 2}
    assert s.savings() == {0x200000: 0x1000}  # the 512 contiguous 4K pages at K+2<<39


def test_cli_formats(built, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    img = tmp_path / "m.img"
    save(img, built.mem, built.mode, built.space.roots)
    for fmt in ("qemu-info-mem", "qemu-info-tlb", "ptdump", "table", "json"):
        try:
            main(["maps", str(img), "--format", fmt])
        except SystemExit as exc:
            assert not exc.code
    out = capsys.readouterr().out
    assert "0000000000400000-0000000000404000 0000000000004000 ur-" in out
    assert "0000000000400000: 0000000000100000 ----A--U-" not in out  # A is clear in fresh tables
    assert "0000000000400000: 0000000000100000 -------U-" in out
    assert "---[ Kernel Space ]---" in out
    for cmd in (["lint"], ["stats"], ["p2v", "0x200000"], ["find-roots"], ["walk", "0x400000"]):
        try:
            main([cmd[0], str(img), *cmd[1:], "--json"])
        except SystemExit as exc:  # lint exits 1: the spec maps a kernel W+X page
            assert exc.code == (1 if cmd == ["lint"] else 0), cmd
        json.loads(capsys.readouterr().out)


def test_lint_stray_leaves_whole_table_at_a_time() -> None:
    """Sv39 can express a misaligned superpage (its PPN is one field): lint names it, a
    superpage outside RAM, and counts 4 KiB pages outside RAM once per table."""
    from pagewalk.walk import walk

    spec = {
        "mode": "sv39",
        "ram": "16M",
        "tables": {"base": "0x800000", "size": "4M"},
        "map": [
            {"va": "0x40000000", "pa": "0x0", "size": "0x600000", "perm": "rw",
             "page_size": "0x200000"},
            {"va": "0x80000000", "pa": "0x100000", "size": "0x4000", "perm": "rw"},
        ],
    }  # fmt: skip
    b = build(spec)
    mode, mem, roots = b.mode, b.mem, b.space.roots
    mega = [walk(mem, mode, roots, 0x40000000 + i * 0x200000).steps[-1] for i in range(3)]
    small = [walk(mem, mode, roots, 0x80000000 + i * 0x1000).steps[-1] for i in range(4)]

    def repoint(step, pa: int) -> None:  # type: ignore[no-untyped-def]
        ppn_field = ((1 << 44) - 1) << 10
        mem.write_u64(step.entry_pa, (step.raw & ~ppn_field) | ((pa >> 12) << 10))

    repoint(mega[1], 0x201000)  # misaligned megapage
    repoint(mega[2], 0x4000_0000)  # aligned, beyond the 16 MiB of RAM
    repoint(small[1], 0x5000_0000)
    repoint(small[3], 0x5000_3000)
    found = lint(mem, mode, roots)
    by_code = {(f.code, f.entry_pa): f for f in found}
    bad = by_code[("misaligned", mega[1].entry_pa)]
    assert bad.severity == "error" and bad.va == 0x40200000 and "0x201000" in bad.message
    far = by_code[("leaf-outside-ram", mega[2].entry_pa)]
    assert far.severity == "info" and far.va == 0x40400000 and "0x40000000" in far.message
    pages = by_code[("leaf-outside-ram", small[1].entry_pa)]
    assert pages.va == 0x80001000 and pages.message.startswith("2 page(s)")
    assert sum(f.code == "leaf-outside-ram" for f in found) == 2
    assert sum(f.code == "misaligned" for f in found) == 1
