"""AArch64 stage-1 controls: the TCR_EL1/MAIR_EL1 fields, the levels a granule makes, and where
a descriptor keeps its address bits, including 52-bit addresses (FEAT_LPA, FEAT_LVA, FEAT_LPA2).

Facts follow the Arm ARM (DDI 0487) D8.1-D8.3 ("Input address size", "Translation table
descriptor formats", "52-bit addressing") and the TCR_EL1/TTBRn_EL1/MAIR_EL1 register pages:

- TCR_EL1.IPS=0b110 asks for 52-bit output addresses. With the 64K granule that is FEAT_LPA:
  a descriptor holds OA[51:48] (and a table descriptor the next table's PA[51:48]) in bits
  [15:12], and a level-1 block (4 TiB) is allowed. With 4K/16K it takes TCR_EL1.DS=1
  (FEAT_LPA2); with DS=0 the output size stays 48 bits (the pseudocode's ``AArch64.PAMax`` cap).
  The 64K rules follow IPS, as on a CPU whose PAMax is the IPS size: QEMU's ``-cpu max``
  (PAMax 52) also takes a level-1 block with a smaller IPS, and ignores bits [15:12] then.
- TCR_EL1.DS (bit 59) with the 4K or 16K granule (it is ignored with 64K): descriptors hold
  address bits [49:n] in place and OA[51:50] in bits [9:8], which are then no longer SH (the
  shareability comes from TCR_EL1.SH0/SH1); TnSZ may go down to 12 (52-bit VAs), which with 4K
  adds level -1 above level 0 (for TnSZ < 16); blocks are allowed at level 0 (512 GiB) with 4K
  and at level 1 (64 GiB) with 16K. With DS=1 and an output size below 52 bits, set bits [9:8]
  are address bits above the size: an Address size fault (QEMU 7.2 ignores them instead).
- The 64K granule takes TnSZ down to 12 as well (FEAT_LVA, 52-bit VAs, a bigger level-1 table).
- With a 52-bit output size, TTBRn_EL1 bits [5:2] hold BADDR[51:48], and the root table is
  aligned to at least 64 bytes.

This module is plain data and arithmetic; :mod:`pagewalk.formats.aarch64` is the codec.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pagewalk.errors import ConfigError
from pagewalk.formats.base import Half, Level, MemType, U64Array

VALID = 1 << 0
TYPE = 1 << 1  # 1: table (levels -1..2) or page (level 3); 0: block
NS = 1 << 5
AP1 = 1 << 6  # EL0 access
AP2 = 1 << 7  # read-only
AF = 1 << 10
NG = 1 << 11
DBM = 1 << 51
CONTIG = 1 << 52
PXN = 1 << 53
UXN = 1 << 54
PXN_TABLE = 1 << 59
UXN_TABLE = 1 << 60
AP_TABLE0 = 1 << 61  # no EL0 access below
AP_TABLE1 = 1 << 62  # no write access below
NS_TABLE = 1 << 63

# TCR_EL1 fields.
TCR_EPD0 = 1 << 7
TCR_EPD1 = 1 << 23
TCR_A1 = 1 << 22
TCR_TBI0 = 1 << 37
TCR_TBI1 = 1 << 38
TCR_HA = 1 << 39
TCR_HD = 1 << 40
TCR_HPD0 = 1 << 41
TCR_HPD1 = 1 << 42
TCR_DS = 1 << 59
#: TCR_EL1.IPS=0b110: 52-bit output addresses
IPS_52 = 6 << 32

_TG0 = {0b00: 12, 0b01: 16, 0b10: 14}
_TG1 = {0b10: 12, 0b11: 16, 0b01: 14}
_IPS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52}
_M48 = (1 << 48) - 1
_M50 = (1 << 50) - 1

#: 4K granules, T0SZ=T1SZ=16 (48-bit VAs), IPS=48 bits.
TCR_DEFAULT = 16 | (16 << 16) | (0b10 << 30) | (5 << 32)
#: AttrIndx 0 Normal WB, 1 Device-nGnRE, 2 Device-nGnRnE, 3 Normal NC, 4 Normal WT.
MAIR_DEFAULT = 0xFF | (0x04 << 8) | (0x00 << 16) | (0x44 << 24) | (0xBB << 32)

WANTED_MAIR: dict[MemType, tuple[int, ...]] = {
    MemType.NORMAL: (0xFF, 0xEE, 0xDD, 0xCC),
    MemType.WRITE_THROUGH: (0xBB, 0xAA, 0x88, 0x99),
    MemType.WRITE_COMBINING: (0x44,),
    MemType.UNCACHED: (0x00,),
    MemType.UNCACHED_MINUS: (0x44,),
    MemType.DEVICE: (0x04,),
    MemType.DEVICE_STRICT: (0x00,),
}


def mair_type(attr: int) -> MemType | str:
    """Decode one MAIR_EL1 attribute byte (Arm ARM D8.6, MAIR_ELx.Attr<n>)."""
    hi, lo = attr >> 4, attr & 0xF
    if hi == 0:
        names = {0: "nGnRnE", 4: "nGnRE", 8: "nGRE", 12: "GRE"}
        kind = names.get(lo)
        if kind == "nGnRnE":
            return MemType.DEVICE_STRICT
        if kind == "nGnRE":
            return MemType.DEVICE
        return f"device-{kind}" if kind else f"unpredictable-{attr:#04x}"

    def cache(nibble: int) -> str:
        if nibble == 0b0100:
            return "nc"
        if nibble >> 2 in (0b00, 0b10):
            return "wt"
        return "wb"

    if lo == 0:
        # Inner 0b0000 with a Normal outer is UNPREDICTABLE without FEAT_XS/FEAT_MTE2.
        return f"unpredictable-{attr:#04x}"
    outer, inner = cache(hi), cache(lo)
    if outer == inner:
        return {"nc": MemType.WRITE_COMBINING, "wt": MemType.WRITE_THROUGH}.get(
            outer, MemType.NORMAL
        )
    return f"normal-o{outer}-i{inner}"


@dataclass(frozen=True)
class Granule:
    """One translation granule as TCR_EL1 configures it (both halves may differ).

    Attributes:
        shift: log2 of the granule (12, 14, 16).
        pa_bits: the effective output address size.
        oa: where descriptors hold the address: ``"48"`` (bits [47:n]), ``"lpa"`` (64K with a
            52-bit size: OA[51:48] in bits [15:12]) or ``"ds"`` (DS=1: bits [49:n] and
            OA[51:50] in bits [9:8]).
        blocks: the levels where a block may stand.
        min_tsz: the smallest TnSZ (12 for 52-bit VAs, else 16).
    """

    shift: int
    pa_bits: int
    oa: str
    blocks: tuple[int, ...]
    min_tsz: int

    @classmethod
    def of(cls, shift: int, ips_bits: int, ds: bool) -> Granule:
        """The granule ``shift`` under IPS ``ips_bits`` and TCR_EL1.DS ``ds``."""
        if shift == 16:
            pa = ips_bits
            return cls(16, pa, "lpa" if pa == 52 else "48", (1, 2) if pa == 52 else (2,), 12)
        if ds:
            blocks = (0, 1, 2) if shift == 12 else (1, 2)
            return cls(shift, ips_bits, "ds", blocks, 12)
        return cls(shift, min(ips_bits, 48), "48", (1, 2) if shift == 12 else (2,), 16)

    @property
    def sh_is_address(self) -> bool:
        """Whether descriptor bits [9:8] are address bits (not SH)."""
        return self.oa == "ds"

    def all_bits(self, low: int) -> int:
        """Every raw bit that holds an address bit at or above ``low``."""
        if self.oa == "ds":
            return (_M50 & ~(low - 1)) | (3 << 8)
        if self.oa == "lpa":
            return (_M48 & ~(low - 1)) | (0xF << 12)
        return _M48 & ~(low - 1)

    def valid_bits(self, low: int) -> int:
        """The raw bits that hold an address within the output size (the rest fault)."""
        if self.pa_bits == 52:
            return self.all_bits(low)
        return ((1 << self.pa_bits) - 1) & ~(low - 1)

    def extract(self, raw: int, low: int) -> int:
        """The address (aligned to ``low``) that descriptor ``raw`` holds."""
        if self.oa == "ds":
            return (raw & _M50 & ~(low - 1)) | ((raw >> 8) & 3) << 50
        if self.oa == "lpa":
            return (raw & _M48 & ~(low - 1)) | ((raw >> 12) & 0xF) << 48
        return raw & _M48 & ~(low - 1)

    def np_extract(self, raws: U64Array, low: int) -> U64Array:
        """:meth:`extract`, vectorised."""
        if self.oa == "ds":
            hi = ((raws >> np.uint64(8)) & np.uint64(3)) << np.uint64(50)
            return (raws & np.uint64(_M50 & ~(low - 1))) | hi
        if self.oa == "lpa":
            hi = ((raws >> np.uint64(12)) & np.uint64(0xF)) << np.uint64(48)
            return (raws & np.uint64(_M48 & ~(low - 1))) | hi
        return raws & np.uint64(_M48 & ~(low - 1))

    def place(self, pa: int) -> int:
        """``pa`` (aligned, within the size) in the descriptor's address bits."""
        if self.oa == "ds":
            return (pa & _M50) | ((pa >> 50) & 3) << 8
        if self.oa == "lpa":
            return (pa & _M48) | ((pa >> 48) & 0xF) << 12
        return pa


def parse_tcr(tcr: int) -> tuple[tuple[Granule, Granule], tuple[int, int]]:
    """The granule of each half and each half's TnSZ, checked, from TCR_EL1.

    Raises:
        ConfigError: a reserved IPS or TGn value, or a TnSZ outside the range.
    """
    ips = (tcr >> 32) & 7
    if ips not in _IPS:
        raise ConfigError(f"TCR_EL1.IPS={ips} is reserved")
    tg0, tg1 = (tcr >> 14) & 3, (tcr >> 30) & 3
    if tg0 not in _TG0:
        raise ConfigError(f"TCR_EL1.TG0={tg0:#b} is reserved")
    if tg1 not in _TG1:
        raise ConfigError(f"TCR_EL1.TG1={tg1:#b} is reserved")
    ds = bool(tcr & TCR_DS)
    grans = (Granule.of(_TG0[tg0], _IPS[ips], ds), Granule.of(_TG1[tg1], _IPS[ips], ds))
    tsz = (tcr & 0x3F, (tcr >> 16) & 0x3F)
    for which in (0, 1):
        low = grans[which].min_tsz
        if not low <= tsz[which] <= 39:
            why = "no FEAT_LVA/TTST" if low == 16 else "no FEAT_TTST"
            raise ConfigError(f"TCR_EL1.T{which}SZ={tsz[which]} is outside {low}..39 ({why})")
    return grans, tsz


def make_half(which: int, gran: Granule, tsz: int) -> Half:
    """The half served by TTBR``which``_EL1: its levels from the start level down to level 3
    (D8.2: the start level follows from the granule and TnSZ; -1 only with 4K and TnSZ < 16)."""
    g = gran.shift
    va_bits = 64 - tsz
    stride = g - 3
    n_levels = -(-(va_bits - g) // stride)
    start = 4 - n_levels
    levels: list[Level] = []
    for number in range(start, 4):
        shift = g + (3 - number) * stride
        bits = stride if number != start else va_bits - shift
        leaf = 1 << shift if number == 3 or number in gran.blocks else 0
        levels.append(Level(3 - number, number, f"L{number}", shift, bits, leaf))
    root_bytes = 8 << levels[0].bits
    span = 1 << va_bits
    start_va, end_va = (0, span) if which == 0 else ((1 << 64) - span, 1 << 64)
    return Half(which, f"TTBR{which}_EL1", tuple(levels), start_va, end_va, max(root_bytes, 64))


def ttbr_base(value: int, gran: Granule, align: int) -> int:
    """The root table's PA from TTBRn_EL1: BADDR[47:1], and BADDR[51:48] from bits [5:2] when
    the output size is 52 bits (D19 TTBRn_EL1); the ASID (bits [63:48]) and CnP are dropped."""
    base = value & _M48 & ~(align - 1)
    if gran.pa_bits == 52:
        base |= ((value >> 2) & 0xF) << 48
    return base


def ttbr_value(root_pa: int, asid: int = 0) -> int:
    """The TTBRn_EL1 value whose base is ``root_pa`` (inverse of :func:`ttbr_base` for a
    52-bit output size; for smaller sizes PA[51:48] are 0 and the same value serves)."""
    return (root_pa & _M48) | ((root_pa >> 48) & 0xF) << 2 | (asid & 0xFFFF) << 48
