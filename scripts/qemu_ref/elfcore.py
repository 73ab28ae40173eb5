"""Reading QEMU's ELF core (``dump-guest-memory``): headers, notes, guest-physical bytes.

One idea: the core is read with ``struct`` only, independently of pagewalk's own reader, so a
test can compare the two. ELF32 for a 32-bit x86 guest, ELF64 otherwise; the register notes
hold the state of Intel SDM vol. 3A ch. 4 (CR3), Arm ARM D8 and the RISC-V privileged spec.
"""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path
from typing import Any

from .common import RefError
from .profiles import NEW_ARCHES

EM_NAMES = {3: "EM_386", 62: "EM_X86_64", 183: "EM_AARCH64", 243: "EM_RISCV"}


PT_NAMES = {1: "PT_LOAD", 4: "PT_NOTE"}


@dataclasses.dataclass
class ElfCore:
    elf_class: int  # 1 ELF32 (QEMU writes one for a 32-bit x86 guest), 2 ELF64
    e_type: int
    e_machine: int
    phdrs: list[tuple[int, int, int, int, int, int]]  # type, offset, vaddr, paddr, filesz, memsz


def elf_core(path: Path) -> ElfCore:
    """ELF header and program headers of a little-endian ELF32 or ELF64 core."""
    with path.open("rb") as f:
        eh = f.read(64)
        if eh[:4] != b"\x7fELF" or eh[4] not in (1, 2) or eh[5] != 1:
            raise RefError(f"{path} is not a little-endian ELF file")
        e_type, e_machine = struct.unpack_from("<HH", eh, 16)
        if eh[4] == 2:
            phoff = struct.unpack_from("<Q", eh, 32)[0]
            phentsize, phnum = struct.unpack_from("<HH", eh, 54)
        else:
            phoff = struct.unpack_from("<I", eh, 28)[0]
            phentsize, phnum = struct.unpack_from("<HH", eh, 42)
        f.seek(phoff)
        raw = f.read(phentsize * phnum)
    phdrs = []
    for i in range(phnum):
        if eh[4] == 2:
            p_type, _fl, off, va, pa, filesz, memsz = struct.unpack_from(
                "<IIQQQQQ", raw, i * phentsize
            )
        else:
            p_type, off, va, pa, filesz, memsz = struct.unpack_from("<IIIIII", raw, i * phentsize)
        phdrs.append((p_type, off, va, pa, filesz, memsz))
    return ElfCore(eh[4], e_type, e_machine, phdrs)


def elf_notes(path: Path) -> list[tuple[str, int, bytes]]:
    """(name, type, desc) of every note in a little-endian ELF core's PT_NOTE segments."""
    out = []
    core = elf_core(path)
    with path.open("rb") as f:
        for p_type, p_offset, _va, _pa, p_filesz, _memsz in core.phdrs:
            if p_type != 4:  # PT_NOTE
                continue
            f.seek(p_offset)
            blob = f.read(p_filesz)
            out += parse_notes(blob)
    return out


def parse_notes(blob: bytes) -> list[tuple[str, int, bytes]]:
    out = []
    pos = 0
    while pos + 12 <= len(blob):
        namesz, descsz, ntype = struct.unpack_from("<III", blob, pos)
        pos += 12
        name = blob[pos : pos + namesz].rstrip(b"\0").decode(errors="replace")
        pos += (namesz + 3) & ~3
        desc = blob[pos : pos + descsz]
        pos += (descsz + 3) & ~3
        if namesz == 0 and descsz == 0:
            break
        out.append((name, ntype, desc))
    return out


def summarize_core(path: Path, arch: str) -> dict[str, Any]:
    notes = elf_notes(path)
    summary: dict[str, Any] = {
        "notes": [{"name": n, "type": t, "descsz": len(d)} for n, t, d in notes],
    }
    if arch in NEW_ARCHES:
        core = elf_core(path)
        summary["elf"] = {
            "class": f"ELF{32 * core.elf_class}",
            "e_type": core.e_type,
            "e_machine": core.e_machine,
            "e_machine_name": EM_NAMES.get(core.e_machine, "?"),
            "program_headers": [
                {
                    "type": PT_NAMES.get(t, str(t)),
                    "offset": off,
                    "vaddr": va,
                    "paddr": pa,
                    "filesz": fsz,
                    "memsz": msz,
                }
                for t, off, va, pa, fsz, msz in core.phdrs
            ],
        }
    for name, ntype, desc in notes:
        if name == "QEMU" and ntype == 0 and arch in ("x86_64", "i386") and len(desc) >= 432:
            version, size = struct.unpack_from("<II", desc, 0)
            cr = struct.unpack_from("<5Q", desc, 392)
            summary["qemu_cpu_state"] = {
                "version": version,
                "size": size,
                "rip": struct.unpack_from("<Q", desc, 136)[0],
                "cr0": cr[0],
                "cr2": cr[2],
                "cr3": cr[3],
                "cr4": cr[4],
            }
        if name == "CORE" and ntype == 1:  # NT_PRSTATUS
            if arch == "x86_64":
                rip, cs = struct.unpack_from("<QQ", desc, 112 + 16 * 8)
                summary["prstatus"] = {"rip": rip, "cs": cs}
            elif arch == "i386":  # 32-bit elf_prstatus: pr_reg (17 u32) at 72, eip is #12
                eip, cs = struct.unpack_from("<II", desc, 72 + 12 * 4)
                esp = struct.unpack_from("<I", desc, 72 + 15 * 4)[0]
                summary["prstatus"] = {"eip": eip, "cs": cs & 0xFFFF, "esp": esp}
            elif arch == "riscv64":  # pr_reg at 112: pc, then x1..x31
                pc, ra, sp = struct.unpack_from("<QQQ", desc, 112)
                summary["prstatus"] = {"pc": pc, "ra": ra, "sp": sp}
            else:
                sp, pc, pstate = struct.unpack_from("<QQQ", desc, 112 + 31 * 8)
                summary["prstatus"] = {"sp": sp, "pc": pc, "pstate": pstate}
        if name == "VMCOREINFO":
            summary["vmcoreinfo"] = desc.decode(errors="replace")
    return summary


def read_phys(core: Path, pa: int, size: int) -> bytes | None:
    """Bytes at a guest-physical address, from the PT_LOAD segments of a QEMU ELF core."""
    for p_type, off, _va, p_pa, filesz, _memsz in elf_core(core).phdrs:
        if p_type == 1 and p_pa <= pa and pa + size <= p_pa + filesz:
            with core.open("rb") as f:
                f.seek(off + pa - p_pa)
                return f.read(size)
    return None
