"""The bulk writers (issue 14): byte for byte what the per-object writers printed, ``--hex`` on
every command with addresses in its JSON, ``--format csv``, and the table view.

The oracle is :mod:`writer_oracle`, a copy of the writers as they were (one ``json.dumps`` or one
f-string per run). Spaces are random, of every paging mode (:mod:`random_spaces`); the command
runs as a subprocess of the installed entry point where its output is the contract.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import writer_oracle as oracle
from random_spaces import MODES, random_image, random_space

from pagewalk import AddressSpace, Perm, PhysicalMemory, make_mode
from pagewalk.alloc.simple import SimpleFrameAllocator
from pagewalk.cli import writers
from pagewalk.cli.render import mapping_line
from pagewalk.columns import RunColumns
from pagewalk.enumerate import mappings
from pagewalk.enumerate_runs import Mapping
from pagewalk.image import save
from pagewalk.inspect import qemu
from pagewalk.inspect.regions import Layout, Region
from pagewalk.textcols import SLICE

QEMU_FAMILIES = ("x86", "riscv")
ANSI = re.compile(r"\x1b\[")


def pagewalk(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m pagewalk ARGS`` with stdout and stderr as pipes."""
    return subprocess.run(
        [sys.executable, "-m", "pagewalk", *args],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def batches(
    rows: list[Mapping], sizes: list[int], with_attrs: bool = False
) -> Iterator[RunColumns]:
    """``rows`` as column batches of the given sizes in turn (the last repeats)."""
    i = k = 0
    while i < len(rows):
        n = sizes[min(k, len(sizes) - 1)]
        yield RunColumns.from_rows(rows[i : i + n], with_attrs=with_attrs)
        i, k = i + n, k + 1


def text(chunks: Iterator[bytes | memoryview]) -> str:
    return b"".join(chunks).decode()


# ------------------------------------------------------- library: every mode, byte for byte
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", MODES)
def test_writers_match_the_per_object_writers(name: str, seed: int) -> None:
    mem, mode, roots = random_space(name, seed)
    plain = list(mappings(mem, mode, roots))
    raw = list(mappings(mem, mode, roots, raw_attrs=True))
    assert plain and raw
    cut = [random.Random(seed).randint(1, 9) for _ in range(40)]  # batch edges everywhere
    assert text(writers.json_list(batches(plain, cut))) == oracle.json_list(plain)
    want = "".join(f"{line}\n" for line in oracle.ptdump_lines(plain, mode))
    assert text(writers.ptdump(batches(plain, cut), mode)) == want
    family = mode.facts.family
    if family in QEMU_FAMILIES:
        rows = raw if family == "riscv" else plain
        got = text(qemu.info_mem_text(batches(rows, cut, family == "riscv"), mode))
        assert got.splitlines() == list(oracle.info_mem(rows, mode))
        assert list(qemu.info_mem(rows, mode)) == list(oracle.info_mem(rows, mode))
    if family == "x86":
        got = text(qemu.info_tlb_text(batches(raw, cut, True), mode))
        assert got.splitlines() == list(oracle.info_tlb(raw, mode))
        assert list(qemu.info_tlb(raw, mode)) == list(oracle.info_tlb(raw, mode))


@pytest.mark.parametrize("name", ["x86", "x86_64", "sv32"])
def test_table_lines_are_the_rich_layout(name: str) -> None:
    mem, mode, roots = random_space(name, 7)
    rows = list(mappings(mem, mode, roots))
    got = text(writers.table_lines(batches(rows, [5]), mode, Perm.letters)).splitlines()
    assert got == [mapping_line(m, mode).plain for m in rows]


@pytest.mark.parametrize("name", ["x86", "x86_64", "sv39", "aarch64"])
def test_writers_with_a_layout_add_the_region_last(name: str) -> None:
    mem, mode, roots = random_space(name, 3)
    rows = list(mappings(mem, mode, roots))
    vas = sorted({m.va for m in rows})
    # regions with edges at, inside and between runs, one overlapping (painted over), gaps
    spec = [("low", 0, vas[len(vas) // 3] + 1), ("mid", vas[len(vas) // 3] + 1, vas[-1]),
            ("hole-punch", vas[len(vas) // 2], vas[len(vas) // 2] + 1)]  # fmt: skip
    layout = Layout("test", [Region(*r) for r in spec])
    flat = [(r.name, r.start, r.end) for r in layout.regions]
    assert [oracle.region_of(flat, va) for va in vas] == [layout.name_of(va) for va in vas]
    cut = [2, 7, 1, 5]
    got = text(writers.json_list(batches(rows, cut), layout=layout))
    assert got == oracle.json_list_regions(rows, flat)
    assert json.loads(got)[-1]["region"] is None  # the last run starts past every region
    table = text(writers.table_lines(batches(rows, cut), mode, Perm.letters, layout))
    assert table.splitlines() == [
        f"{mapping_line(m, mode).plain}│ {oracle.region_of(flat, m.va) or ''}" for m in rows
    ]
    parsed = list(csv.DictReader(io.StringIO(text(writers.csv_table(batches(rows, cut),
                                                                    layout=layout)))))  # fmt: skip
    assert [r["region"] for r in parsed] == [oracle.region_of(flat, m.va) or "" for m in rows]
    assert [int(r["va"]) for r in parsed] == [m.va for m in rows]


def test_writers_of_no_runs() -> None:
    mode = make_mode("sv39")
    assert text(writers.json_list([])) == "[]\n"
    assert text(writers.csv_table([])) == ",".join(writers.FIELDS) + "\n"
    assert text(writers.ptdump([RunColumns.empty()], mode)) == ""
    assert text(qemu.info_mem_text([], mode)).splitlines() == list(oracle.info_mem([], mode))


# ------------------------------------------------------------------ the command, old vs new
@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("writers")
    return {
        n: random_image(where / f"{n}.img", n, 11) for n in ("pae", "x86_64", "aarch64", "sv39")
    }


def _rows(image: Path, raw: bool = False) -> list[Mapping]:
    from pagewalk.machine import load_machine

    m = load_machine(str(image), {})
    return list(mappings(m.mem, m.mode, m.roots, raw_attrs=raw))


@pytest.mark.parametrize("name", ["pae", "x86_64", "aarch64", "sv39"])
def test_command_output_is_byte_identical(images: dict[str, Path], name: str) -> None:
    image = images[name]
    mode = make_mode(name)
    plain, raw = _rows(image), _rows(image, True)
    done = pagewalk("maps", str(image), "--json")
    assert done.returncode == 0 and done.stdout == oracle.json_list(plain)
    done = pagewalk("maps", str(image), "--format", "ptdump")
    assert done.stdout.splitlines() == list(oracle.ptdump_lines(plain, mode))
    family = mode.facts.family
    if family in QEMU_FAMILIES:
        done = pagewalk("maps", str(image), "--format", "qemu-info-mem")
        assert done.stdout.splitlines() == list(
            oracle.info_mem(raw if family == "riscv" else plain, mode)
        )
    if family == "x86":
        done = pagewalk("maps", str(image), "--format", "qemu-info-tlb")
        assert done.stdout.splitlines() == list(oracle.info_tlb(raw, mode))


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Mapping]]:
    """An x86-64 image of more runs than one writer batch: scattered pages of mixed perms."""
    mem = PhysicalMemory(64 << 20)
    mode = make_mode("x86_64")
    space = AddressSpace(mode, mem, SimpleFrameAllocator(32 << 20, 32 << 20))
    rng = random.Random(3)
    perms = [Perm.parse(p) for p in ("r", "rw", "rx", "rwu", "rxu", "rg")]
    for i in range(SLICE + 700):
        va = (0xFFFF888000000000 if i % 3 else 0x400000) + i * 0x2000
        space.map(va, rng.randrange(8192) << 12, 4096, rng.choice(perms)).ignore()
    image = tmp_path_factory.mktemp("many") / "many.img"
    save(image, mem, mode, space.roots)
    return image, _rows(image)


def test_long_listing_is_byte_identical(many: tuple[Path, list[Mapping]]) -> None:
    image, rows = many
    assert len(rows) > SLICE
    assert pagewalk("maps", str(image), "--json").stdout == oracle.json_list(rows)
    tlb = pagewalk("maps", str(image), "--format", "qemu-info-tlb").stdout.splitlines()
    assert tlb == list(oracle.info_tlb(_rows(image, True), make_mode("x86_64")))


def test_table_to_a_pipe_is_plain_and_lists_every_run(many: tuple[Path, list[Mapping]]) -> None:
    image, rows = many
    done = pagewalk("maps", str(image), env={"TERM": "xterm-256color"})
    assert done.returncode == 0, done.stderr
    assert not ANSI.search(done.stdout) and not done.stderr
    lines = done.stdout.splitlines()
    body = [line for line in lines if line.startswith(" 0x")]
    assert body == [mapping_line(m, make_mode("x86_64")).plain for m in rows]
    assert lines[-1].startswith(f"{len(rows)} range(s) from {len(rows)} leaves")
    assert " virtual " in lines[1] and "memtype" in lines[1]


# ------------------------------------------------------------------ csv
def test_csv_parses_and_matches_json(images: dict[str, Path]) -> None:
    for hexed in (False, True):
        flag = ["--hex"] if hexed else []
        for name, image in images.items():
            data = json.loads(pagewalk("maps", str(image), "--json", *flag).stdout)
            table = list(
                csv.DictReader(
                    io.StringIO(pagewalk("maps", str(image), "--format", "csv", *flag).stdout)
                )
            )
            assert len(table) == len(data), name
            for row, obj in zip(table, data, strict=True):
                assert list(row) == list(writers.FIELDS)
                want = {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                        for k, v in obj.items()}  # fmt: skip
                assert row == want


# ------------------------------------------------------------------ --hex on every command
def _same_but_hex(plain: Any, hexed: Any, key: str | None = None) -> None:
    """``hexed`` is ``plain`` with every address, size and raw entry as a "0x..." string."""
    from pagewalk.cli.common import HEX_KEYS

    if isinstance(plain, dict):
        assert list(plain) == list(hexed)
        for k in plain:
            _same_but_hex(plain[k], hexed[k], k)
    elif isinstance(plain, list):
        assert len(plain) == len(hexed)
        for a, b in zip(plain, hexed, strict=True):
            _same_but_hex(a, b, key)
    elif key in HEX_KEYS and isinstance(plain, int) and not isinstance(plain, bool):
        assert hexed == hex(plain), (key, plain, hexed)
    else:
        assert hexed == plain, (key, plain, hexed)


def _addresses(data: Any) -> int:
    """How many "0x..." strings ``data`` holds."""
    if isinstance(data, dict):
        return sum(_addresses(v) for v in data.values())
    if isinstance(data, list):
        return sum(_addresses(v) for v in data)
    return int(isinstance(data, str) and data.startswith("0x"))


@pytest.mark.parametrize(
    "args",
    [
        ["maps", "{a}", "--json"],
        ["walk", "{a}", "--json", "{va}"],
        ["walk", "{a}", "--json", "0x1"],
        ["translate", "{a}", "--json", "{va}", "0x1"],
        ["p2v", "{a}", "--json", "{pa}", "0x0"],
        ["diff", "{a}", "{b}", "--json"],
        ["lint", "{a}", "--json", "--fail-on", "never"],
        ["stats", "{a}", "--json"],
        ["find-roots", "{a}", "--json", "--limit", "2"],
    ],
    ids=lambda a: a[0] + ("-fault" if a[-1] == "0x1" else ""),
)
def test_hex_on_every_json_command(images: dict[str, Path], args: list[str]) -> None:
    a, b = images["x86_64"], images["pae"]
    first = _rows(a)[0]
    fill = {"a": str(a), "b": str(images["x86_64"].with_name("b.img")), "va": hex(first.va),
            "pa": hex(first.pa)}  # fmt: skip
    if args[0] == "diff":
        random_image(Path(fill["b"]), "x86_64", 12)
    del b
    argv = [x.format(**fill) for x in args]
    plain, hexed = pagewalk(*argv), pagewalk(*argv, "--hex")
    found = 1 if args[0] in ("diff", "lint") else 0  # differences and findings exit 1
    assert plain.returncode == hexed.returncode in (0, found), (plain.stderr, hexed.stderr)
    before, after = json.loads(plain.stdout), json.loads(hexed.stdout)
    if args[0] == "walk":  # address fields of the entries too
        for step in after["steps"]:
            step["fields"] = {
                k: int(v, 16) if isinstance(v, str) else v for k, v in step["fields"].items()
            }
    if args[0] == "stats":
        after["leaves_by_size"] = {str(int(k, 16)): n for k, n in after["leaves_by_size"].items()}
        after["savings"] = {str(int(k, 16)): int(n, 16) for k, n in after["savings"].items()}
    _same_but_hex(before, after)
    assert _addresses(after) > 0


REFUSED = [
    ["maps"],
    ["maps", "--format", "ptdump"],
    ["walk", "--", "0x1"],
    ["translate", "--", "0x1"],
    ["p2v", "0x0"],
    ["lint"],
]


@pytest.mark.parametrize("args", [*REFUSED, ["stats"]])
def test_hex_without_json_is_refused(images: dict[str, Path], args: list[str]) -> None:
    done = pagewalk(args[0], str(images["x86_64"]), "--hex", *args[1:])
    assert done.returncode == 2 and done.stderr.startswith("pagewalk: error: --hex applies only")
    assert not done.stdout


# ------------------------------------------------------------------ the table on a terminal
def _on_a_terminal(args: list[str], pager_out: Path, lines: int = 30) -> str:
    """Run the command with stdout and stderr on a pseudo-terminal; returns what it showed."""
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "LINES": str(lines), "COLUMNS": "200",
           "PAGER": f"sh -c 'cat > {pager_out}'"}  # fmt: skip
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pagewalk", *args], stdin=slave, stdout=slave,
        stderr=slave, env=env,
    )  # fmt: skip
    os.close(slave)
    out = b""
    while True:
        try:
            data = os.read(master, 1 << 16)
        except OSError:
            break
        if not data:
            break
        out += data
    assert proc.wait(timeout=300) == 0
    os.close(master)
    return out.decode(errors="replace")


def test_terminal_pages_a_long_table_and_prints_a_short_one(
    images: dict[str, Path], many: tuple[Path, list[Mapping]], tmp_path: Path
) -> None:
    pager = tmp_path / "paged.txt"
    shown = _on_a_terminal(
        ["maps", str(images["x86_64"]), "--range", "0", "0x800000000000"], pager, 200
    )
    assert not pager.exists() and "range(s) from" in shown and ANSI.search(shown)
    image, rows = many
    shown = _on_a_terminal(["maps", str(image)], pager)
    paged = pager.read_text().splitlines()
    assert [line for line in paged if line.startswith(" 0x")] == [
        mapping_line(m, make_mode("x86_64")).plain for m in rows
    ]
    assert paged[-1].startswith(f"{len(rows)} range(s)") and not ANSI.search(pager.read_text())
    assert "range(s)" not in shown
