"""Parsing the human monitor's text: ``info registers``, x86 ``info tlb``, riscv
``info mem``, satp, VMCOREINFO, and what such a listing implies for one VA.

One idea: the monitor's text becomes numbers here, nowhere else. Intel SDM vol. 3A ch. 4
(CR0, CR3, CR4, EFER; 2.5 and 4.1), Arm ARM D8 (PSTATE.EL) and the RISC-V privileged spec
(4.1.11 satp: MODE 63:60, ASID 59:44, PPN 43:0).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from typing import Any


def parse_x86_registers(text: str) -> dict[str, int]:
    regs: dict[str, int] = {}
    for key in ("CR0", "CR2", "CR3", "CR4", "EFER", "RIP", "RSP", "EIP", "ESP"):
        m = re.search(rf"\b{key}=([0-9a-fA-F]+)", text)
        if m:
            regs[key] = int(m.group(1), 16)
    m = re.search(r"\bCPL=(\d)", text)
    if m:
        regs["CPL"] = int(m.group(1))
    for seg in ("CS", "SS", "FS", "GS", "TR", "GDT", "IDT"):
        m = re.search(rf"^{seg}\s*=\s*(?:([0-9a-f]{{4}}) )?([0-9a-f]+)", text, re.MULTILINE)
        if m:
            if m.group(1) is not None:
                regs[f"{seg}_SEL"] = int(m.group(1), 16)
            regs[f"{seg}_BASE"] = int(m.group(2), 16)
    return regs


def parse_arm_registers(text: str) -> dict[str, int]:
    regs: dict[str, int] = {}
    for r in re.finditer(r"\b(PC|SP|X\d\d)=([0-9a-f]{16})", text):
        regs[r.group(1)] = int(r.group(2), 16)
    m = re.search(r"PSTATE=([0-9a-f]+) \S+ EL(\d)", text)
    if m:
        regs["PSTATE"] = int(m.group(1), 16)
        regs["EL"] = int(m.group(2))
    return regs


@dataclasses.dataclass
class TlbEntry:
    va: int
    pa: int
    flags: str

    @property
    def large(self) -> bool:
        return self.flags[2] == "P"


def parse_info_tlb(text: str) -> list[TlbEntry]:
    out = []
    for m in re.finditer(r"^([0-9a-f]{16}): ([0-9a-f]{16}) ([-XGPDACTUW]{9})$", text, re.M):
        out.append(TlbEntry(int(m.group(1), 16), int(m.group(2), 16), m.group(3)))
    return out


def parse_riscv_registers(text: str) -> dict[str, int]:
    """`info registers` on riscv: ` pc  …`, CSR lines (` satp     a000…`), ` x2/sp    …`."""
    regs: dict[str, int] = {}
    for m in re.finditer(r"^ ([a-z][a-z0-9]*)\s+([0-9a-f]{16})\s*$", text, re.M):
        regs[m.group(1)] = int(m.group(2), 16)
    for m in re.finditer(r"\bx(\d+)/(\w+)\s+([0-9a-f]{16})", text):
        regs[m.group(2)] = int(m.group(3), 16)
    return regs


SATP_MODES = {0: ("Bare", 0), 8: ("Sv39", 39), 9: ("Sv48", 48), 10: ("Sv57", 57)}


def decode_satp(satp: int) -> dict[str, Any]:
    """RV64 satp: MODE bits 63:60, ASID bits 59:44, PPN bits 43:0."""
    mode = satp >> 60
    name, bits = SATP_MODES.get(mode, (f"reserved {mode}", 0))
    ppn = satp & ((1 << 44) - 1)
    return {
        "satp": satp,
        "mode": mode,
        "mode_name": name,
        "va_bits": bits,
        "asid": (satp >> 44) & 0xFFFF,
        "ppn": ppn,
        "root_pa": ppn << 12,
    }


@dataclasses.dataclass
class MemRange:
    """A line of riscv `info mem`: VAs va..va+size map to pa.. with attributes attr."""

    va: int
    pa: int
    size: int
    attr: str


def parse_riscv_info_mem(text: str) -> list[MemRange]:
    out = []
    for m in re.finditer(
        r"^([0-9a-f]{16}) ([0-9a-f]{16}) ([0-9a-f]{16}) ([-rwxugad]{7})$", text, re.M
    ):
        out.append(MemRange(int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16), m[4]))
    return out


def vmcoreinfo_values(text: str) -> dict[str, int]:
    """SYMBOL(x)=hex, NUMBER(x)=dec, KERNELOFFSET=hex as integers."""
    vals: dict[str, int] = {}
    for line in text.splitlines():
        key, _, val = line.partition("=")
        with contextlib.suppress(ValueError):
            if key.startswith("SYMBOL(") or key == "KERNELOFFSET":
                vals[key] = int(val, 16)
            elif key.startswith(("NUMBER(", "SIZE(", "OFFSET(")):
                vals[key] = int(val, 0)
    return vals


def mem_lookup(ranges: list[MemRange], va: int, u_mode: bool = False) -> int | None:
    """What riscv `info mem` implies gva2gpa answers for va. In U-mode QEMU 7.2's debug
    translation refuses pages without the U bit ("Unmapped"); in S-mode it translates U
    pages even with sstatus.SUM clear."""
    for r in ranges:
        if r.va <= va < r.va + r.size:
            if u_mode and "u" not in r.attr:
                return None
            return r.pa + (va - r.va)
    return None


def tlb_lookup(tlb: list[TlbEntry], va: int, large: int = 0x200000) -> int | None:
    """What `info tlb` implies for va (4K entries exactly; large entries as 2 MiB, or 4 MiB
    for 32-bit paging without PAE)."""
    for e in tlb:
        size = large if e.large else 0x1000
        if e.va <= va < e.va + size:
            return e.pa + (va - e.va)
    return None
