"""Region naming without QEMU: a Linux-shaped x86-64 image with planted KASLR bases, the seed
kernels booted by ``pagewalk boot``, lint's "W+X in vmalloc", and the bulk lookup against a
scan. (The QEMU captures, checked against the kernel's own data: ``test_regions_qemu.py``.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pagewalk
from pagewalk.image import build, save
from pagewalk.inspect.lint import lint
from pagewalk.inspect.regions import Layout, Region, detect

GIB = 1 << 30
TIB = 1 << 40


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pagewalk", *args], capture_output=True, text=True, timeout=300)


def _linux_like(tmp: Path, direct: int, vmalloc: int, vmemmap: int) -> str:
    """An x86-64 image mapped as a KASLR'd Linux would: the direct map of PA 0.., a vmalloc
    area (W+X), a vmemmap block, the kernel text at -2 GiB and a cpu_entry_area page."""
    spec = {
        "mode": "x86_64",
        "ram": "64M",
        "map": [
            {"va": hex(direct), "pa": "0x0", "size": "32M", "perm": "rw"},
            {"va": hex(vmalloc + 0x5000), "pa": "0x2000000", "size": "16K", "perm": "rwx"},
            {"va": hex(vmemmap), "pa": "0x2200000", "size": "2M", "perm": "rw"},
            {"va": "0xffffffff9a000000", "pa": "0x1000000", "size": "4M", "perm": "rx"},
            {"va": "0xfffffe0000001000", "pa": "0x2400000", "size": "4K", "perm": "r"},
        ],
    }
    built = build(spec)
    out = tmp / "linux.img"
    save(out, built.mem, built.mode, built.space.roots)
    return str(out)


@pytest.mark.parametrize("seed", range(4))
def test_kaslr_bases_are_found_in_the_tables(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    direct = 0xFFFF888000000000 + int(rng.integers(0, 30 * 1024)) * GIB
    vmalloc = direct + 11 * TIB + int(rng.integers(0, 1024)) * GIB
    vmemmap = vmalloc + 32 * TIB + int(rng.integers(1, 1024)) * GIB
    image = _linux_like(tmp_path, direct, vmalloc, vmemmap)
    layout = detect(pagewalk.open(image))
    assert layout is not None and layout.name == "linux-x86_64 (4-level)"
    assert "kernel text at 0xffffffff9a000000" in layout.why[0]
    spans = {r.name: (r.start, r.end) for r in layout.regions}
    assert spans["direct map"][0] == direct
    assert spans["vmalloc"] == (vmalloc, vmalloc + 32 * TIB)
    assert spans["vmemmap"] == (vmemmap, vmemmap + TIB)
    assert layout.name_of(0xFFFFFFFF9A000000) == "kernel text"
    assert layout.name_of(0xFFFFFE0000001000) == "cpu_entry_area"
    m = pagewalk.open(image)
    w_x = [f for f in lint(m.mem, m.mode, m.roots, layout) if f.code == "w+x"]
    assert [(f.region, f.va) for f in w_x] == [("vmalloc", vmalloc + 0x5000)]
    assert "(W+X in vmalloc)" in w_x[0].message


def test_cli_region_column_key_and_lint(tmp_path: Path) -> None:
    image = _linux_like(tmp_path, 0xFFFF9A0000000000, 0xFFFFB00000000000, 0xFFFFE00000000000)
    rows = json.loads(_run("maps", image, "--json").stdout)
    assert [r["region"] for r in rows] == [
        "direct map", "vmalloc", "vmemmap", "cpu_entry_area", "kernel text"
    ]  # fmt: skip
    plain = json.loads(_run("maps", image, "--json", "--layout", "none").stdout)
    assert plain == [{k: v for k, v in r.items() if k != "region"} for r in rows]
    table = _run("maps", image).stdout
    assert "┃ region" in table and "│ vmalloc" in table
    assert "vmalloc base 0xffffb00000000000" in table
    csv_head = _run("maps", image, "--format", "csv").stdout.splitlines()[0]
    assert csv_head.endswith(",memtype,region")
    assert "region" not in _run("maps", image, "--format", "ptdump").stdout
    done = _run("lint", image, "--json")
    found = json.loads(done.stdout)["findings"]
    assert done.returncode == 1 and [f["region"] for f in found if f["code"] == "w+x"] == [
        "vmalloc"
    ]
    assert "W+X in vmalloc" in _run("lint", image).stdout
    bad = _run("maps", image, "--layout", "windows")
    assert bad.returncode == 2 and bad.stderr.startswith("pagewalk: error:")


def test_a_plain_image_gets_no_layout(tmp_path: Path) -> None:
    low = {"va": "0xc0000000", "pa": "0x0", "size": "4M", "perm": "rw"}
    built = build({"mode": "x86_64", "ram": "16M", "map": [low]})
    save(tmp_path / "p.img", built.mem, built.mode, built.space.roots)
    assert detect(pagewalk.open(tmp_path / "p.img")) is None
    rows = json.loads(_run("maps", str(tmp_path / "p.img"), "--json").stdout)
    assert rows and "region" not in rows[0]


@pytest.mark.parametrize("profile", ["powernex", "redox", "comus", "sel4-aarch64", "atos"])
def test_seed_kernels_name_their_regions(tmp_path: Path, profile: str) -> None:
    done = _run("boot", "--profile", profile, "--save", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (image,) = [p for p in tmp_path.iterdir() if p.suffix != ".json"]
    machine = pagewalk.open(image)
    layout = detect(machine)
    assert layout is not None and f"profile {profile}" in layout.why[0]
    kernel = [m for m in machine.maps() if not m.perm & pagewalk.Perm.USER]
    assert kernel and all(layout.name_of(m.va) for m in kernel)


@given(
    spans=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 1 << 16)), max_size=8),
    vas=st.lists(st.integers(0, (1 << 20) + (1 << 16)), min_size=1, max_size=50),
)
def test_bulk_lookup_equals_a_scan(spans: list[tuple[int, int]], vas: list[int]) -> None:
    regions = [Region(f"r{i}", lo, lo + n) for i, (lo, n) in enumerate(spans)]
    layout = Layout("t", regions)
    idx = layout.index(np.array(vas, dtype=np.uint64))
    names = [*layout.names, None]
    for va, i in zip(vas, idx.tolist(), strict=True):
        painted = [r.name for r in regions if r.start <= va < r.end]  # the last one wins
        assert names[i] == layout.name_of(va) == (painted[-1] if painted else None)


def test_the_cli_choices_are_the_layouts() -> None:
    from pagewalk.cli.listing import LAYOUTS
    from pagewalk.inspect.regions import CHOICES

    assert LAYOUTS == CHOICES


@pytest.mark.parametrize(
    ("maps", "linux"),
    [
        # a linear map (no exec) low in the TTBR1 half, kernel text above PAGE_END and the
        # vmemmap (no exec) at -2**42: Linux's three marks
        (
            [
                ("0xffff000000000000", "rw"),
                ("0xffff800008000000", "rx"),
                ("0xfffffc0000000000", "rw"),
            ],
            True,
        ),
        # one mark missing or wrong: not Linux
        ([("0xffff000000000000", "rw"), ("0xffff800008000000", "rx")], False),
        ([("0xffff800008000000", "rx"), ("0xfffffc0000000000", "rw")], False),
        (
            [
                ("0xffff000000000000", "rwx"),
                ("0xffff800008000000", "rx"),
                ("0xfffffc0000000000", "rw"),
            ],
            False,
        ),
    ],
)
def test_arm64_linux_is_recognised_from_its_tables(
    tmp_path: Path, maps: list[tuple[str, str]], linux: bool
) -> None:
    """A live arm64 machine has no VMCOREINFO: auto finds Linux from the tables alone."""
    spec = [{"va": va, "pa": hex(0x100000 * (i + 1)), "size": "64K", "perm": perm}
            for i, (va, perm) in enumerate(maps)]  # fmt: skip
    built = build({"mode": "aarch64", "ram": "16M", "map": spec})
    save(tmp_path / "a.img", built.mem, built.mode, built.space.roots)
    layout = detect(pagewalk.open(tmp_path / "a.img"))
    if not linux:
        assert layout is None
        return
    assert layout is not None and "linear map" in layout.why[0], layout.why
    assert layout.name_of(0xFFFF_0000_0000_0000) == "linear map"
