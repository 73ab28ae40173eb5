"""pagewalk against real riscv64 Linux (Debian 13, linux 6.12) booted in QEMU 7.2, Sv39/48/57.

The captures come from ``scripts/qemu_reference.py`` (see docs/qemu-reference.md). QEMU's RISC-V
core holds no satp, so the line-for-line ``info mem`` compare uses the live satp QEMU reported
(a process's root, in meta.json), given as ``--satp``; with no options pagewalk finds Linux's
``swapper_pg_dir`` from the VMCOREINFO text in RAM, whose kernel half must equal the live one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from qemu_captures import cache_dir
from qemu_captures import capture as _capture

from pagewalk.cli.machine import load_machine
from pagewalk.enumerate import mappings
from pagewalk.formats import Perm
from pagewalk.inspect.qemu import info_mem
from pagewalk.walk import walk

pytestmark = pytest.mark.qemu


def capture(profile: str, sub: str = "") -> Path:
    return _capture(profile, sub, "qemu-system-riscv64")


PROFILES = ["riscv64-sv39", "riscv64-sv48", "riscv64-sv57"]
STOPS = [(p, s) for p in PROFILES for s in ("", "user")]
MODES = {"riscv64-sv39": "sv39", "riscv64-sv48": "sv48", "riscv64-sv57": "sv57"}


def stop(profile: str, sub: str) -> dict[str, Any]:
    meta = json.loads((cache_dir() / profile / "meta.json").read_text())
    regs: dict[str, Any] = meta["user" if sub else "kernel"]
    return regs


@pytest.mark.parametrize(("profile", "sub"), STOPS)
def test_info_mem_matches_qemu(profile: str, sub: str) -> None:
    d = capture(profile, sub)
    m = load_machine(str(d / "vmcore.elf"), {"satp": stop(profile, sub)["satp"]})
    assert m.mode.name == MODES[profile]
    ours = list(info_mem(mappings(m.mem, m.mode, m.roots, raw_attrs=True), m.mode))
    theirs = (d / "info_mem.txt").read_text().splitlines()
    assert len(theirs) > 100
    assert ours == theirs


@pytest.mark.parametrize(("profile", "sub"), STOPS)
def test_cli_info_mem_matches_qemu(profile: str, sub: str) -> None:
    d = capture(profile, sub)
    satp = hex(stop(profile, sub)["satp"])
    args = ["maps", str(d / "vmcore.elf"), "--satp", satp, "--format", "qemu-info-mem"]
    done = subprocess.run(
        [sys.executable, "-m", "pagewalk", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == (d / "info_mem.txt").read_text().splitlines()


@pytest.mark.parametrize(("profile", "sub"), STOPS)
def test_translations_match_gva2gpa(profile: str, sub: str) -> None:
    """Every VA QEMU translated gives its PA. QEMU's debug walk honours the privilege of the
    stop: from U-mode a page without U answers unmapped; from S-mode (SUM clear) a U page does."""
    d = capture(profile, sub)
    regs = stop(profile, sub)
    m = load_machine(str(d / "vmcore.elf"), {"satp": regs["satp"]})
    answers: list[dict[str, Any]] = json.loads((d / "gva2gpa.json").read_text())
    assert {a["satp"] for a in answers} == {regs["satp"]}
    assert any(a["pa"] is None for a in answers) and any(a["pa"] is not None for a in answers)
    user = regs["priv"] == 0
    wrong = []
    for a in answers:
        result = walk(m.mem, m.mode, m.roots, a["va"])
        pa = result.pa
        if user and pa is not None and not result.perm & Perm.USER:
            pa = None
        if pa != a["pa"]:
            wrong.append((hex(a["va"]), a["pa"], pa, a.get("label")))
    assert not wrong, f"{len(wrong)} of {len(answers)} differ from gva2gpa: {wrong[:5]}"


@pytest.mark.parametrize("profile", PROFILES)
def test_no_options_finds_swapper_pg_dir(profile: str) -> None:
    """With no options the root is swapper_pg_dir, and its mappings are exactly the kernel
    half of the live satp's (every process shares the kernel half)."""
    d = capture(profile)
    meta = json.loads((d / "meta.json").read_text())
    found = load_machine(str(d / "vmcore.elf"), {})
    assert found.mode.name == MODES[profile]
    swapper = int(meta["kallsyms"]["swapper_pg_dir"], 16)
    assert found.roots == ((swapper - 0xFFFFFFFEFFE00000) & ((1 << 64) - 1),)
    assert any("swapper_pg_dir" in line for line in found.why)
    live = load_machine(str(d / "vmcore.elf"), {"satp": meta["kernel"]["satp"]})
    ours = list(mappings(found.mem, found.mode, found.roots))
    kernel_half = [r for r in mappings(live.mem, live.mode, live.roots) if r.va >> 63]
    assert ours and all(r.va >> 63 for r in ours)
    assert ours == kernel_half


def test_cli_maps_with_no_options() -> None:
    d = capture("riscv64-sv39")
    done = subprocess.run(
        [sys.executable, "-m", "pagewalk", "maps", str(d / "vmcore.elf"), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) > 100 and all(r["va"] >> 63 for r in rows)
