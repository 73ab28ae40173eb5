"""pagewalk against real 32-bit x86 Linux in QEMU: non-PAE and PAE cores read with no options.

Debian 12's linux 6.1 ``686`` (32-bit paging, 4 MiB pages) and ``686-pae`` kernels (PAE, with
``pti=off`` and ``pti=on``), booted by ``scripts/qemu_reference.py`` under Debian's QEMU 7.2 and
dumped with ``dump-guest-memory`` at a kernel stop and at a user stop (captures in
``$PAGEWALK_CACHE`` or ``~/.cache/pagewalk/qemu-ref``; see docs/qemu-reference.md). Every expected
value is QEMU's own output: ``info mem`` and ``info tlb`` line for line, and ``gva2gpa``.

What these dumps hold, and how it is met (docs/inspect.md):

- the core is ELF64 with e_machine EM_386 and the 32-bit QEMU CPU-state note: the mode comes from
  CR4.PAE in it, CR3 from it;
- without PTI, the PAE CR3 is 32-byte aligned, not page aligned (PDPT = CR3 bits 31:5);
- QEMU's walker sets Accessed (bit 5) in the PAE PDPTEs, which Intel SDM table 4-8 reserves: by
  default pagewalk accepts it as QEMU does, ``lint`` names it, and ``--strict`` faults;
- ``info tlb`` in PAE mode masks the PTE with ``~0xfff`` only, so XD (bit 63) stays in its PA
  column (``8000000000200000``): pagewalk's formatter reproduces that, and the test compares
  the text unmasked.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qemu_captures import capture as _capture
from qemu_captures import lines

from pagewalk import fast as fastmod
from pagewalk.batch import NO_PA, Translator
from pagewalk.cli.machine import Machine, load_machine
from pagewalk.enumerate import mappings
from pagewalk.inspect.lint import lint
from pagewalk.inspect.qemu import info_mem, info_tlb
from pagewalk.walk import walk

pytestmark = pytest.mark.qemu


def capture(profile: str, sub: str = "") -> Path:
    return _capture(profile, sub, "qemu-system-i386")


#: profile -> the mode the core must select by itself
PROFILES = {"i386": "x86", "i386-pae": "pae", "i386-pae-pti": "pae"}
CASES = [(p, s) for p in PROFILES for s in ("", "user")]
IDS = [f"{p}-{s or 'kernel'}" for p, s in CASES]
IMPLS = ["numpy", *(["compiled"] if fastmod.AVAILABLE else [])]


def qemu_cr3(d: Path) -> int:
    match = re.search(r"CR3=([0-9a-f]+)", (d / "registers.txt").read_text())
    assert match, "no CR3 in registers.txt"
    return int(match.group(1), 16)


def load(d: Path) -> Machine:
    return load_machine(str(d / "vmcore.elf"), {})


@pytest.mark.parametrize(("profile", "sub"), CASES, ids=IDS)
def test_mode_and_root_from_the_core_alone(profile: str, sub: str) -> None:
    d = capture(profile, sub)
    m = load(d)
    cr3 = qemu_cr3(d)
    assert m.mode.name == PROFILES[profile]
    assert m.roots == (cr3 & (0xFFFFF000 if m.mode.name == "x86" else 0xFFFFFFE0),)
    assert not getattr(m.mode, "strict", True)


@pytest.mark.parametrize(("profile", "sub"), CASES, ids=IDS)
def test_info_mem_matches_qemu(profile: str, sub: str) -> None:
    d = capture(profile, sub)
    m = load(d)
    theirs = lines(d / "info_mem.txt")
    assert len(theirs) > 10
    assert list(info_mem(mappings(m.mem, m.mode, m.roots), m.mode)) == theirs


@pytest.mark.parametrize(("profile", "sub"), CASES, ids=IDS)
def test_info_tlb_matches_qemu(profile: str, sub: str) -> None:
    d = capture(profile, sub)
    m = load(d)
    theirs = lines(d / "info_tlb.txt")
    assert len(theirs) > 300
    if m.mode.name == "pae":  # QEMU's quirk is in the file, and is reproduced, not masked
        assert any(line.split()[1].startswith("8") for line in theirs)
    assert list(info_tlb(mappings(m.mem, m.mode, m.roots, raw_attrs=True), m.mode)) == theirs


def _answers(d: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((d / "gva2gpa.json").read_text())
    assert any(a["pa"] is None for a in data) and any(a["pa"] is not None for a in data)
    return data


@pytest.mark.parametrize(("profile", "sub"), CASES, ids=IDS)
def test_translations_match_gva2gpa(profile: str, sub: str) -> None:
    d = capture(profile, sub)
    m = load(d)
    answers = _answers(d)
    assert {a["cr3"] for a in answers} == {qemu_cr3(d)}
    wrong = [
        (hex(a["va"]), a["pa"], walk(m.mem, m.mode, m.roots, a["va"]).pa)
        for a in answers
        if walk(m.mem, m.mode, m.roots, a["va"]).pa != a["pa"]
    ]
    assert not wrong, f"{len(wrong)} of {len(answers)} differ from gva2gpa: {wrong[:5]}"
    vas = np.array([a["va"] for a in answers], dtype=np.uint64)
    want = [NO_PA if a["pa"] is None else a["pa"] for a in answers]
    for impl in IMPLS:
        got = Translator(m.mem, m.mode, m.roots, impl=impl).translate(vas)
        assert [int(p) for p in got.pa.tolist()] == want, impl


@pytest.mark.parametrize("profile", ["i386-pae", "i386-pae-pti"])
def test_pae_pdpte_accessed_is_a_finding(profile: str) -> None:
    d = capture(profile)
    m = load(d)
    root = m.roots[0]
    raws = [int.from_bytes(m.mem.read(root + 8 * i, 8), "little") for i in range(4)]
    flagged = [r for r in raws if r & 1 and r & 0x1E6]
    assert flagged, "QEMU 7.2 sets Accessed in used PAE PDPTEs"
    found = [f for f in lint(m.mem, m.mode, m.roots) if f.code == "pdpte-reserved-bits"]
    assert sorted(f.raw for f in found if f.raw is not None) == sorted(flagged)
    assert all("QEMU" in f.message and f.severity == "warning" for f in found)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pagewalk", *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("profile", list(PROFILES))
def test_cli_with_no_options(profile: str) -> None:
    d = capture(profile)
    core = str(d / "vmcore.elf")
    run = _cli("maps", core, "--format", "qemu-info-mem")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == lines(d / "info_mem.txt")
    run = _cli("maps", core, "--format", "qemu-info-tlb")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == lines(d / "info_tlb.txt")


def test_cli_strict_pae_lists_nothing_and_says_why() -> None:
    d = capture("i386-pae")
    cr3 = qemu_cr3(d)
    run = _cli("maps", str(d / "vmcore.elf"), "--strict", "--format", "qemu-info-mem")
    assert run.returncode == 1, (run.returncode, run.stderr)
    assert run.stdout == ""
    assert f"CR3 {cr3:#x}" in run.stderr and "bit 5" in run.stderr and "QEMU" in run.stderr
