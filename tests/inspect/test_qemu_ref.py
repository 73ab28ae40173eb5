"""pagewalk against a real Linux booted in QEMU: ``info mem``, ``info tlb`` and ``gva2gpa``.

The reference files come from ``scripts/qemu_reference.py`` (Debian's kernel and QEMU, cached in
``$PAGEWALK_CACHE`` or ``~/.cache/pagewalk/qemu-ref``; see docs/qemu-reference.md). Every
expected value here is QEMU's own output. Run with ``pytest -m qemu`` after the script.

Known divergence, documented in docs/inspect.md: QEMU 7.2's LA57 ``info mem`` inverts the
present tests of the PDPTE and PDE loops and prints nothing for a 5-level guest, so the LA57
profile is compared with ``info tlb`` and ``gva2gpa`` only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from qemu_captures import capture as _capture
from qemu_captures import lines

from pagewalk.cli.machine import Machine, load_machine
from pagewalk.enumerate import mappings
from pagewalk.formats import Perm
from pagewalk.inspect.qemu import info_mem, info_tlb
from pagewalk.walk import walk

pytestmark = pytest.mark.qemu


def capture(profile: str, sub: str = "") -> Path:
    binary = "qemu-system-aarch64" if profile == "aarch64" else "qemu-system-x86_64"
    return _capture(profile, sub, binary)


X86 = [("x86_64", ""), ("x86_64", "user"), ("x86_64-la57", ""), ("x86_64-la57", "user")]


@pytest.mark.parametrize(("profile", "sub"), X86)
def test_info_tlb_matches_qemu(profile: str, sub: str) -> None:
    d = capture(profile, sub)
    m = load_machine(str(d / "vmcore.elf"), {})
    ours = list(info_tlb(mappings(m.mem, m.mode, m.roots, raw_attrs=True), m.mode))
    theirs = lines(d / "info_tlb.txt")
    assert len(theirs) > 100
    assert ours == theirs


@pytest.mark.parametrize(("profile", "sub"), [("x86_64", ""), ("x86_64", "user")])
def test_info_mem_matches_qemu(profile: str, sub: str) -> None:
    d = capture(profile, sub)
    m = load_machine(str(d / "vmcore.elf"), {})
    ours = list(info_mem(mappings(m.mem, m.mode, m.roots), m.mode))
    theirs = lines(d / "info_mem.txt")
    assert len(theirs) > 5
    assert ours == theirs


def test_la57_info_mem_is_qemus_known_bug() -> None:
    """QEMU 7.2 prints nothing for LA57; we print ranges that agree with its own info tlb."""
    d = capture("x86_64-la57")
    m = load_machine(str(d / "vmcore.elf"), {})
    assert m.mode.name == "la57"
    assert lines(d / "info_mem.txt") == []
    ours = list(info_mem(mappings(m.mem, m.mode, m.roots), m.mode))
    tlb_vas = [int(line.split(":")[0], 16) for line in lines(d / "info_tlb.txt")]
    first = int(ours[0].split("-")[0], 16)
    assert first == tlb_vas[0]


def _answers(d: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((d / "gva2gpa.json").read_text())
    assert data
    return data


def _check_translations(m: Machine, answers: list[dict[str, Any]], el0: bool = False) -> None:
    """Each VA translates to QEMU's answer. At EL0, QEMU's Arm debug walk also checks that EL0
    may read the page (it uses the current regime), so a privileged-only page answers None."""
    wrong = []
    for a in answers:
        result = walk(m.mem, m.mode, m.roots, a["va"])
        pa = result.pa
        if el0 and pa is not None and not result.perm & Perm.USER:
            pa = None
        if pa != a["pa"]:
            wrong.append((hex(a["va"]), a["pa"], pa, a.get("label")))
    assert not wrong, f"{len(wrong)} of {len(answers)} differ from gva2gpa: {wrong[:5]}"


@pytest.mark.parametrize(("profile", "sub"), X86)
def test_translations_match_gva2gpa_x86(profile: str, sub: str) -> None:
    d = capture(profile, sub)
    m = load_machine(str(d / "vmcore.elf"), {})
    answers = _answers(d)
    assert {a["cr3"] & ~0xFFF for a in answers} == {m.roots[0]}
    assert any(a["pa"] is None for a in answers) and any(a["pa"] is not None for a in answers)
    _check_translations(m, answers)


@pytest.mark.parametrize("sub", ["", "user"])
def test_translations_match_gva2gpa_aarch64(sub: str) -> None:
    d = capture("aarch64", sub)
    meta = json.loads((d.parent if sub else d).joinpath("meta.json").read_text())
    regs = meta["user" if sub else "kernel"]
    opts = {
        "mode": "aarch64",
        "ttbr0": regs["ttbr0_el1"],
        "ttbr1": regs["ttbr1_el1"],
        "tcr": regs["tcr_el1"],
        "mair": regs["mair_el1"],
    }
    m = load_machine(str(d / "vmcore.elf"), opts)
    _check_translations(m, _answers(d), el0=regs["el"] == 0)


def test_aarch64_root_from_vmcoreinfo() -> None:
    """With no options, TTBR1 comes from VMCOREINFO and kernel VAs translate as QEMU says."""
    d = capture("aarch64")
    m = load_machine(str(d / "vmcore.elf"), {})
    kernel_half = [a for a in _answers(d) if a["va"] >> 63]
    assert kernel_half
    _check_translations(m, kernel_half)
