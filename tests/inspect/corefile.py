"""Write small ELF64 cores the way QEMU's dump-guest-memory lays them out (for tests)."""

from __future__ import annotations

import struct
from pathlib import Path


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(name) + 1, len(desc), ntype) + pad(name + b"\0") + pad(desc)


def qemu_x86_note(cr0: int, cr3: int, cr4: int) -> bytes:
    """A QEMUCPUState: version, size, 16 GPRs, rip, rflags, 10 segments, cr[5], gs base."""
    desc = bytearray(440)
    struct.pack_into("<II", desc, 0, 1, 440)
    struct.pack_into("<5Q", desc, 392, cr0, 0, 0, cr3, cr4)
    return _note(b"QEMU", 0, bytes(desc))


def make_core(
    path: Path, memory: bytes, *, cpus: list[tuple[int, int, int]], base: int = 0, machine: int = 62
) -> Path:
    """An ELF64 core: one PT_NOTE (a CORE prstatus and a QEMU note per CPU), one PT_LOAD."""
    notes = b"".join(_note(b"CORE", 1, bytes(336)) for _ in cpus)
    notes += b"".join(qemu_x86_note(*c) for c in cpus)
    phoff, phnum = 64, 2
    note_off = phoff + 56 * phnum
    load_off = note_off + len(notes)
    ehdr = struct.pack(
        "<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, b"\0" * 7,
        4, machine, 1, 0, phoff, 0, 0, 64, 56, phnum, 0, 0, 0,
    )  # fmt: skip
    ph_note = struct.pack("<IIQQQQQQ", 4, 0, note_off, 0, 0, len(notes), len(notes), 0)
    ph_load = struct.pack("<IIQQQQQQ", 1, 0, load_off, base, base, len(memory), len(memory), 0)
    path.write_bytes(ehdr + ph_note + ph_load + notes + memory)
    return path
