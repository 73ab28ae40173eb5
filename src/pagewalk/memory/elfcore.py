"""ELF cores (QEMU ``dump-guest-memory``, kdump): memory from PT_LOAD, registers from the notes.

Each ``PT_LOAD`` segment's ``p_paddr`` is a guest-physical address and its bytes sit at
``p_offset`` (System V gABI, "Program Header"). The notes carry one register set per CPU:
``CORE``/``NT_PRSTATUS`` (Linux ``struct elf_prstatus``: general registers only) and QEMU's own
``QEMU`` note (``QEMUCPUState`` in QEMU's ``target/i386/arch_dump.c``: general registers, ten
segment descriptors, then CR0 to CR4; see docs/qemu-reference.md). QEMU's AArch64 notes carry no
system registers (NT_PRSTATUS, NT_PRFPREG, and PAC/SVE state only), so TTBRn_EL1/TCR_EL1 come
from the ``VMCOREINFO`` note when the guest is Linux (``swapper_pg_dir`` and ``kimage_voffset``),
or from options. Headers are parsed with pyelftools; every foreign error becomes a DumpError.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from typing import IO, Any

from pagewalk.errors import DumpError, hx
from pagewalk.memory.dump import FileMemory, Segment, map_file

#: QEMUCPUState (x86): version, size, 16 GPRs, rip, rflags, 10 segments of 24 bytes, cr[5]
_QEMU_X86_CR = 8 + 16 * 8 + 2 * 8 + 10 * 24
_QEMU_X86_CS = 8 + 16 * 8 + 2 * 8
#: struct elf_prstatus: pr_reg starts after siginfo, signal masks, ids and four timevals
_PRSTATUS_REGS = 112
_X86_64_PRREG = (
    *("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx"),
    *("rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "rflags", "rsp", "ss"),
)
_NOTES_MAX = 64 << 20
NT_PRSTATUS = 1
EM_386, EM_X86_64, EM_AARCH64 = 3, 62, 183


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


def open_core(f: IO[bytes], source: str) -> Core:
    """Read an ELF core's segments and notes; its memory stays mapped, never read whole.

    Raises:
        DumpError: anything malformed, truncated, or not a core of a known machine.
    """
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    buf = map_file(f, source)
    try:
        elf = ELFFile(f)
        arches = {EM_386: "i386", EM_X86_64: "x86_64", EM_AARCH64: "aarch64"}
        number = _machine_number(elf.header["e_machine"])
        arch = arches.get(number, str(elf.header["e_machine"]))
        loads: list[Segment] = []
        raw_notes: list[tuple[int, int]] = []
        for seg in elf.iter_segments():
            kind = seg["p_type"]
            if kind == "PT_LOAD" and seg["p_filesz"]:
                loads.append(Segment(seg["p_paddr"], seg["p_filesz"], seg["p_offset"]))
            elif kind == "PT_NOTE":
                raw_notes.append((seg["p_offset"], seg["p_filesz"]))
        elf_class = int(elf.elfclass)
    except (ELFError, struct.error, ValueError, KeyError, EOFError, OSError) as exc:
        raise DumpError(
            f"{source}: not a readable ELF core ({type(exc).__name__}: {exc})"
        ) from None
    except Exception as exc:  # construct's StreamError and friends on truncated headers
        raise DumpError(f"{source}: truncated or corrupt ELF header ({exc})") from None
    notes = [n for off, size in raw_notes for n in _parse_notes(buf, off, size, source)]
    mem = FileMemory(buf, loads, source)
    cpus = _cpus(notes, arch)
    vmci = _vmcoreinfo(notes)
    summary = [(name, ntype, len(desc)) for name, ntype, desc in notes]
    return Core(mem, arch, elf_class, cpus, vmci, summary)


def _machine_number(value: Any) -> int:
    names = {"EM_386": EM_386, "EM_X86_64": EM_X86_64, "EM_AARCH64": EM_AARCH64}
    return names.get(value, -1) if isinstance(value, str) else int(value)


def _parse_notes(buf: mmap.mmap, off: int, size: int, source: str) -> list[tuple[str, int, bytes]]:
    """(name, type, desc) of each note in a PT_NOTE segment; 4-byte alignment as in cores."""
    if off < 0 or size < 0 or off + size > len(buf):
        raise DumpError(f"{source}: PT_NOTE at offset {hx(off)} runs past the end of the file")
    blob = bytes(buf[off : off + min(size, _NOTES_MAX)])
    out: list[tuple[str, int, bytes]] = []
    pos = 0
    while pos + 12 <= len(blob):
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
            for line in desc.decode("ascii", "replace").splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    out[key.strip()] = value.strip().rstrip("\0")
    return out
