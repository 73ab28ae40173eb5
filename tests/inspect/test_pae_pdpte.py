"""PAE PDPTEs with bits the manual reserves but QEMU's walker sets or ignores (bits 2:1, 8:5).

Intel SDM vol. 3A §4.4.1 and table 4-8: a PAE PDPTE has bits 2:1 and 8:5 reserved, and MOV to
CR3 raises #GP when a present PDPTE has one set. QEMU 7.2 never loads PDPTE registers: its walker
reads the PDPTE on every walk, checks only bits 63:MAXPHYADDR, and sets Accessed (bit 5) in it,
so every dump of a PAE Linux taken under QEMU has bit 5 set in its used PDPTEs.

By default pagewalk walks as QEMU does (so ``info mem``/``info tlb``/``gva2gpa`` agree) and
``lint`` names the bits as ``pdpte-reserved-bits``; ``strict=True`` (CLI ``--strict``) follows the
manual and faults. translate(), walk() and both batch Translators must agree in both settings.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pagewalk
from pagewalk import AddressSpace, Perm, PhysicalMemory, make_mode
from pagewalk import fast as fastmod
from pagewalk.alloc import SimpleFrameAllocator
from pagewalk.batch import BatchResult, Translator
from pagewalk.errors import ConfigError
from pagewalk.formats.base import PagingMode, U64Array
from pagewalk.image import save
from pagewalk.inspect.lint import lint
from pagewalk.mmu.faults import PF_P, PF_RSVD, walk_fault
from pagewalk.mmu.regs import default_regs

MIB = 1 << 20
RW = Perm.READ | Perm.WRITE
IMPLS = ["numpy", *(["compiled"] if fastmod.AVAILABLE else [])]
#: the bits QEMU leaves alone (2:1, 8:5) and the ones it checks (63, and 51:MAXPHYADDR)
LENIENT = [1, 2, 5, 6, 7, 8]


def build(strict: bool, bits: int) -> tuple[PagingMode, PhysicalMemory, AddressSpace, int]:
    """A PAE space mapping 0x40000000+2M (PDPTE 1) with ``bits`` ORed into that PDPTE."""
    mode = make_mode("pae", maxphyaddr=40, strict=strict)
    mem = PhysicalMemory(32 * MIB)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(16 * MIB, 8 * MIB))
    va = 0x4000_0000
    space.map_range(va, 4 * MIB, 2 * MIB, RW).ignore()
    step = space.walk(va).steps[0]
    assert step.level.name == "PDPT"
    mem.write_entry(step.entry_pa, 8, step.raw | bits)
    return mode, mem, space, va


def batch(
    mode: PagingMode, mem: PhysicalMemory, roots: tuple[int, ...], va: int, impl: str
) -> tuple[U64Array, BatchResult]:
    """64 VAs 32 KiB apart from ``va``, through one Translator of ``impl``."""
    vas = np.arange(64, dtype=np.uint64) * np.uint64(0x8000) + np.uint64(va)
    return vas, Translator(mem, mode, roots, impl=impl).translate(vas)


@pytest.mark.parametrize("n", LENIENT)
def test_default_walks_like_qemu(n: int) -> None:
    mode, mem, space, va = build(False, 1 << n)
    pa, size, fault = pagewalk.translate(mem, mode, space.roots, va + 0x1234)
    assert fault is None and pa == 4 * MIB + 0x1234 and size == 2 * MIB
    assert pagewalk.walk(mem, mode, space.roots, va).pa == 4 * MIB
    for impl in IMPLS:
        vas, got = batch(mode, mem, space.roots, va, impl)
        assert (got.fault == 0).all(), impl
        assert got.pa.tolist() == [4 * MIB + int(v) - va for v in vas.tolist()], impl


@pytest.mark.parametrize("n", LENIENT)
def test_strict_follows_the_manual(n: int) -> None:
    mode, mem, space, va = build(True, 1 << n)
    pa, _, fault = pagewalk.translate(mem, mode, space.roots, va)
    assert pa is None and fault is not None and fault.kind == "reserved" and fault.level == 3
    assert f"bit {n}" in fault.reason and "QEMU" in fault.reason, fault.reason
    pf = walk_fault(mode, default_regs(mode), va, fault, "read", False)
    assert pf.code is not None and pf.code & PF_RSVD and pf.code & PF_P
    for impl in IMPLS:
        _, got = batch(mode, mem, space.roots, va, impl)
        assert got.kinds() == ["reserved"] * 64, impl
        assert (got.level == 3).all(), impl


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("n", [40, 52, 62, 63])
def test_high_bits_fault_in_both(strict: bool, n: int) -> None:
    """QEMU checks bits 63:MAXPHYADDR of a PDPTE too (its rsvd_mask | PG_NX_MASK)."""
    mode, mem, space, va = build(strict, 1 << n)
    _, _, fault = pagewalk.translate(mem, mode, space.roots, va)
    assert fault is not None and fault.kind == "reserved" and fault.level == 3
    for impl in IMPLS:
        _, got = batch(mode, mem, space.roots, va, impl)
        assert got.kinds() == ["reserved"] * 64, impl


def test_lint_names_qemu() -> None:
    mode, mem, space, _ = build(False, 1 << 5)
    found = [f for f in lint(mem, mode, space.roots) if f.code == "pdpte-reserved-bits"]
    assert len(found) == 1, found
    f = found[0]
    assert f.severity == "warning" and f.level == "PDPT" and f.va == 0x4000_0000
    assert "PDPTE 1" in f.message and "bit 5" in f.message and "QEMU" in f.message
    assert f.entry_pa == space.roots[0] + 8
    strict_mode = make_mode("pae", maxphyaddr=40, strict=True)
    codes = {f.code for f in lint(mem, strict_mode, space.roots)}
    assert "pdpte-reserved-bits" not in codes and "reserved" in codes


def test_clean_pdptes_have_no_finding() -> None:
    mode, mem, space, _ = build(False, 0)
    assert not [f for f in lint(mem, mode, space.roots) if f.code == "pdpte-reserved-bits"]


def test_cr3_32_byte_aligned() -> None:
    """PAE CR3 bits 31:5 give the PDPT (SDM §4.4.1); Linux without PTI uses such a CR3."""
    mode, mem, space, va = build(False, 0)
    root = space.roots[0]
    moved = root + 0xB00
    mem.write(moved, mem.read(root, 32))
    mem.write(root, bytes(32))
    assert mode.root_from_register(moved | 0x1F) == moved
    assert pagewalk.translate(mem, mode, (moved,), va)[0] == 4 * MIB
    assert pagewalk.translate(mem, mode, (root,), va)[0] is None


def test_strict_is_x86_only() -> None:
    assert make_mode("pae", strict=True).describe().endswith("strict)")
    with pytest.raises(ConfigError, match="strict"):
        make_mode("sv39", strict=True)


def _image(tmp_path: Path, bits: int) -> Path:
    mode, mem, space, _ = build(False, 0)
    root = space.roots[0]
    for i in range(4):
        mem.write_entry(root + 8 * i, 8, mem.read_entry(root + 8 * i, 8) | 1 | bits)
    path = tmp_path / "pae.img"
    save(path, mem, mode, space.roots)
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pagewalk", *args], capture_output=True, text=True, check=False
    )


def test_cli_default_and_strict(tmp_path: Path) -> None:
    path = _image(tmp_path, 1 << 5)
    ok = _run("maps", str(path), "--format", "qemu-info-mem")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == ["0000000040000000-0000000040200000 0000000000200000 -rw"]
    bad = _run("maps", str(path), "--strict")
    assert bad.returncode == 2, (bad.returncode, bad.stdout, bad.stderr)
    assert bad.stdout == ""
    assert "CR3" in bad.stderr and "PDPTE 0" in bad.stderr and "bit 5" in bad.stderr
    assert "--strict" in bad.stderr
    lint_run = _run("lint", str(path), "--json")
    assert lint_run.returncode == 1 and "pdpte-reserved-bits" in lint_run.stdout


def test_cli_empty_root_says_so(tmp_path: Path) -> None:
    """A root table with no present entry: nothing listed, a note on stderr naming it, exit 1."""
    mode = make_mode("pae", maxphyaddr=40)
    mem = PhysicalMemory(32 * MIB)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(16 * MIB, 8 * MIB))
    path = tmp_path / "empty.img"
    save(path, mem, mode, space.roots)
    run = _run("maps", str(path))
    assert run.returncode == 1, run.stderr
    assert f"CR3 {space.roots[0]:#x}" in run.stderr and "no present entry" in run.stderr


def test_cli_strict_on_a_real_shape(tmp_path: Path) -> None:
    """Linux's PDPTEs under QEMU: one clean (user half, empty), the others with bit 5. Under
    --strict maps names the faulting PDPTEs, lists nothing and exits 1; by default exits 0."""
    mode, mem, space, _ = build(False, 1 << 5)
    root = space.roots[0]
    mem.write_entry(root, 8, 0x1)  # PDPTE 0: present, clean, an empty PD at PA 0
    path = tmp_path / "linux-like.img"
    save(path, mem, mode, space.roots)
    assert _run("maps", str(path)).returncode == 0
    run = _run("maps", str(path), "--strict", "--format", "qemu-info-mem")
    assert run.returncode == 1, (run.returncode, run.stdout, run.stderr)
    assert run.stdout == ""
    assert "1 of the 2 present entries" in run.stderr and "PDPTE 1" in run.stderr
