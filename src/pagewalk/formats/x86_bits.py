"""x86 paging as data: entry and register bits, the levels of each mode, reserved-bit masks, PAT.

The facts of Intel SDM vol. 3A: tables 4-4 to 4-20 (entry bits and reserved bits of every paging
mode, PSE-36 in a 4-MByte PDE), §4.3-4.5 (the levels of 32-bit, PAE, 4-level and 5-level
paging), table 4-8 (PAE PDPTE bits), §2.5 and §4.1 (CR0, CR4 and IA32_EFER bits), and §11.12
with tables 11-10 and 11-12 (the PAT memory types and IA32_PAT at reset).
:mod:`pagewalk.formats.x86` is the codec that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pagewalk.formats.base import GiB, Half, Level, MemType, MiB

# Entry bits (Intel SDM vol. 3A tables 4-14 to 4-20).
P = 1 << 0
RW = 1 << 1
US = 1 << 2
PWT = 1 << 3
PCD = 1 << 4
A = 1 << 5
D = 1 << 6
PS = 1 << 7
G = 1 << 8
PAT_PTE = 1 << 7
PAT_LARGE = 1 << 12
XD = 1 << 63

# Control-register bits.
CR0_WP = 1 << 16
CR0_PG = 1 << 31
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
CR4_PGE = 1 << 7
CR4_LA57 = 1 << 12
CR4_PCIDE = 1 << 17
CR4_SMEP = 1 << 20
CR4_SMAP = 1 << 21
CR4_PKE = 1 << 22
EFER_LME = 1 << 8
EFER_NXE = 1 << 11

#: IA32_PAT at reset (SDM vol. 3A table 11-12): WB WT UC- UC WB WT UC- UC.
PAT_RESET = 0x0007040600070406

# PAT memory-type encodings (SDM vol. 3A table 11-10).
_PAT_TYPES: dict[int, MemType] = {
    0x00: MemType.UNCACHED,
    0x01: MemType.WRITE_COMBINING,
    0x04: MemType.WRITE_THROUGH,
    0x05: MemType.WRITE_PROTECT,
    0x06: MemType.NORMAL,
    0x07: MemType.UNCACHED_MINUS,
}
_WANTED_PAT: dict[MemType, tuple[int, ...]] = {
    MemType.NORMAL: (0x06,),
    MemType.WRITE_THROUGH: (0x04,),
    MemType.WRITE_COMBINING: (0x01,),
    MemType.WRITE_PROTECT: (0x05,),
    MemType.UNCACHED_MINUS: (0x07,),
    MemType.UNCACHED: (0x00,),
    MemType.DEVICE: (0x00,),
    MemType.DEVICE_STRICT: (0x00,),
}

#: PAE PDPTE bits the SDM reserves (table 4-8) and QEMU's walker neither checks nor keeps clear
PDPTE_LENIENT = 0b1_1110_0110


def bits(hi: int, lo: int) -> int:
    """Mask of bits hi..lo inclusive."""
    return ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1) if hi >= lo else 0


def x86_halves(v: str, pse: bool, pdpe1gb: bool) -> tuple[Half, ...]:
    """The levels and halves of x86 paging variant ``v`` (SDM §4.3-4.5)."""
    if v == "x86":
        large = 4 * MiB if pse else 0
        levels: tuple[Level, ...] = (
            Level(1, 2, "PD", 22, 10, large),
            Level(0, 1, "PT", 12, 10, 4096),
        )
        return (Half(0, "CR3", levels, 0, 1 << 32, 4096),)
    if v == "pae":
        levels = (
            Level(2, 3, "PDPT", 30, 2, 0),
            Level(1, 2, "PD", 21, 9, 2 * MiB),
            Level(0, 1, "PT", 12, 9, 4096),
        )
        return (Half(0, "CR3", levels, 0, 1 << 32, 32),)
    top: tuple[Level, ...] = (Level(3, 4, "PML4", 39, 9, 0),)
    if v == "la57":
        top = (Level(4, 5, "PML5", 48, 9, 0), Level(3, 4, "PML4", 39, 9, 0))
    levels = (
        *top,
        Level(2, 3, "PDPT", 30, 9, GiB if pdpe1gb else 0),
        Level(1, 2, "PD", 21, 9, 2 * MiB),
        Level(0, 1, "PT", 12, 9, 4096),
    )
    va_bits = 57 if v == "la57" else 48
    half = 1 << (va_bits - 1)
    return (
        Half(0, "CR3", levels, 0, half, 4096),
        Half(0, "CR3", levels, (1 << 64) - half, 1 << 64, 4096),
    )


@dataclass(frozen=True)
class Masks:
    """Per depth (0 = leaf table): reserved bits of pointers and leaves, and address fields."""

    rsv_table: list[int]
    rsv_leaf: list[int]
    addr_table: int
    addr_leaf: list[int]


def x86_masks(v: str, m: int, nxe: bool, strict: bool, pdpe1gb: bool) -> Masks:
    """Per depth, the reserved and address bits of table entries and leaves of variant ``v``
    with ``m`` physical-address bits (SDM tables 4-4 to 4-20)."""
    depths = {"x86": 2, "pae": 3, "x86_64": 4, "la57": 5}[v]
    rsv_table, rsv_leaf, addr_leaf = [0] * depths, [0] * depths, [0] * depths
    if v == "x86":
        addr_leaf[0] = 0xFFFFF000
        # 4-MByte PDE: bit 21 reserved, and PSE-36 bits above MAXPHYADDR (SDM table 4-4).
        rsv_leaf[1] = bits(21, 13 + m - 32)
        addr_leaf[1] = 0xFFC00000
        return Masks(rsv_table, rsv_leaf, 0xFFFFF000, addr_leaf)
    above = bits(51, m)
    high = above | (0 if nxe else XD)
    if v == "pae":
        high = bits(62, m) | (0 if nxe else XD)
    addr_table = bits(m - 1, 12)
    for depth in range(depths):
        rsv_table[depth] = high
        rsv_leaf[depth] = high
    addr_leaf[0] = bits(m - 1, 12)
    addr_leaf[1] = bits(m - 1, 21)
    rsv_leaf[1] |= bits(20, 13)
    if v == "pae":
        # PDPTEs: bits 63:MAXPHYADDR reserved (no XD in a PDPTE); 2:1 and 8:5 only if strict.
        rsv_table[2] = bits(63, m) | (PDPTE_LENIENT if strict else 0)
    else:
        addr_leaf[2] = bits(m - 1, 30)
        rsv_leaf[2] |= bits(29, 13)
        # PS is reserved where no page may stand: PML4E/PML5E, and PDPTE without Page1GB.
        for depth in range(3 if pdpe1gb else 2, depths):
            rsv_table[depth] |= PS
    return Masks(rsv_table, rsv_leaf, addr_table, addr_leaf)
