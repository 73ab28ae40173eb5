"""Hostile page-table images for tests and benchmarks: each a raw image (offset = PA) plus the
``IMAGE.json`` sidecar pagewalk reads, or an ELF core with several ``PT_LOAD`` segments.

A dump is attacker-controlled input. These builders write the shapes that once made the
inspectors blow up or hide mappings:

- :func:`fanout`: x86-64 4-level tables where every entry of each level points to the one table
  of the next level (16 KiB of tables describing 2^27 ranges, or 2^36 pages);
- :func:`self_ref`: a PML4 whose entries all point back to itself (one 4 KiB table);
- :func:`benign`: the same number of table bytes, each table distinct (the baseline);
- :func:`straddle_end` / :func:`straddle_core`: a page table that runs past the end of the file
  or across a ``PT_LOAD`` boundary, which walks use and enumeration must not drop;
- :func:`aarch64_l0_block`: a 4K-granule level-0 block descriptor (not allowed, Arm ARM D8.3);
- :func:`random_tables`: arbitrary bytes as tables, for property tests.

Facts: Intel SDM vol. 3A §4.5 (tables 4-14 to 4-20), Arm ARM D8.3, RISC-V privileged spec
(Sv32/39/48/57 PTE), System V gABI "Program Header" for the core.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

PAGE = 4096
#: a small spec for ``pagewalk build``: 8 MiB of RAM, three user pages; ``{mode}`` is filled in
SMALL_SPEC = """
mode = "{mode}"
ram = "8M"
[tables]
base = "0x400000"
size = "2M"
[[map]]
va = "0x10000"
pa = "0x200000"
size = "0x3000"
perm = "rwu"
"""
#: x86 table entry: present, writable, user (Intel SDM vol. 3A table 4-15)
X86_TABLE = 0x7
#: x86 4K leaf: present, writable, user
X86_LEAF = 0x7
#: x86_64 CR4 (PAE|PSE) and CR0 (PG|WP|PE) as a QEMU note carries them
CR0 = 0x80010001
CR4 = 0x30


def write_image(
    path: Path,
    memory: bytes | bytearray,
    *,
    mode: str = "x86_64",
    roots: dict[str, int] | None = None,
    registers: dict[str, Any] | None = None,
) -> Path:
    """Write ``memory`` as a raw image and its sidecar (mode, registers, roots); returns path."""
    path.write_bytes(bytes(memory))
    side = {
        "pagewalk": 1,
        "mode": mode,
        "registers": registers or {},
        "roots": roots or {"CR3": PAGE},
    }
    Path(f"{path}.json").write_text(json.dumps(side))
    return path


def _table(entries: list[int] | int, n: int = 512, esize: int = 8) -> bytes:
    values = entries if isinstance(entries, list) else [entries] * n
    return struct.pack(f"<{len(values)}{'Q' if esize == 8 else 'I'}", *values)


def fanout(
    directory: Path,
    *,
    fan: tuple[int, int, int] = (512, 512, 512),
    same_frame: bool = False,
    name: str = "fanout.img",
) -> Path:
    """PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000, each entry to the next table.

    ``fan`` says how many entries (from index 0) of the PML4, the PDPT and the PD point down.
    The PT's 512 leaves map PAs 0..2 MiB contiguously (one 2 MiB range per PT reached: 2^27
    ranges with the full fan), or all map the frame 0x5000 with ``same_frame`` (2^36 single
    pages with the full fan, none merging).
    """
    mem = bytearray(6 * PAGE)
    for n, table in zip(fan, (0x1000, 0x2000, 0x3000), strict=True):
        mem[table : table + 8 * n] = _table((table + PAGE) | X86_TABLE, n)
    leaves = [0x5000 | X86_LEAF] * 512 if same_frame else [i * PAGE | X86_LEAF for i in range(512)]
    mem[0x4000:0x5000] = _table(leaves)
    return write_image(directory / name, mem)


def self_ref(directory: Path, *, name: str = "selfref.img") -> Path:
    """One PML4 at 0x1000 whose 512 entries all point to itself: 2^36 pages mapping 0x1000."""
    mem = bytearray(2 * PAGE)
    mem[0x1000:0x2000] = _table(0x1000 | X86_TABLE)
    return write_image(directory / name, mem)


def benign(directory: Path, *, name: str = "benign.img") -> Path:
    """The baseline: the same 16 KiB of tables as :func:`fanout`, each table distinct.

    PML4[0] -> PDPT[0] -> PD[0] -> PT, whose 512 leaves map 0..2 MiB (one range, 512 pages).
    """
    mem = bytearray(6 * PAGE)
    for table in (0x1000, 0x2000, 0x3000):
        mem[table : table + 8] = _table([(table + PAGE) | X86_TABLE])
    mem[0x4000:0x5000] = _table([i * PAGE | X86_LEAF for i in range(512)])
    return write_image(directory / name, mem)


def _chain(mem: bytearray, pt: int) -> None:
    """PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT ``pt`` through entry 0 of each."""
    mem[0x1000:0x1008] = _table([0x2000 | X86_TABLE])
    mem[0x2000:0x2008] = _table([0x3000 | X86_TABLE])
    mem[0x3000:0x3008] = _table([pt | X86_TABLE])


#: how many of the straddling PT's entries lie inside the image
STRADDLE_IN = 256


def straddle_end(directory: Path, *, name: str = "straddle.img") -> Path:
    """A PT at 0x4000 of which only the first :data:`STRADDLE_IN` entries are in the file.

    Its leaves map VA ``i * 0x1000`` to PA ``0x100000 + i * 0x1000`` (i < 256); the file ends at
    0x4800, so entries 256..511 (PA 0x4800-0x5000) are outside the image.
    """
    mem = bytearray(0x4000 + 8 * STRADDLE_IN)
    _chain(mem, 0x4000)
    leaves = [(0x100000 + i * PAGE) | X86_LEAF for i in range(STRADDLE_IN)]
    mem[0x4000:] = _table(leaves)
    return write_image(directory / name, mem)


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 4)

    return struct.pack("<III", len(name) + 1, len(desc), ntype) + pad(name + b"\0") + pad(desc)


def write_core(path: Path, loads: list[tuple[int, bytes]], *, cr3: int) -> Path:
    """An x86-64 ELF core (QEMU layout): a QEMU CPU-state note, one PT_LOAD per (PA, bytes).

    Segment data is laid out in the file in the order given, each after the previous one, so
    segments adjacent in PA are not adjacent in the file when listed out of order.
    """
    desc = bytearray(440)
    struct.pack_into("<II", desc, 0, 1, 440)
    struct.pack_into("<5Q", desc, 392, CR0, 0, 0, cr3, CR4)
    notes = _note(b"CORE", 1, bytes(336)) + _note(b"QEMU", 0, bytes(desc))
    phnum = 1 + len(loads)
    note_off = 64 + 56 * phnum
    ehdr = struct.pack(
        "<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, b"\0" * 7,
        4, 62, 1, 0, 64, 0, 0, 64, 56, phnum, 0, 0, 0,
    )  # fmt: skip
    phdrs = struct.pack("<IIQQQQQQ", 4, 0, note_off, 0, 0, len(notes), len(notes), 0)
    offset = note_off + len(notes)
    body = b""
    for pa, data in loads:
        phdrs += struct.pack("<IIQQQQQQ", 1, 0, offset, pa, pa, len(data), len(data), 0)
        body += data
        offset += len(data)
    path.write_bytes(ehdr + phdrs + notes + body)
    return path


def straddle_core(directory: Path, *, name: str = "straddle.core") -> Path:
    """An ELF core whose PT at 0x4000 straddles PT_LOAD boundaries.

    PT_LOAD 1 holds PA 0-0x4400 (the upper tables and PT entries 0..127); PT_LOAD 2 holds PA
    0x4400-0x4800 (entries 128..255) but is stored *before* segment 1 in the file, so the two
    are adjacent in PA and not in the file; PA 0x4800-0x5000 (entries 256..511) is in no
    segment. Leaves map VA ``i * 0x1000`` to PA ``0x100000 + i * 0x1000``.
    """
    mem = bytearray(0x4000 + 8 * STRADDLE_IN)
    _chain(mem, 0x4000)
    mem[0x4000:] = _table([(0x100000 + i * PAGE) | X86_LEAF for i in range(STRADDLE_IN)])
    return write_core(directory / name, [(0x4400, mem[0x4400:]), (0, mem[:0x4400])], cr3=0x1000)


def aarch64_l0_block(directory: Path, *, name: str = "l0block.img") -> Path:
    """AArch64, 4K granule: TTBR0's L0 entry 0 is a block descriptor (type bit 1 clear), which
    only levels 1 and 2 allow; L0 entry 1 leads to a valid 4K page at VA 2^39."""
    mem = bytearray(5 * PAGE)
    block = 0x40000000 | 1 | (1 << 10)  # valid, AF, type=block
    mem[0x1000:0x1010] = _table([block, 0x2000 | 3])
    mem[0x2000:0x2008] = _table([0x3000 | 3])
    mem[0x3000:0x3008] = _table([0x4000 | 3])
    mem[0x4000:0x4008] = _table([0x100000 | 3 | (1 << 10)])
    roots = {"TTBR0_EL1": 0x1000, "TTBR1_EL1": 0}
    return write_image(directory / name, mem, mode="aarch64", roots=roots)


#: the root register name of each mode family's sidecar
ROOT_NAMES = {
    "x86": "CR3", "pae": "CR3", "x86_64": "CR3", "la57": "CR3",
    "aarch64": "TTBR0_EL1", "sv32": "satp", "sv39": "satp", "sv48": "satp", "sv57": "satp",
}  # fmt: skip


def random_tables(directory: Path, mode: str, data: bytes, *, name: str = "random.img") -> Path:
    """``data`` as the memory from PA 0x1000 on (page 0 stays zero), root at 0x1000.

    For AArch64 both TTBRs point to 0x1000. Entries point anywhere: inside, past the end,
    back to themselves.
    """
    mem = bytearray(PAGE) + bytearray(data)
    roots = {ROOT_NAMES[mode]: PAGE}
    if mode == "aarch64":
        roots["TTBR1_EL1"] = PAGE
    return write_image(directory / name, mem, mode=mode, roots=roots)


def pagewalk_cli(
    *args: str,
    timeout: float = 600,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m pagewalk ARGS`` as a user runs it: the installed entry point, text output."""
    return subprocess.run(
        [sys.executable, "-m", "pagewalk", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,
    )


def load_corefile() -> ModuleType:
    """tests/inspect/corefile.py, which writes QEMU-style ELF cores (loaded by path: a
    ``tests/inspect`` package name would shadow the standard library's ``inspect``)."""
    path = Path(__file__).parents[1] / "inspect" / "corefile.py"
    spec = importlib.util.spec_from_file_location("tests_corefile", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
