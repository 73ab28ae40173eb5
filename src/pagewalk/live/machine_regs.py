"""A running machine's paging registers and RAM layout, as a dump's notes would give them.

One idea: read the registers each architecture's walk starts from and turn them into the
``saved["registers"]`` dict :func:`pagewalk.machine.registers.configure` takes from a core, by a
table keyed by the family (never by a mode class): x86 CR0, CR3, CR4 and IA32_EFER (Intel SDM
vol. 3A §2.5, §4.1.1: EFER.LMA picks IA-32e paging, CR4.LA57 5 levels, CR4.PAE PAE paging);
AArch64 TTBR0_EL1, TTBR1_EL1, TCR_EL1, MAIR_EL1 and SCTLR_EL1 (Arm ARM D19; SCTLR_EL1.M=0 is
"MMU off"); RISC-V satp (privileged spec, satp: MODE picks Sv32/39/48/57, PPN the root).

The RAM layout is QEMU's flat view of the system address space (``info mtree -f``): regions of
type ``ram`` and ``rom``, the same blocks ``dump-guest-memory`` writes, adjacent ones merged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pagewalk.errors import ConfigError, LiveError, hx
from pagewalk.formats.riscv import decode_satp
from pagewalk.formats.x86_bits import CR0_PG, CR4_LA57, CR4_PAE
from pagewalk.memory.protocols import Region

_EFER_LMA = 1 << 10  # Intel SDM vol. 3A §2.2.1, IA32_EFER.LMA
_SCTLR_M = 1  # Arm ARM D19 SCTLR_EL1.M


@dataclass(frozen=True)
class Family:
    """The registers one family's walk needs and how they become the loader's options."""

    names: tuple[str, ...]
    build: Callable[[dict[str, int], int, str], tuple[dict[str, Any], str]]


def _x86(regs: dict[str, int], xlen: int, where: str) -> tuple[dict[str, Any], str]:
    cr0, cr3, cr4, efer = regs["cr0"], regs["cr3"], regs["cr4"], regs["efer"]
    if not cr0 & CR0_PG:
        raise LiveError(f"{where}: paging is off (CR0={hx(cr0)}, PG=0)")
    if efer & _EFER_LMA:
        mode = "la57" if cr4 & CR4_LA57 else "x86_64"
    else:
        mode = "pae" if cr4 & CR4_PAE else "x86"
    why = f"CR0={hx(cr0)} CR3={hx(cr3)} CR4={hx(cr4)} EFER={hx(efer)} read live, so mode {mode}"
    return {"mode": mode, "root": cr3, "cr0": cr0, "cr4": cr4, "efer": efer}, why


def _arm(regs: dict[str, int], xlen: int, where: str) -> tuple[dict[str, Any], str]:
    sctlr = regs.get("sctlr_el1")
    if sctlr is not None and not sctlr & _SCTLR_M:
        raise LiveError(f"{where}: the EL1&0 MMU is off (SCTLR_EL1={hx(sctlr)}, M=0)")
    out = {
        "mode": "aarch64",
        "ttbr0": regs["ttbr0_el1"],
        "ttbr1": regs["ttbr1_el1"],
        "tcr": regs["tcr_el1"],
        "mair": regs["mair_el1"],
    }
    why = " ".join(f"{k.upper()}={hx(v)}" for k, v in regs.items()) + " read live"
    return out, why


def _riscv(regs: dict[str, int], xlen: int, where: str) -> tuple[dict[str, Any], str]:
    try:
        satp = decode_satp(regs["satp"], xlen)
    except ConfigError as exc:
        raise LiveError(f"{where}: {exc}") from None
    return {"mode": satp.mode, "root": satp.root}, f"satp read live: {satp.describe()}"


#: each family's registers, by :attr:`ArchFacts.family` names
FAMILIES = {
    "x86": Family(("cr0", "cr3", "cr4", "efer"), _x86),
    "arm": Family(("ttbr0_el1", "ttbr1_el1", "tcr_el1", "mair_el1", "sctlr_el1"), _arm),
    "riscv": Family(("satp",), _riscv),
}
#: registers a family can do without (SCTLR_EL1 only refines the message)
OPTIONAL = frozenset({"sctlr_el1"})


def family_of(arch: str, where: str) -> tuple[str, int]:
    """The family and XLEN of a target architecture (``i386:x86-64``, ``aarch64``,
    ``riscv:rv64`` from a target description; ``x86_64``, ``riscv64`` from QMP).

    Raises:
        LiveError: an architecture pagewalk does not walk.
    """
    name = arch.lower()
    if name.startswith(("i386", "x86")):
        return "x86", 32 if name in ("i386", "x86") else 64
    if name.startswith("aarch64"):
        return "arm", 64
    if name.startswith("riscv"):
        return "riscv", 32 if "32" in name else 64
    raise LiveError(f"{where}: architecture {arch!r} is not one pagewalk walks")


def saved_registers(
    family: str, xlen: int, read: Callable[[str], int | None], where: str
) -> tuple[dict[str, Any], list[str]]:
    """``({"registers": ...}, why)`` for the loader, reading each register with ``read``.

    Raises:
        LiveError: a register the family needs is missing, or paging is off.
    """
    rule = FAMILIES[family]
    regs: dict[str, int] = {}
    for name in rule.names:
        value = read(name)
        if value is not None:
            regs[name] = value
    missing = [n.upper() for n in rule.names if n not in regs and n not in OPTIONAL]
    if missing:
        raise LiveError(
            f"{where}: cannot read {', '.join(missing)}; give --mode and the root registers "
            "(--root, --ttbr0/--ttbr1, --satp)"
        )
    built, why = rule.build(regs, xlen, where)
    return {"registers": built}, [why]


_FLAT = re.compile(r"^\s*([0-9a-f]+)-([0-9a-f]+) \(prio [-\d]+, (\w+)\)", re.MULTILINE)


def ram_layout(mtree: str, where: str) -> list[Region]:
    """The RAM of ``info mtree -f``'s flat view of the address space ``memory``.

    Raises:
        LiveError: no such view, or one without RAM.
    """
    for view in re.split(r"\n(?=FlatView #)", mtree):
        if not re.search(r'^ AS "memory"', view, re.MULTILINE):
            continue
        runs: list[Region] = []
        for lo, hi, kind in _FLAT.findall(view):
            if kind not in ("ram", "rom"):
                continue
            base, end = int(lo, 16), int(hi, 16) + 1
            if runs and runs[-1].end == base:
                base = runs.pop().base
            runs.append(Region(base, end - base))
        if runs:
            return runs
    raise LiveError(f"{where}: `info mtree -f` shows no RAM in the address space 'memory'")


def hmp_register(text: str) -> Callable[[str], int | None]:
    """A reader of registers from ``info registers`` text (``CR3=...``, ``satp  ...``)."""

    def read(name: str) -> int | None:
        m = re.search(rf"(?<![\w]){re.escape(name)}\s*[=:]?\s*([0-9a-fA-F]+)\b", text, re.I)
        return int(m.group(1), 16) if m else None

    return read
