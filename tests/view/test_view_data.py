"""The report's embedded data: it decodes back to the enumeration's runs and the codec's tables.

The page is parsed here as a browser would read it (the JSON metadata, the base64 of the deflated
arrays), and compared with :meth:`pagewalk.Machine.map_columns` (the runs) and with a raw read of
every table (the entries); the command is run as a subprocess for its file handling (never over
an input or an existing file without ``--force``, exit 2 on bad input).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from view_spaces import build_image

import pagewalk
from pagewalk.columns import concat
from pagewalk.view import machine_report
from pagewalk.view.page import render
from pagewalk.view.space import section

MODES = ("x86_64", "aarch64", "sv39", "x86", "pae", "sv48")


def parse(page: bytes) -> tuple[dict[str, Any], list[dict[str, np.ndarray[Any, Any]]]]:
    """The page's metadata and, per space, its arrays, decoded as the page's script does."""
    text = page.decode()
    meta_text = re.search(r'id="pw-meta">(.*?)</script>', text, re.S)
    blob_text = re.search(r'id="pw-blob">(.*?)</script>', text, re.S)
    assert meta_text and blob_text
    meta = json.loads(meta_text.group(1))
    blob = zlib.decompress(base64.b64decode(blob_text.group(1)))
    spaces = []
    for sp in meta["spaces"]:
        spaces.append({
            name: np.frombuffer(blob, np.dtype(dtype).newbyteorder("<"), n, off)
            for name, (dtype, off, n) in sp["arrays"].items()
        })  # fmt: skip
    return meta, spaces


@pytest.mark.parametrize("name", MODES)
def test_runs_decode_to_map_columns(tmp_path: Path, name: str) -> None:
    m = pagewalk.open(build_image(tmp_path / "img", name))
    meta, (arrays,) = parse(machine_report(m))
    runs = concat(list(m.map_columns()))
    assert meta["spaces"][0]["runs"]["count"] == len(runs) > 0
    for ours, theirs in (("r_va", runs.va), ("r_size", runs.size), ("r_pa", runs.pa),
                         ("r_perm", runs.perm)):  # fmt: skip
        assert np.array_equal(arrays[ours], theirs), ours
    assert np.array_equal(np.uint64(1) << arrays["r_pg"].astype(np.uint64), runs.page_size)


@pytest.mark.parametrize("name", MODES)
def test_tables_hold_every_entry(tmp_path: Path, name: str) -> None:
    """Every embedded table's entries are what memory holds there, zeros left out."""
    m = pagewalk.open(build_image(tmp_path / "img", name))
    meta, (a,) = parse(machine_report(m))
    esize = m.mode.entry_size
    levels = m.mode.halves[0].levels
    assert len(a["t_pa"]) == meta["spaces"][0]["walk"]["tables"] > 1
    for t in range(len(a["t_pa"])):
        n_entries = levels[int(a["t_depth"][t])].entries
        raws = m.mem.read_table(int(a["t_pa"][t]), n_entries, esize)
        off, n = int(a["t_off"][t]), int(a["t_n"][t])
        idx = a["e_idx"][off : off + n]
        assert np.array_equal(idx, np.flatnonzero(raws))
        assert np.array_equal(a["e_raw"][off : off + n], raws[idx])


def test_caps_are_said(tmp_path: Path) -> None:
    m = pagewalk.open(build_image(tmp_path / "img", "x86_64"))
    sec = section("s", m.mem, m.mode, m.roots, max_runs=3, max_entries=4, inspect=False)
    meta, (a,) = parse(render([sec], "t"))
    sp = meta["spaces"][0]
    assert sp["runs"] == {"count": 3, "capped": True, "max": 3}
    assert sp["walk"]["capped"] and len(a["e_raw"]) <= 4


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pagewalk", *args], capture_output=True, text=True, timeout=120)


def test_view_command_files(tmp_path: Path) -> None:
    img = build_image(tmp_path / "img", "sv39")
    out = tmp_path / "report.html"
    done = run("view", str(img), "--out", str(out))
    assert done.returncode == 0, done.stderr
    first = out.read_bytes()
    assert first.startswith(b"<!DOCTYPE html>") and b"http://" not in first.split(b"<script>")[-1]
    again = run("view", str(img), "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr
    assert run("view", str(img), "--out", str(out), "--force").returncode == 0
    before = img.read_bytes()
    onto = run("view", str(img), "--out", str(img), "--force")
    assert onto.returncode == 2 and img.read_bytes() == before
    assert run("view", str(tmp_path / "missing"), "--out", str(tmp_path / "x.html")).returncode == 2
    assert not list(tmp_path.glob(".*pagewalk-tmp*"))


def test_plot_command(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    img = build_image(tmp_path / "img", "x86_64")
    cases = [("page-sizes", "png", b"\x89PNG"), ("table-memory", "svg", b"<?xml"),
             ("tlb", "png", b"\x89PNG")]  # fmt: skip
    for kind, suffix, magic in cases:
        out = tmp_path / f"{kind}.{suffix}"
        done = run("plot", str(img), "--kind", kind, "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert out.read_bytes().startswith(magic)
    assert run("plot", str(img), "--out", str(tmp_path / "x.gif")).returncode == 2
    assert run("plot", str(img), "--kind", "nope", "--out", str(tmp_path / "y.png")).returncode == 2
    assert run("plot", str(tmp_path / "none"), "--out", str(tmp_path / "z.png")).returncode == 2


def test_regions_of_the_layout_reach_the_page(tmp_path: Path) -> None:
    """The map names the regions of the kernel layout that --layout picks (here a booted seed
    kernel's, read from its saved image), exactly as maps names them, and none with none."""
    from pagewalk.inspect.regions import detect

    saved = tmp_path / "boot"
    subprocess.run(["pagewalk", "boot", "--save", str(saved)], check=True, capture_output=True)
    m = pagewalk.open(saved / "memory.img")
    layout = detect(m, "auto")
    assert layout is not None and layout.regions
    meta, _ = parse(machine_report(m))
    drawn = [(int(a, 16), int(b, 16), n) for a, b, n in meta["spaces"][0]["regions"]]
    assert drawn == [(r.start, r.end, r.name) for r in layout.regions]
    meta, _ = parse(machine_report(m, layout="none"))
    assert meta["spaces"][0]["regions"] == []
    out = tmp_path / "v.html"
    bad = subprocess.run(["pagewalk", "view", str(saved / "memory.img"), "--out", str(out),
                          "--layout", "nosuch"], capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and not out.exists()
