"""``--gdb``/``--qmp`` on a real QEMU equal the dump of the same moment, line for line.

The oracle is QEMU itself: its ``dump-guest-memory`` ELF core, taken while the guest is stopped
at the same state, read by pagewalk as any dump (guests.py). The guest is a pagewalk-built
x86-64 image loaded as RAM, its paging registers written through the gdbstub by the harness.
A fast part runs in the default suite when qemu-system-x86_64 exists; the rest is ``live``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from guests import Guest, have_qemu

pytestmark = pytest.mark.skipif(not have_qemu(), reason="qemu-system-x86_64 is not installed")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Guest, Path]]:
    work = tmp_path_factory.mktemp("live")
    image = work / "demo.img"
    run(["build", str(REPO / "examples" / "demo.toml"), "--out", str(image)])
    g = Guest(image, work)
    try:
        yield g, g.dump(work / "core.elf")
    finally:
        g.close()


def run(args: list[str], code: int = 0) -> str:
    done = subprocess.run(["pagewalk", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == code, done.stderr
    return done.stdout


def both(guest: tuple[Guest, Path], command: str, *args: str, code: int = 0) -> tuple[str, str]:
    g, core = guest
    live = run([command, "--gdb", g.gdb, *args], code)
    dump = run([command, str(core), *args], code)
    return live, dump


def test_maps_json_equals_the_dump(guest: tuple[Guest, Path]) -> None:
    live, dump = both(guest, "maps", "--json")
    assert json.loads(live) and live == dump
    assert guest[0].status() == "prelaunch"  # left as found: never started


@pytest.mark.live
@pytest.mark.parametrize(
    "args",
    [
        ("maps", "--format", "csv"),
        ("maps", "--json", "--perm", "w", "--range", "0xffff888000000000", "0xffff888001000000"),
        ("walk", "0xffff888000001000"),
        ("walk", "--json", "0x400123"),
        ("translate", "--json", "0x400000", "0x600010", "0xffffffff80001000", "0x1234"),
        ("p2v", "--json", "0x200000", "0x1201000"),
        ("stats", "--json"),
        ("lint", "--json"),
    ],
)
def test_command_equals_the_dump(guest: tuple[Guest, Path], args: tuple[str, ...]) -> None:
    live, dump = both(guest, *args)
    assert live.splitlines() == dump.splitlines()


@pytest.mark.live
def test_qmp_equals_the_dump(guest: tuple[Guest, Path]) -> None:
    g, core = guest
    live = run(["maps", "--json", "--qmp", g.qmp_path])
    assert live == run(["maps", "--json", str(core)])
    walked = run(["walk", "--json", "--qmp", g.qmp_path, "0x600000"])
    assert walked == run(["walk", "--json", str(core), "0x600000"])
    assert g.status() == "prelaunch"


def test_running_guest_is_resumed_even_after_an_error(tmp_path: Path) -> None:
    image = tmp_path / "ram.img"
    image.write_bytes(bytes(1 << 20))
    (tmp_path / "ram.img.json").write_text(
        json.dumps(
            {"mode": "x86_64", "registers": {"cr0": 0x11, "cr4": 0, "efer": 0}, "roots": {"CR3": 0}}
        )
    )
    g = Guest(image, tmp_path, running=True)
    try:
        assert g.status() == "running"
        done = subprocess.run(
            ["pagewalk", "maps", "--gdb", g.gdb], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2 and "paging is off" in done.stderr
        assert f"127.0.0.1:{g.port}" in done.stderr and not done.stdout
        assert g.status() == "running"
    finally:
        g.close()


@pytest.mark.live
@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")
def test_gdb_command_file_lists_what_the_dump_lists(guest: tuple[Guest, Path]) -> None:
    g, core = guest
    path = run_python(["-m", "pagewalk.live.gdb_path"]).strip()
    done = subprocess.run(
        ["gdb", "-nx", "--batch", "-ex", f"target remote {g.gdb}", "-ex", f"source {path}",
         "-ex", "pagewalk maps", "-ex", "pagewalk translate 0x600010"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    lines = [ln for ln in done.stdout.splitlines() if " -> " in ln]
    expected = [
        f"{m['va']:#018x}-{m['va'] + m['size'] - 1:#018x} {m['size']:#12x} -> {m['pa']:#x} "
        + ("w" if m["writable"] else "-") + ("x" if m["executable"] else "-")
        for m in json.loads(run(["maps", "--json", str(core)]))
    ]  # fmt: skip
    got = [ln.rsplit(" ", 1)[0] + " " + ln.rsplit(" ", 1)[1][1:3] for ln in lines]
    assert got[: len(expected)] == expected, done.stderr
    assert lines[len(expected)] == "0x600010 -> 0x300010"


def run_python(args: list[str]) -> str:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, check=True
    ).stdout
