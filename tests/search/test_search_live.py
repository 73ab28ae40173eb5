"""``search`` on a live machine (the gdbstub client against the in-process fake stub of
tests/live): the same hits as the dump it serves, through the library and ``--gdb``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "live"))

from fake_stub import FakeStub, qemu_like

import pagewalk
from pagewalk.image import build, save
from pagewalk.search import Pattern, search

REGS = {"cr0": 0x80010011, "cr3": 0x6000, "cr4": 0x20, "efer": 0xD00}


def test_live_hits_equal_the_dump_s(tmp_path: Path) -> None:
    spec = {
        "mode": "x86_64",
        "ram": "64K",
        "tables": {"base": "0x6000", "size": "32K"},
        "map": [
            {"va": "0x400000", "pa": "0x2000", "size": "4K", "perm": "ru"},
            {"va": "0x401000", "pa": "0x1000", "size": "4K", "perm": "ru"},
            {"va": "0xffff888000000000", "pa": "0x0", "size": "12K", "perm": "rw"},
        ],
    }
    built = build(spec)
    built.mem.write(0x2FFC, b"live")  # across 0x400000 | 0x401000 (frames reversed)
    built.mem.write(0x1000, b"-hit")
    built.mem.write(0x1100, b"live-hit")
    save(tmp_path / "img", built.mem, built.mode, built.space.roots)
    data = (tmp_path / "img").read_bytes()
    dump = pagewalk.open(tmp_path / "img")
    want = [(h.va, h.pa) for h in search(dump, Pattern.string("live-hit"))]
    assert want == [(0x400FFC, 0x2FFC), (0x401100, 0x1100), (0xFFFF888000001100, 0x1100)]
    stub = FakeStub(qemu_like(data, REGS))
    with pagewalk.open(gdb=stub.address) as live:
        assert [(h.va, h.pa) for h in search(live, Pattern.string("live-hit"))] == want
    stub = FakeStub(qemu_like(data, REGS))
    done = subprocess.run(
        ["pagewalk", "search", "--gdb", stub.address, "--string", "live-hit", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [(r["va"], r["pa"]) for r in json.loads(done.stdout)] == want
