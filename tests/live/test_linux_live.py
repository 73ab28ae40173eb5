"""``--gdb`` on a real Linux guest equals the dump of the same moment, line for line (``qemu``).

Each profile (x86_64 with KPTI, aarch64 with KPTI, riscv64-sv39) is the QEMU reference suite's
Debian guest, booted with that suite's command line and stopped once its kernel's tables are up
(linux_guests.py). The oracle is QEMU's ``dump-guest-memory`` core of that stop, read by
``pagewalk`` as any dump with the registers QEMU reports; both sides are the installed
``pagewalk`` command. Only the header lines naming the source may differ.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from linux_guests import LINUX_PROFILES, LinuxGuest, Unavailable

pytestmark = pytest.mark.qemu


class Stopped:
    """A stopped guest, its dump and the options the dump side needs."""

    def __init__(self, guest: LinuxGuest, core: Path) -> None:
        self.guest, self.core = guest, core
        self.options = guest.dump_options()
        self.maps = json.loads(
            run(["maps", "--json", "--layout", "none", str(core), *self.options])
        )


@pytest.fixture(scope="module", params=LINUX_PROFILES)
def stopped(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stopped]:
    work = tmp_path_factory.mktemp(request.param)
    try:
        guest = LinuxGuest(request.param, work)
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield Stopped(guest, guest.dump(work / "core.elf"))
    finally:
        guest.close()


def run(args: list[str], codes: tuple[int, ...] = (0,)) -> str:
    done = subprocess.run(["pagewalk", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode in codes, (args, done.stderr)
    return done.stdout


def both(s: Stopped, args: list[str], codes: tuple[int, ...] = (0,)) -> tuple[str, str]:
    """(live, dump) output of one command; the dump side gets QEMU's registers."""
    live = run([args[0], "--gdb", s.guest.gdb, *args[1:]], codes)
    dump = run([args[0], str(s.core), *args[1:], *s.options], codes)
    return live, dump


def body(text: str) -> list[str]:
    """The lines after the header (the first line and its indented notes name the source)."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if "┃" in ln), len(lines))
    return lines[start:]


def sample_vas(maps: list[dict[str, Any]]) -> list[int]:
    """A few VAs: the start of the first range, the middle of one, the last byte of the last,
    and the page after the first range when nothing maps it (a fault)."""
    first, mid, last = maps[0], maps[len(maps) // 2], maps[-1]
    vas = [first["va"], mid["va"] + mid["size"] // 2, last["va"] + last["size"] - 1]
    after = first["va"] + first["size"]
    if len(maps) > 1 and maps[1]["va"] > after:
        vas.append(after)
    return vas


def test_maps_equals_the_dump(stopped: Stopped) -> None:
    live, dump = both(stopped, ["maps", "--layout", "linux"])
    assert len(body(live)) > 20 and body(live) == body(dump)
    assert stopped.guest.status() == "paused"  # left as found


def test_maps_json_equals_the_dump(stopped: Stopped) -> None:
    live, dump = both(stopped, ["maps", "--json", "--layout", "none"])
    assert json.loads(live) == stopped.maps and live == dump


def test_maps_auto_layout_equals_the_dump(stopped: Stopped) -> None:
    """The live machine has no VMCOREINFO: its layout comes from the tables (arm64's linear map
    and kernel text, Linux's -2 GiB text on x86-64 and RISC-V), and must name every range as
    the dump's VMCOREINFO-based layout does."""
    live, dump = both(stopped, ["maps"])
    assert body(live) == body(dump)


def test_walk_and_translate_equal_the_dump(stopped: Stopped) -> None:
    vas = [hex(va) for va in sample_vas(stopped.maps)]
    live, dump = both(stopped, ["translate", "--json", *vas])
    assert live == dump and len(json.loads(live)) == len(vas)
    for va in vas:
        live, dump = both(stopped, ["walk", "--json", va])
        assert live == dump and json.loads(live)["steps"]


def test_lint_json_equals_the_dump(stopped: Stopped) -> None:
    live, dump = both(stopped, ["lint", "--json", "--layout", "linux"], codes=(0, 1))
    assert live == dump and "findings" in json.loads(live)


def test_diff_root_b_on_one_connection(stopped: Stopped) -> None:
    """``diff --gdb H:P --root-b R``: side B is the same live memory under root R (x86: the
    kernel PGD against KPTI's user PGD, 4 KiB above it)."""
    if stopped.guest.prof.arch != "x86_64":
        pytest.skip("--root-b names one root register: x86's CR3 here")
    text = stopped.guest.qmp.hmp("info registers")
    root = (int(re.search(r"CR3=([0-9a-f]+)", text).group(1), 16) & ~0xFFF) + 0x1000  # type: ignore[union-attr]
    live, dump = both(stopped, ["diff", "--json", "--root-b", hex(root)], codes=(1,))  # differ
    assert live == dump and json.loads(live)["changes"]


def test_diff_of_the_dump_and_the_live_machine(stopped: Stopped) -> None:
    """``diff CORE --gdb H:P``: the machine against its own dump, so nothing changed."""
    if stopped.guest.prof.arch != "x86_64":
        pytest.skip("the dump side of `diff` takes its registers from the core: x86 only")
    out = json.loads(run(["diff", "--json", str(stopped.core), "--gdb", stopped.guest.gdb]))
    assert out["changes"] == [] and out["added"] == out["removed"] == 0
