"""Random address spaces with mixed permissions, for the MMU's differential and TLB tests.

One idea: build real tables with :class:`~pagewalk.space.AddressSpace` (so the leaves are what a
kernel writes), then damage the pointer entries on purpose (clear R/W or U/S, set XD; set
APTable/UXNTable/PXNTable; clear AF) so that rights really combine across levels, as Intel SDM
vol. 3A §4.6 and Arm ARM D8.4 describe.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pagewalk import AddressSpace, PhysicalMemory, make_mode
from pagewalk.alloc.simple import SimpleFrameAllocator
from pagewalk.formats import aarch64 as arm
from pagewalk.formats import riscv as rv
from pagewalk.formats import x86_bits as x86
from pagewalk.formats.aarch64 import TCR_DEFAULT
from pagewalk.formats.base import EntryKind, Level, PagingMode, Perm

MIB = 1 << 20
RAM = 8 * MIB
TABLES = (0x100000, 0x100000)  # table frames come from PA 1..2 MiB
#: TCR_EL1 with IPS=40 bits, the widest the Unicorn oracle handles
TCR_40 = (TCR_DEFAULT & ~(7 << 32)) | (2 << 32)


@dataclass
class Built:
    """A random space and the addresses worth probing."""

    mode: PagingMode
    mem: PhysicalMemory
    space: AddressSpace
    probes: list[int]


def new_space(name: str, **mode_kw: int) -> tuple[PagingMode, PhysicalMemory, AddressSpace]:
    """An empty space in mode ``name`` over 8 MiB of RAM."""
    if name in ("x86", "pae", "x86_64", "la57"):
        mode_kw.setdefault("maxphyaddr", 40)  # QEMU TCG's MAXPHYADDR
    if name == "aarch64":
        mode_kw.setdefault("tcr", TCR_40)
    mode = make_mode(name, **mode_kw)
    mem = PhysicalMemory(RAM)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(*TABLES))
    return mode, mem, space


def _perm(rng: random.Random, arch: str) -> Perm:
    perm = Perm.READ
    for flag in (Perm.WRITE, Perm.EXEC, Perm.USER, Perm.GLOBAL):
        if rng.random() < 0.5:
            perm |= flag
    return perm


def _bases(mode: PagingMode, rng: random.Random) -> list[int]:
    """A few VA clusters, in both halves where the mode has two."""
    halves = mode.halves
    out = []
    for half in halves:
        span = half.va_end - half.va_start
        for _ in range(2):
            off = rng.randrange(0, span // 2) & ~((1 << 30) - 1)
            out.append(half.va_start + off)
    return out


def random_space(name: str, rng: random.Random, **mode_kw: int) -> Built:
    """A space with about 16 random pages (some large), then damaged pointer entries."""
    mode, mem, space = new_space(name, **mode_kw)
    sizes = sorted(mode.leaf_sizes())
    probes: list[int] = []
    pa_next = 3 * MIB
    for base in _bases(mode, rng):
        for _ in range(rng.randrange(3, 7)):
            size = sizes[0] if rng.random() < 0.8 else rng.choice(sizes[1:] or sizes)
            va = base + rng.randrange(0, 64) * sizes[0]
            va -= va % size
            pa = pa_next if size == sizes[0] else size * rng.randrange(1, 4)
            try:
                space.map(va, pa, size, _perm(rng, mode.facts.family)).ignore()
            except Exception:  # overlapping random picks: skip them
                continue
            if size == sizes[0]:
                pa_next += size
            probes += [va, va + size - 8, va + size]
        probes.append(base + 200 * sizes[0])
    if len(mode.halves) > 1:
        probes.append(mode.halves[0].va_end)  # between the halves: non-canonical
    _damage(space, rng)
    return Built(mode, mem, space, probes)


def _damage(space: AddressSpace, rng: random.Random) -> None:
    """Flip permission bits in pointer entries and A/AF bits in leaves, level by level."""
    seen: set[int] = set()
    for half in space.mode.halves:
        _damage_table(space, half.levels, 0, space.roots[half.root], rng, seen)


def _damage_table(
    space: AddressSpace,
    levels: tuple[Level, ...],
    li: int,
    table: int,
    rng: random.Random,
    seen: set[int],
) -> None:
    if table in seen:
        return
    seen.add(table)
    mode, mem, level = space.mode, space.mem, levels[li]
    for i in range(level.entries):
        pa = table + i * mode.entry_size
        raw = mem.read_entry(pa, mode.entry_size)
        entry = mode.decode(raw, level)
        if entry.kind is EntryKind.INVALID:
            continue
        is_table = entry.kind is EntryKind.TABLE
        pdpte = mode.name == "pae" and level.depth == 2
        if not pdpte:
            mem.write_entry(pa, mode.entry_size, _flip(mode, raw, rng, is_table))
        if is_table:
            _damage_table(space, levels, li + 1, entry.address, rng, seen)


def _flip(mode: PagingMode, raw: int, rng: random.Random, is_table: bool) -> int:
    arch = mode.facts.family
    p = rng.random
    if arch == "x86":
        if p() < 0.15:
            raw &= ~x86.RW
        if p() < 0.15:
            raw &= ~x86.US
        if getattr(mode, "nxe", False) and p() < 0.15:
            raw |= x86.XD
        if p() < 0.3:
            raw |= x86.A
        if not is_table and p() < 0.3:
            raw |= x86.D
        if mode.entry_size == 8 and p() < 0.03:
            raw |= 1 << 45  # above MAXPHYADDR=40: reserved
        return raw
    if arch == "arm":
        if is_table:
            for bit in (arm.AP_TABLE0, arm.AP_TABLE1, arm.UXN_TABLE, arm.PXN_TABLE):
                if p() < 0.12:
                    raw |= bit
            return raw
        if p() < 0.15:
            raw &= ~arm.AF
        if p() < 0.1:
            raw ^= arm.AP1
        if p() < 0.05 and raw & arm.TYPE:
            raw &= ~arm.TYPE  # a level-3 descriptor of type 0b01 is reserved
        return raw
    if not is_table and p() < 0.3:
        raw &= ~(rv.A | rv.D)
    if not is_table and p() < 0.05:
        raw = (raw & ~rv.R) | rv.W  # W without R is reserved
    return raw
