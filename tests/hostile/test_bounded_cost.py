"""Hostile tables cost what their bytes cost: shared subtrees and self-references cannot make
``maps``, ``lint``, ``stats``, ``p2v`` or ``diff`` use unbounded memory or time.

16 KiB of x86-64 tables whose every entry points to the one table below describe 2^27 ranges
(Intel SDM vol. 3A §4.5 fixes the depth, not the fan-out). Listings that large stop with exit 2
and a message naming ``--max-mappings`` / ``PAGEWALK_MAX_MAPPINGS``; ``lint`` and ``stats``
look at each distinct table once and report the aliasing once. The subprocesses run under a
4 GiB address-space cap, so a regression fails instead of swapping (time and RSS figures are
in ``benchmarks/bench_hostile.py``).
"""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

import pytest
from hostile_images import benign, fanout, pagewalk_cli, self_ref

from pagewalk.cli.machine import load_machine
from pagewalk.enumerate import EnumStats, mappings
from pagewalk.errors import LimitError, PagingError
from pagewalk.inspect.diff import diff, iter_diff
from pagewalk.inspect.lint import lint
from pagewalk.inspect.stats import stats
from pagewalk.walk import translate

CAP = 4 << 30


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m pagewalk ARGS`` under the address-space cap."""
    return pagewalk_cli(*args, env=env, preexec_fn=_cap)


def assert_limit(proc: subprocess.CompletedProcess[str]) -> None:
    """Exit 2 with one error line that names the limit and both ways to raise it."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.startswith("pagewalk: error:"), proc.stderr
    assert "--max-mappings" in proc.stderr and "PAGEWALK_MAX_MAPPINGS" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("hostile")
    return {
        "fanout": str(fanout(d)),
        "same": str(fanout(d, same_frame=True, name="same.img")),
        "selfref": str(self_ref(d)),
        "benign": str(benign(d)),
        # PML4[0] -> PDPT[0..3] -> PD[0..511] -> one PT: 2048 ranges of 2 MiB
        "small": str(fanout(d, fan=(1, 4, 512), name="small.img")),
        # 2560 ranges: more than one chunk of the table output
        "long": str(fanout(d, fan=(1, 5, 512), name="long.img")),
    }


# ------------------------------------------------------------------------------ the commands
@pytest.mark.parametrize("image", ["fanout", "same", "selfref"])
def test_maps_stops_at_the_limit(images: dict[str, str], image: str) -> None:
    assert_limit(run("maps", images[image], "--json"))
    assert_limit(run("maps", images[image]))
    assert_limit(run("maps", images[image], "--format", "ptdump"))


def test_maps_limit_comes_from_the_option_or_the_environment(images: dict[str, str]) -> None:
    small = images["small"]
    proc = run("maps", small, "--json")  # 2048 ranges: under the default
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 2048 and {r["pa"] for r in rows} == {0}
    assert [r["va"] for r in rows] == [i << 21 for i in range(2048)]
    proc = run("maps", small, "--json", "--max-mappings", "2047")
    assert_limit(proc)
    assert "2047" in proc.stderr and proc.stdout == ""  # nothing printed before the check
    assert_limit(run("maps", small, "--json", env={"PAGEWALK_MAX_MAPPINGS": "100"}))
    proc = run(
        "maps", small, "--json", "--max-mappings", "2048", env={"PAGEWALK_MAX_MAPPINGS": "1"}
    )
    assert proc.returncode == 0, proc.stderr  # the option wins
    proc = run("maps", small, "--json", env={"PAGEWALK_MAX_MAPPINGS": "0"})  # 0: no limit
    assert proc.returncode == 0 and len(json.loads(proc.stdout)) == 2048


def test_bad_limit_values_exit_2(images: dict[str, str]) -> None:
    proc = run("maps", images["small"], env={"PAGEWALK_MAX_MAPPINGS": "lots"})
    assert proc.returncode == 2 and "PAGEWALK_MAX_MAPPINGS" in proc.stderr, proc.stderr
    proc = run("maps", images["small"], "--max-mappings", "-5")
    assert proc.returncode == 2 and "--max-mappings" in proc.stderr, proc.stderr


def test_maps_streams_every_format(images: dict[str, str]) -> None:
    """Table output past one chunk has one header and every row; ptdump and QEMU text too."""
    proc = run("maps", images["long"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert proc.stdout.count("virtual") == 1
    assert "2560 range(s)" in lines[-1]
    rows = [ln for ln in lines if ln.startswith(" 0x")]
    assert [int(r.split()[0], 16) for r in rows] == [i << 21 for i in range(2560)]
    assert len({r.index("2M") for r in rows}) == 1  # the lines keep the table's columns
    proc = run("maps", images["long"], "--format", "qemu-info-mem")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) >= 1
    proc = run("maps", images["long"], "--format", "ptdump")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 1 + 2560  # + section


@pytest.mark.parametrize("image", ["fanout", "same", "selfref"])
def test_lint_reports_aliasing_once_and_finishes(images: dict[str, str], image: str) -> None:
    proc = run("lint", images[image], "--json")
    assert proc.returncode == 1, proc.stderr  # user W+X, user pages in the kernel half
    report = json.loads(proc.stdout)
    codes = [f["code"] for f in report["findings"]]
    assert "user-kernel-half" in codes and "w+x" in codes
    # each distinct entry at most once (the tables hold 2048 entries), not 2^27 times
    assert len(codes) < (40 if image == "fanout" else 2048), len(codes)
    if image == "selfref":
        rec = [f for f in report["findings"] if f["code"] == "recursive"]
        assert len(rec) == 1 and "512 entries" in rec[0]["message"], rec
    else:
        shared = [f for f in report["findings"] if f["code"] == "shared-table"]
        assert {f["message"].split()[0] for f in shared} == {"PDPT", "PD", "PT"}, shared
        assert all(f["severity"] == "info" for f in shared)


@pytest.mark.parametrize("image", ["fanout", "selfref"])
def test_stats_counts_distinct_tables(images: dict[str, str], image: str) -> None:
    proc = run("stats", images[image], "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    tables = {lv["name"]: lv["tables"] for lv in report["levels"]}
    if image == "fanout":
        assert tables == {"PML4": 1, "PDPT": 1, "PD": 1, "PT": 1}
        assert report["shared_tables"] == 3
    else:
        assert tables == {"PML4": 1}
        assert report["recursive_entries"] == 512


def test_p2v_filters_while_walking(images: dict[str, str]) -> None:
    assert_limit(run("p2v", images["same"], "0x5000"))  # 2^36 aliases
    proc = run("p2v", images["same"], "0x7000", "--json")  # not mapped at all
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"pa": 0x7000, "vas": []}]
    proc = run("p2v", images["small"], "0x1234", "0x1ff000", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert [g["pa"] for g in got] == [0x1234, 0x1FF000]
    assert [a["va"] for a in got[0]["vas"]] == [(i << 21) + 0x1234 for i in range(2048)]
    assert [a["va"] for a in got[1]["vas"]] == [(i << 21) + 0x1FF000 for i in range(2048)]
    first = got[0]["vas"][1]  # the page that maps it
    assert (first["page_va"], first["pa"], first["size"]) == ((1 << 21) + 0x1000, 0x1000, 0x1000)


@pytest.mark.parametrize("pa", [str(1 << 64), "-1", hex(1 << 80)])
def test_p2v_refuses_pas_beyond_64_bits(images: dict[str, str], pa: str) -> None:
    proc = run("p2v", images["benign"], "--", pa)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("pagewalk: error:") and "PA" in proc.stderr, proc.stderr


def test_diff_stops_at_the_limit_and_streams(images: dict[str, str]) -> None:
    assert_limit(run("diff", images["fanout"], images["benign"]))
    proc = run("diff", images["small"], images["benign"], "--json")
    assert proc.returncode == 1, proc.stderr  # the spaces differ
    report = json.loads(proc.stdout)
    assert report["removed"] == 2047 << 21 and report["added"] == 0
    assert [(c["kind"], c["va"], c["size"]) for c in report["changes"]] == [
        ("removed", 1 << 21, 2047 << 21)
    ]


# ------------------------------------------------------------------------------ the library
def test_limit_is_checked_before_the_first_row(images: dict[str, str]) -> None:
    m = load_machine(images["fanout"], {})
    rows = mappings(m.mem, m.mode, m.roots, limit=1 << 20)
    with pytest.raises(LimitError, match=r"1048576"):
        next(rows)


def test_memoised_replays_equal_a_fresh_walk(images: dict[str, str]) -> None:
    """Replays (and re-walks of subtrees too big to keep) give what the walker gives."""
    m = load_machine(images["small"], {})
    st = EnumStats()
    rows = list(mappings(m.mem, m.mode, m.roots, stats=st, limit=4096))
    assert len(rows) == 2048 and st.memo_hits > 0
    for r in rows[::97]:
        for va in (r.va, r.end - 1):
            pa, size, fault = translate(m.mem, m.mode, m.roots, va)
            assert fault is None and pa == r.pa + (va - r.va) and size == r.page_size
    window = list(mappings(m.mem, m.mode, m.roots, va_range=((5 << 21) + 0x1000, 9 << 21)))
    assert [(r.va, r.size) for r in window] == [((5 << 21) + 0x1000, 0x1FF000)] + [
        (i << 21, 1 << 21) for i in range(6, 9)
    ]


def test_lint_and_stats_are_bounded_in_process(images: dict[str, str]) -> None:
    for name in ("fanout", "same", "selfref"):
        m = load_machine(images[name], {})
        found = lint(m.mem, m.mode, m.roots)
        assert 0 < len(found) < 2048  # at most one per distinct entry
        s = stats(m.mem, m.mode, m.roots)
        assert sum(lv.tables for lv in s.levels.values()) <= 4


def test_distinct_enumeration_lists_each_subtree_once(images: dict[str, str]) -> None:
    m = load_machine(images["fanout"], {})
    st = EnumStats()
    rows = list(mappings(m.mem, m.mode, m.roots, stats=st, distinct=True))
    assert [(r.va, r.size) for r in rows] == [(0, 1 << 21), (0xFFFF800000000000, 1 << 21)]
    assert st.memo_hits > 0


def test_streaming_diff_matches_the_list_diff() -> None:
    from pagewalk.enumerate import Mapping
    from pagewalk.formats.base import Perm

    def m(va: int, size: int, pa: int, perm: str = "rw") -> Mapping:
        return Mapping(va, size, pa, 0x1000, Perm.parse(perm), None)

    a = [m(0, 0x3000, 0x10000), m(0x5000, 0x1000, 0x20000), m(0x9000, 0x2000, 0x0)]
    b = [m(0x1000, 0x1000, 0x11000, "r"), m(0x5000, 0x1000, 0x20000), m(0xA000, 0x3000, 0x1000)]
    listed = diff(a, b)
    streamed = list(iter_diff(iter(a), iter(b)))
    assert listed == streamed
    assert [(c.kind, c.va, c.size) for c in listed] == [
        ("removed", 0, 0x1000), ("changed", 0x1000, 0x1000), ("removed", 0x2000, 0x1000),
        ("removed", 0x9000, 0x1000), ("added", 0xB000, 0x2000),
    ]  # fmt: skip
    assert not [c for c in listed if c.va == 0xA000]  # same PA at 0xA000 in both


def test_limit_error_is_a_paging_error() -> None:
    assert issubclass(LimitError, PagingError)


def test_benign_image_is_unaffected(images: dict[str, str]) -> None:
    proc = run("maps", images["benign"], "--json", "--max-mappings", "1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["size"] == 1 << 21
    assert Path(images["benign"]).stat().st_size == 6 * 4096


def test_long_listings_keep_the_table_layout() -> None:
    """Rows past the first chunk are printed as lines laid out exactly like the fixed table."""
    import io

    from rich.console import Console

    from pagewalk.cli.render import diff_line, diff_table, mapping_line, mappings_table
    from pagewalk.enumerate import Mapping
    from pagewalk.formats import make_mode
    from pagewalk.formats.base import MemType, Perm
    from pagewalk.inspect.diff import Change

    def rendered(table: object) -> list[str]:
        buf = io.StringIO()
        Console(file=buf, width=300, highlight=False, soft_wrap=False).print(table)
        return buf.getvalue().splitlines()

    for name in ("x86_64", "x86"):
        mode = make_mode(name)
        m = Mapping(0x7000, 0x3000, 0xABC000, 0x1000, Perm.parse("rwu"), MemType.WRITE_COMBINING)
        assert rendered(mappings_table([m], mode, header=False, fixed=True)) == [
            mapping_line(m, mode).plain
        ]
    c = Change("changed", 0x1000, 0x2000, Perm.parse("rw"), Perm.parse("r"), ("perm",), 1, 1)
    got = rendered(diff_table([c], header=False, fixed=True))
    assert [g.rstrip() for g in got] == [diff_line(c).plain.rstrip()]
