"""RISC-V cores with no satp: ``--satp`` decoding and refusals, and the root found in RAM.

The cores are built here: an ELFCLASS64 EM_RISCV ``ET_CORE`` with one PT_LOAD of RAM holding an
Sv39 root table and, optionally, Linux's VMCOREINFO text naming it as ``swapper_pg_dir``.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pagewalk.cli.machine import load_machine
from pagewalk.errors import ConfigError
from pagewalk.formats.riscv import decode_satp
from pagewalk.inspect.roots import riscv_root, vmcoreinfo_in_ram
from pagewalk.walk import walk

RAM, SIZE = 0x80000000, 0x10000
ROOT = RAM + 0x1000
INFO = (
    b"OSRELEASE=6.12.0\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffff80001000\n"
    b"NUMBER(VA_BITS)=39\nNUMBER(va_kernel_pa_offset)=0xffffffff00000000\n\0"
)
LEAF = 0xEF  # V R W X G A D


def core(tmp_path: Path, info: bytes | None = INFO, roots: int = 1) -> Path:
    """An EM_RISCV core: ``roots`` identical Sv39 root tables (a gigapage at VA 0x80000000
    and one at 0xffffffff80000000), the VMCOREINFO text (with a decoy format string) in RAM."""
    ram = bytearray(SIZE)
    for n in range(roots):
        table = 0x1000 * (n + 1)
        for index in (2, 510):
            struct.pack_into("<Q", ram, table + index * 8, ((RAM >> 12) << 10) | LEAF)
    ram[0x8000:0x8010] = b"OSRELEASE=%s\n\0\0\0"
    if info is not None:
        ram[0x9000 : 0x9000 + len(info)] = info
    head = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    head += struct.pack("<HHIQQQIHHHHHH", 4, 243, 1, 0, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 7, 0x1000, 0, RAM, SIZE, SIZE, 0x1000)
    data = (head + phdr).ljust(0x1000, b"\0") + bytes(ram)
    path = tmp_path / "riscv.elf"
    path.write_bytes(data)
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pagewalk", *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("value", "mode", "asid", "root"),
    [
        (0x8000C00000083085, "sv39", 0xC, 0x83085000),
        (0x9000C00000083070, "sv48", 0xC, 0x83070000),
        (0xAFFFF00000000001, "sv57", 0xFFFF, 0x1000),
        (0x80412345, "sv32", 1, 0x12345000),
    ],
)
def test_decode_satp(value: int, mode: str, asid: int, root: int) -> None:
    satp = decode_satp(value)
    assert (satp.mode, satp.asid, satp.root) == (mode, asid, root)


@pytest.mark.parametrize(
    ("value", "xlen", "words"),
    [
        (0, None, "MODE=0"),
        (0x1000000000001000, None, "reserved"),
        (0xB000000000000001, None, "Sv64"),
        (0x12345, 32, "Bare"),
        (0x1_8000_0000, 32, "wider"),
    ],
)
def test_decode_satp_refuses(value: int, xlen: int | None, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        decode_satp(value, xlen)


def test_no_options_finds_swapper_pg_dir(tmp_path: Path) -> None:
    path = core(tmp_path)
    m = load_machine(str(path), {})
    assert (m.mode.name, m.roots) == ("sv39", (ROOT,))
    assert any("swapper_pg_dir 0xffffffff80001000" in line for line in m.why)
    assert walk(m.mem, m.mode, m.roots, 0xFFFFFFFF80000123).pa == RAM + 0x123
    found = vmcoreinfo_in_ram(m.mem)
    assert found is not None and found[0] == RAM + 0x9000


def test_satp_overrides_the_search(tmp_path: Path) -> None:
    path = core(tmp_path, roots=2)
    m = load_machine(str(path), {"satp": (8 << 60) | ((ROOT + 0x1000) >> 12)})
    assert m.roots == (ROOT + 0x1000,)
    assert any("ASID 0x0" in line for line in m.why)


def test_one_sound_candidate_is_used_without_vmcoreinfo(tmp_path: Path) -> None:
    m = load_machine(str(core(tmp_path, info=None)), {"mode": "sv39"})
    assert m.roots == (ROOT,)
    assert any("find-roots" in line for line in m.why)


def test_tied_candidates_are_refused(tmp_path: Path) -> None:
    path = core(tmp_path, info=None, roots=2)
    with pytest.raises(ConfigError, match="--satp"):
        riscv_root(load_machine(str(path), {"satp": (8 << 60) | (ROOT >> 12)}).mem)
    done = run("maps", str(path))
    assert done.returncode == 2
    assert "give --satp" in done.stderr and "find-roots" in done.stderr


def test_cli_no_options_and_info_mem(tmp_path: Path) -> None:
    done = run("maps", str(core(tmp_path)), "--format", "qemu-info-mem")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "vaddr            paddr            size             attr",
        "---------------- ---------------- ---------------- -------",
        "0000000080000000 0000000080000000 0000000040000000 rwx-gad",
        "ffffffff80000000 0000000080000000 0000000040000000 rwx-gad",
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--satp", "0x8000000000080001", "--mode", "x86_64"], "does not take --satp"),
        (["--satp", "0x8000000000080001", "--root", "0x80001000"], "not both"),
        (["--satp", "0x9000000000080001", "--mode", "sv39"], "disagrees"),
        (["--satp", "0x80001"], "MODE=0"),
        (["--satp", "0xf000000000080001"], "reserved"),
    ],
)
def test_cli_refuses_bad_satp(tmp_path: Path, args: list[str], words: str) -> None:
    done = run("maps", str(core(tmp_path)), *args)
    assert done.returncode == 2
    assert words in done.stderr
