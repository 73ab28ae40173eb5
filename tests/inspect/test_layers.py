"""The enumerator is a library layer, and the inspectors read architecture facts, not names.

- :mod:`pagewalk.enumerate` (what the kernel model and the inspectors both use) imports nothing
  from :mod:`pagewalk.inspect`.
- QEMU's ``info mem``/``info tlb`` texts (x86 monitor, Intel SDM vol. 3A ch. 4; RISC-V
  privileged spec) are chosen by ``mode.facts`` and the levels, so a mode under another name
  prints the same bytes.
- ``lint`` asks every mode for its lenient bits (``PagingMode.lenient_bits``), and names the
  entry by its level.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from pagewalk.enumerate import mappings
from pagewalk.formats import make_mode
from pagewalk.formats.base import Level, PagingMode
from pagewalk.image import Built, build
from pagewalk.inspect.lint import lint
from pagewalk.inspect.qemu import info_mem, info_tlb, needs_raw_attrs

MAPS = {
    "x86": [("0x400000", "0x0", "0x3000", "rwu"), ("0xc0000000", "0x200400000", "0x800000", "rw")],
    "pae": [("0x400000", "0x0", "0x3000", "rwu"), ("0xc0000000", "0x400000", "0x400000", "rwx")],
    "x86_64": [
        ("0x400000", "0x0", "0x3000", "rwu"),
        ("0xffff800000000000", "0x40000000", "0x40000000", "rw"),
        ("0xffffffff80000000", "0x200000", "0x400000", "rx"),
    ],
    "la57": [("0x400000", "0x0", "0x3000", "rwu"), ("0xff00000000000000", "0x0", "0x5000", "r")],
    "sv32": [("0x400000", "0x0", "0x3000", "rwu"), ("0x80000000", "0x400000", "0x800000", "rw")],
    "sv39": [("0x400000", "0x0", "0x3000", "rwu"), ("0xffffffc000000000", "0x0", "0x5000", "rw")],
}


def _build(mode: str) -> Built:
    spec = {
        "mode": mode,
        "ram": "32M",
        "tables": {"base": "0x1000000", "size": "8M"},
        "map": [{"va": v, "pa": p, "size": s, "perm": perm} for v, p, s, perm in MAPS[mode]],
    }
    if mode == "x86":
        spec["registers"] = {"maxphyaddr": 40}  # PSE-36: a 4-MByte page above 4 GiB
    return build(spec)


def _texts(b: Built, mode: object) -> list[list[str]]:
    rows = list(mappings(b.mem, b.mode, b.space.roots, raw_attrs=True))
    plain = list(mappings(b.mem, b.mode, b.space.roots))
    out = [list(info_mem(rows if needs_raw_attrs("qemu-info-mem", mode) else plain, mode))]  # type: ignore[arg-type]
    if mode.facts.family == "x86":  # type: ignore[attr-defined]
        out.append(list(info_tlb(rows, mode)))  # type: ignore[arg-type]
    return out


def test_enumerator_imports_nothing_from_inspect() -> None:
    code = (
        "import sys, pagewalk.enumerate; "
        "bad = sorted(m for m in sys.modules if m.startswith('pagewalk.inspect')); "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", list(MAPS))
def test_qemu_text_follows_facts_not_the_mode_name(name: str) -> None:
    b = _build(name)
    expected = _texts(b, b.mode)
    assert all(expected) and all(len(t) > 1 for t in expected[1:])
    assert _texts(b, _renamed(b.mode)) == expected


def _renamed(mode: PagingMode) -> PagingMode:
    """``mode`` under a name no code knows, with the same facts (which its module derives)."""
    facts = mode.facts
    out = copy.copy(mode)
    out.__class__ = type("Renamed", (type(mode),), {"facts": property(lambda _: facts)})
    out.name = f"{mode.name}-renamed"
    return out


def test_qemu_text_widths() -> None:
    """32-bit VAs print with 8 hex digits in RISC-V's info mem, 16 for Sv39; x86 always 16."""
    rv32 = _texts(_build("sv32"), _build("sv32").mode)[0]
    assert rv32[0].startswith("vaddr    paddr") and rv32[2].split()[0] == "00400000"
    rv39 = _texts(_build("sv39"), _build("sv39").mode)[0]
    assert rv39[-1].split()[0] == "ffffffc000000000"
    b = _build("x86")
    tlb = _texts(b, b.mode)[1]
    # 4-MByte pages: QEMU masks the PDE with 0xffe00000 (the PSE-36 bits 20:13 do not show)
    assert tlb[-2:] == [
        "00000000c0000000: 0000000000400000 --P-----W",
        "00000000c0400000: 0000000000800000 --P-----W",
    ]


class _LenientRv(type(make_mode("sv39"))):  # type: ignore[misc]
    """A RISC-V mode that, like QEMU's PAE walker, accepts RSW bit 8 in a leaf."""

    def lenient_bits(self, raw: int, level: Level) -> int:
        return raw & (1 << 8) if level.depth == 0 and raw & 1 else 0


def test_lint_asks_every_mode_for_lenient_bits() -> None:
    b = _build("sv39")
    mode = _LenientRv("sv39")
    step = b.space.walk(0x400000).steps[-1]
    b.mem.write_entry(step.entry_pa, 8, step.raw | 1 << 8)
    found = [f for f in lint(b.mem, mode, b.space.roots) if f.code == "pdpte-reserved-bits"]
    assert len(found) == 1
    assert found[0].message.startswith("VPN[0]E 0 has reserved bit(s) 8 set: ")
    assert found[0].va == 0x400000 and found[0].severity == "warning"
