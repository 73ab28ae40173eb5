"""ELF cores (QEMU ``dump-guest-memory``, kdump): memory from PT_LOAD, registers from the notes.

Each ``PT_LOAD`` segment's ``p_paddr`` is a guest-physical address and its bytes sit at
``p_offset`` (System V gABI, "ELF Header" and "Program Header"). The notes carry one register set
per CPU: ``CORE``/``NT_PRSTATUS`` (Linux ``struct elf_prstatus``: general registers only) and
QEMU's own ``QEMU`` note (``QEMUCPUState`` in QEMU's ``target/i386/arch_dump.c``: general
registers, ten segment descriptors, then CR0 to CR4; see docs/qemu-reference.md). QEMU's AArch64
notes carry no system registers (NT_PRSTATUS, NT_PRFPREG, and PAC/SVE state only), so
TTBRn_EL1/TCR_EL1 come from the ``VMCOREINFO`` note when the guest is Linux (``swapper_pg_dir``
and ``kimage_voffset``), or from options.

The ELF header is parsed with pyelftools, the program header table as one numpy record array,
and every field is checked before it is used, so a hostile core is a DumpError naming the
header: it must be a little-endian ``ET_CORE`` whose class fits its machine (QEMU writes EM_386
in either class, x86-64 and AArch64 in ELFCLASS64, EM_RISCV in either), a header table inside
the file, PT_LOADs with ``p_filesz <= p_memsz``, inside the file and the class's physical
address space, and not overlapping, and at most :data:`NOTES_MAX` bytes and
:data:`NOTES_COUNT` notes in all PT_NOTEs together (however many headers point at the same
bytes).
"""

from __future__ import annotations

import itertools
import mmap
import struct
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from pagewalk.errors import DumpError, hx
from pagewalk.memory.dump import FileMemory
from pagewalk.memory.files import map_file
from pagewalk.memory.protocols import Segment

#: QEMUCPUState (x86): version, size, 16 GPRs, rip, rflags, 10 segments of 24 bytes, cr[5]
_QEMU_X86_CR = 8 + 16 * 8 + 2 * 8 + 10 * 24
_QEMU_X86_CS = 8 + 16 * 8 + 2 * 8
#: struct elf_prstatus: pr_reg starts after siginfo, signal masks, ids and four timevals
_PRSTATUS_REGS = 112
_X86_64_PRREG = (
    *("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx"),
    *("rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "rflags", "rsp", "ss"),
)
#: bytes of notes read in all, across every PT_NOTE header
NOTES_MAX = 64 << 20
#: notes read in all (a core holds a few per CPU)
NOTES_COUNT = 1 << 18
#: program headers read (a core has one PT_LOAD per block of guest RAM)
PHDRS_MAX = 1 << 20
NT_PRSTATUS = 1
PT_LOAD, PT_NOTE = 1, 4
EM_386, EM_X86_64, EM_AARCH64, EM_RISCV = 3, 62, 183, 243
#: each machine pagewalk reads registers for, and the ELF classes its cores may use
_MACHINES = {
    EM_386: ("i386", "EM_386", (32, 64)),
    EM_X86_64: ("x86_64", "EM_X86_64", (64,)),
    EM_AARCH64: ("aarch64", "EM_AARCH64", (64,)),
    EM_RISCV: ("riscv", "EM_RISCV", (32, 64)),
}
#: Elf64_Phdr and Elf32_Phdr (gABI "Program Header"), little-endian
_PHDR = {
    64: np.dtype(
        [("p_type", "<u4"), ("p_flags", "<u4"), ("p_offset", "<u8"), ("p_vaddr", "<u8"),
         ("p_paddr", "<u8"), ("p_filesz", "<u8"), ("p_memsz", "<u8"), ("p_align", "<u8")]
    ),
    32: np.dtype(
        [("p_type", "<u4"), ("p_offset", "<u4"), ("p_vaddr", "<u4"), ("p_paddr", "<u4"),
         ("p_filesz", "<u4"), ("p_memsz", "<u4"), ("p_flags", "<u4"), ("p_align", "<u4")]
    ),
}  # fmt: skip
Phdrs = npt.NDArray[np.void]


@dataclass
class CpuState:
    """The registers one CPU left in the notes (names in lower case: ``cr3``, ``pc``)."""

    index: int
    regs: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Core:
    """An opened ELF core."""

    mem: FileMemory
    arch: str
    elf_class: int
    cpus: list[CpuState]
    vmcoreinfo: dict[str, str]
    notes: list[tuple[str, int, int]]

    def cpu(self, index: int) -> CpuState:
        """CPU ``index``, or a DumpError naming how many there are."""
        if not self.cpus:
            raise DumpError(f"{self.mem.source}: the core has no CPU notes")
        if not 0 <= index < len(self.cpus):
            raise DumpError(
                f"{self.mem.source}: no CPU {index} (the core has {len(self.cpus)}: "
                f"0..{len(self.cpus) - 1})"
            )
        return self.cpus[index]


@dataclass(frozen=True)
class _Header:
    """What the ELF header says about the core."""

    elf_class: int
    arch: str
    phoff: int
    phnum: int
    phentsize: int


def open_core(f: IO[bytes], source: str) -> Core:
    """Read an ELF core's segments and notes; its memory stays mapped, never read whole.

    Raises:
        DumpError: anything malformed, truncated, or not a core (the message names the header
            and the field).
    """
    buf = map_file(f, source)
    head = _header(f, len(buf), source)
    phdrs = _program_headers(buf, head, source)
    loads = _loads(phdrs, head.elf_class, len(buf), source)
    notes = _notes(buf, phdrs, source)
    mem = FileMemory(buf, loads, source)
    cpus = _cpus(notes, head.arch)
    vmci = _vmcoreinfo(notes)
    summary = [(name, ntype, len(desc)) for name, ntype, desc in notes]
    return Core(mem, head.arch, head.elf_class, cpus, vmci, summary)


def _header(f: IO[bytes], size: int, source: str) -> _Header:
    """The ELF header, checked: little-endian, ET_CORE, a class that fits the machine."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    if size < 52:
        raise DumpError(f"{source}: {size} bytes is too short for an ELF header")
    try:
        elf = ELFFile(f)
        little = bool(elf.little_endian)
        elf_class = int(elf.elfclass)
        e_type, e_machine = elf.header["e_type"], elf.header["e_machine"]
        phoff, phentsize = int(elf.header["e_phoff"]), int(elf.header["e_phentsize"])
        phnum = int(elf.num_segments())
    except (ELFError, struct.error, ValueError, KeyError, EOFError, OSError) as exc:
        raise DumpError(
            f"{source}: not a readable ELF core ({type(exc).__name__}: {exc})"
        ) from None
    except Exception as exc:  # construct's StreamError and friends on truncated headers
        raise DumpError(f"{source}: truncated or corrupt ELF header ({exc})") from None
    if not little:
        raise DumpError(f"{source}: a big-endian ELF file (pagewalk reads little-endian cores)")
    if e_type != "ET_CORE":
        raise DumpError(f"{source}: an ELF file of type {e_type} is not a core (ET_CORE)")
    number = _machine_number(e_machine)
    arch, name, classes = _MACHINES.get(number, (str(e_machine), str(e_machine), (32, 64)))
    if elf_class not in classes:
        raise DumpError(
            f"{source}: an {name} core in an ELFCLASS{elf_class} file "
            f"({name} cores are ELFCLASS{classes[0]})"
        )
    return _Header(elf_class, arch, phoff, phnum, phentsize)


def _program_headers(buf: mmap.mmap, head: _Header, source: str) -> Phdrs:
    """The program header table as a record array, checked to lie inside the file."""
    dtype = _PHDR[head.elf_class]
    if head.phnum == 0:
        return np.zeros(0, dtype=dtype)
    if head.phentsize != dtype.itemsize:
        raise DumpError(
            f"{source}: e_phentsize {head.phentsize} is not {dtype.itemsize} (the size of an "
            f"ELF{head.elf_class} program header)"
        )
    if head.phnum > PHDRS_MAX:
        raise DumpError(
            f"{source}: {head.phnum} program headers is more than the {PHDRS_MAX} pagewalk reads"
        )
    if head.phoff + head.phnum * dtype.itemsize > len(buf):
        raise DumpError(
            f"{source}: {head.phnum} program headers of {dtype.itemsize} bytes at offset "
            f"{hx(head.phoff)} run past the end of the file at {hx(len(buf))}"
        )
    table: Phdrs = np.frombuffer(buf, dtype=dtype, count=head.phnum, offset=head.phoff).copy()
    return table


def _loads(phdrs: Phdrs, elf_class: int, size: int, source: str) -> list[Segment]:
    """One segment per PT_LOAD with file bytes, each checked, none overlapping another."""
    top = (1 << 64) - 1 if elf_class == 64 else 1 << 32  # where the last segment may end
    out: list[tuple[Segment, int]] = []
    for i in np.flatnonzero(phdrs["p_type"] == PT_LOAD).tolist():
        ph = phdrs[i]
        off, pa = int(ph["p_offset"]), int(ph["p_paddr"])
        filesz, memsz = int(ph["p_filesz"]), int(ph["p_memsz"])
        where = f"{source}: program header {i} (PT_LOAD)"
        if filesz > memsz:
            raise DumpError(f"{where}: p_filesz {hx(filesz)} is larger than p_memsz {hx(memsz)}")
        if pa + memsz > top:
            raise DumpError(
                f"{where}: p_paddr {hx(pa)} + p_memsz {hx(memsz)} runs past the "
                f"{elf_class}-bit physical address space"
            )
        if off + filesz > size:
            raise DumpError(
                f"{where}: file bytes {hx(off)}-{hx(off + filesz)} run past the end of the "
                f"file, which ends at {hx(size)} (truncated dump?)"
            )
        if filesz:
            out.append((Segment(pa, filesz, off), i))
    out.sort()
    for (a, i), (b, j) in itertools.pairwise(out):
        if b.pa < a.pa + a.size:
            first, second = sorted((i, j))
            raise DumpError(
                f"{source}: program headers {first} and {second} (PT_LOAD) overlap at PA {hx(b.pa)}"
            )
    return [s for s, _ in out]


def _notes(buf: mmap.mmap, phdrs: Phdrs, source: str) -> list[tuple[str, int, bytes]]:
    """(name, type, desc) of every note of every PT_NOTE, within the limits in total."""
    out: list[tuple[str, int, bytes]] = []
    total = 0
    for i in np.flatnonzero(phdrs["p_type"] == PT_NOTE).tolist():
        off, size = int(phdrs[i]["p_offset"]), int(phdrs[i]["p_filesz"])
        where = f"{source}: program header {i} (PT_NOTE)"
        if off + size > len(buf):
            raise DumpError(
                f"{where}: file bytes {hx(off)}-{hx(off + size)} run past the end of the file, "
                f"which ends at {hx(len(buf))}"
            )
        total += size
        if total > NOTES_MAX:
            raise DumpError(
                f"{where}: the notes add up to more than {hx(NOTES_MAX)} bytes, more than any "
                "core holds"
            )
        out.extend(_parse_notes(buf, off, size, source, NOTES_COUNT - len(out), where))
    return out


def _machine_number(value: Any) -> int:
    names = {
        "EM_386": EM_386, "EM_X86_64": EM_X86_64, "EM_AARCH64": EM_AARCH64, "EM_RISCV": EM_RISCV,
    }  # fmt: skip
    return names.get(value, -1) if isinstance(value, str) else int(value)


def _parse_notes(
    buf: mmap.mmap, off: int, size: int, source: str, room: int, where: str
) -> list[tuple[str, int, bytes]]:
    """(name, type, desc) of each note in a PT_NOTE segment; 4-byte alignment as in cores."""
    blob = bytes(buf[off : off + size])
    out: list[tuple[str, int, bytes]] = []
    pos = 0
    while pos + 12 <= len(blob):
        if len(out) == room:
            raise DumpError(f"{where}: more than {NOTES_COUNT} notes in all")
        namesz, descsz, ntype = struct.unpack_from("<III", blob, pos)
        name_at = pos + 12
        desc_at = name_at + ((namesz + 3) & ~3)
        end = desc_at + ((descsz + 3) & ~3)
        if desc_at + descsz > len(blob):
            raise DumpError(f"{source}: note at offset {hx(off + pos)} is truncated")
        name = blob[name_at : name_at + namesz].rstrip(b"\0").decode("ascii", "replace")
        out.append((name, ntype, blob[desc_at : desc_at + descsz]))
        pos = end
    return out


def _cpus(notes: list[tuple[str, int, bytes]], arch: str) -> list[CpuState]:
    """One state per CPU: the n-th CORE note and the n-th QEMU note belong to CPU n."""
    cpus: dict[int, CpuState] = {}
    seen: dict[str, int] = {}
    for name, ntype, desc in notes:
        if (name, ntype) not in (("CORE", NT_PRSTATUS), ("QEMU", 0)):
            continue
        index = seen.get(name, 0)
        seen[name] = index + 1
        cpu = cpus.setdefault(index, CpuState(index))
        regs = _prstatus(desc, arch) if name == "CORE" else _qemu_state(desc, arch)
        if regs:
            cpu.regs.update(regs)
            cpu.notes.append("NT_PRSTATUS" if name == "CORE" else "QEMU")
    return [cpus[i] for i in sorted(cpus)]


def _prstatus(desc: bytes, arch: str) -> dict[str, int]:
    if arch == "x86_64" and len(desc) >= _PRSTATUS_REGS + 8 * len(_X86_64_PRREG):
        values = struct.unpack_from(f"<{len(_X86_64_PRREG)}Q", desc, _PRSTATUS_REGS)
        return {k: v for k, v in zip(_X86_64_PRREG, values, strict=True) if k != "orig_rax"}
    if arch == "aarch64" and len(desc) >= _PRSTATUS_REGS + 34 * 8:
        values = struct.unpack_from("<34Q", desc, _PRSTATUS_REGS)
        return {"sp": values[31], "pc": values[32], "pstate": values[33]}
    return {}


def _qemu_state(desc: bytes, arch: str) -> dict[str, int]:
    if arch not in ("x86_64", "i386") or len(desc) < _QEMU_X86_CR + 40:
        return {}
    cr = struct.unpack_from("<5Q", desc, _QEMU_X86_CR)
    rip, rflags = struct.unpack_from("<QQ", desc, 8 + 16 * 8)
    (cs,) = struct.unpack_from("<I", desc, _QEMU_X86_CS)
    return {
        "cr0": cr[0], "cr2": cr[2], "cr3": cr[3], "cr4": cr[4],
        "rip": rip, "rflags": rflags, "cs": cs,
    }  # fmt: skip


def _vmcoreinfo(notes: list[tuple[str, int, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, _type, desc in notes:
        if name == "VMCOREINFO":
            out.update(parse_vmcoreinfo(desc))
    return out


def parse_vmcoreinfo(text: bytes) -> dict[str, str]:
    """``KEY=value`` lines of a VMCOREINFO text (a note's or the copy in guest RAM)."""
    out: dict[str, str] = {}
    for line in text.decode("ascii", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().rstrip("\0")
    return out
