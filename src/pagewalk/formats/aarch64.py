"""The AArch64 stage-1 EL1&0 translation format (VMSAv8-64), for 4K, 16K and 64K granules.

Facts follow the Arm ARM (DDI 0487), chapter D8 "The AArch64 Virtual Memory System Architecture":
TCR_EL1 fields T0SZ/T1SZ, TG0/TG1, EPD0/EPD1, IPS, TBI0/TBI1, HA/HD and HPD0/HPD1; the TTBR0/TTBR1
split by VA bit 55 and the top bits; the start level from the granule and TnSZ (D8.2); table,
block and page descriptors (D8.3), with the block sizes each granule allows without FEAT_LPA/LPA2
(4K: 1 GiB at L1 and 2 MiB at L2; 16K: 32 MiB at L2; 64K: 512 MiB at L2); a block at a level that
cannot hold one, and a level-3 descriptor of type 0b01, give a Translation fault (D8.3.1);
APTable/UXNTable/PXNTable (D8.4.2), AP[2:1], UXN/PXN, AF, SH, AttrIndx resolved through MAIR_EL1,
nG, DBM and the Contiguous hint (D8.4-D8.6). Output addresses above the IPS size give an Address
size fault. 52-bit addresses (FEAT_LPA, FEAT_LPA2) are not modelled.
"""

from __future__ import annotations

import numpy as np

from pagewalk.errors import ConfigError, EntryFormatError, hx
from pagewalk.formats.base import (
    ALL_PERMS,
    Acc,
    ArchFacts,
    BoolArray,
    Entry,
    EntryKind,
    Field,
    Half,
    LeafState,
    Level,
    MemType,
    PagingMode,
    Perm,
    Rights,
    U64Array,
)

VALID = 1 << 0
TYPE = 1 << 1  # 1: table (levels 0-2) or page (level 3); 0: block
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

_TG0 = {0b00: 12, 0b01: 16, 0b10: 14}
_TG1 = {0b10: 12, 0b11: 16, 0b01: 14}
_IPS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52}

#: 4K granules, T0SZ=T1SZ=16 (48-bit VAs), IPS=48 bits.
TCR_DEFAULT = 16 | (16 << 16) | (0b10 << 30) | (5 << 32)
#: AttrIndx 0 Normal WB, 1 Device-nGnRE, 2 Device-nGnRnE, 3 Normal NC, 4 Normal WT.
MAIR_DEFAULT = 0xFF | (0x04 << 8) | (0x00 << 16) | (0x44 << 24) | (0xBB << 32)

_WANTED_MAIR: dict[MemType, tuple[int, ...]] = {
    MemType.NORMAL: (0xFF, 0xEE, 0xDD, 0xCC),
    MemType.WRITE_THROUGH: (0xBB, 0xAA, 0x88, 0x99),
    MemType.WRITE_COMBINING: (0x44,),
    MemType.UNCACHED: (0x00,),
    MemType.UNCACHED_MINUS: (0x44,),
    MemType.DEVICE: (0x04,),
    MemType.DEVICE_STRICT: (0x00,),
}

#: the levels where a block may stand, per granule shift (without FEAT_LPA/LPA2)
_BLOCK_LEVELS = {12: (1, 2), 14: (2,), 16: (2,)}


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


class AArch64Mode(PagingMode):
    """VMSAv8-64 stage 1 for EL1&0, configured by TCR_EL1 and MAIR_EL1.

    Args:
        tcr: TCR_EL1 (granules, region sizes, IPS, TBI, HA/HD, HPD, EPD).
        mair: MAIR_EL1 (the memory type of each AttrIndx).
    """

    name = "aarch64"
    entry_size = 8
    root_names = ("TTBR0_EL1", "TTBR1_EL1")
    not_present_kind = "translation"
    non_canonical_kind = "translation"
    non_canonical_level = 0

    def arch_facts(self) -> ArchFacts:
        return ArchFacts("arm", half_select_bit=55, kernel_root=1, needs_bbm=True)

    def __init__(self, tcr: int = TCR_DEFAULT, mair: int = MAIR_DEFAULT) -> None:
        self.tcr = tcr
        self.mair = mair
        ips = (tcr >> 32) & 7
        if ips not in _IPS:
            raise ConfigError(f"TCR_EL1.IPS={ips} is reserved")
        self.pa_bits = min(_IPS[ips], 48)
        self.root_bits = self.pa_bits  # TTBRn_EL1.BADDR
        self.ha = bool(tcr & TCR_HA)
        self.hd = bool(tcr & TCR_HD) and self.ha
        self.tbi = (bool(tcr & TCR_TBI0), bool(tcr & TCR_TBI1))
        self.hpd = (bool(tcr & TCR_HPD0), bool(tcr & TCR_HPD1))
        self.epd = (bool(tcr & TCR_EPD0), bool(tcr & TCR_EPD1))
        tg0, tg1 = (tcr >> 14) & 3, (tcr >> 30) & 3
        if tg0 not in _TG0:
            raise ConfigError(f"TCR_EL1.TG0={tg0:#b} is reserved")
        if tg1 not in _TG1:
            raise ConfigError(f"TCR_EL1.TG1={tg1:#b} is reserved")
        self.granule_shift = (_TG0[tg0], _TG1[tg1])
        self.tsz = (tcr & 0x3F, (tcr >> 16) & 0x3F)
        self.page_size = 1 << min(self.granule_shift)
        self._halves = (self._half(0), self._half(1))
        self._granule_by_level = {
            lv: half.levels[-1].shift for half in self._halves for lv in half.levels
        }

    def _half(self, which: int) -> Half:
        g = self.granule_shift[which]
        tsz = self.tsz[which]
        if not 16 <= tsz <= 39:
            raise ConfigError(f"TCR_EL1.T{which}SZ={tsz} is outside 16..39 (no FEAT_LVA/TTST)")
        va_bits = 64 - tsz
        stride = g - 3
        n_levels = -(-(va_bits - g) // stride)
        start = 4 - n_levels
        levels: list[Level] = []
        for number in range(start, 4):
            shift = g + (3 - number) * stride
            bits = stride if number != start else va_bits - shift
            leaf = 1 << shift if number == 3 or number in _BLOCK_LEVELS[g] else 0
            levels.append(Level(3 - number, number, f"L{number}", shift, bits, leaf))
        root_bytes = 8 << levels[0].bits
        span = 1 << va_bits
        start_va, end_va = (0, span) if which == 0 else ((1 << 64) - span, 1 << 64)
        return Half(which, f"TTBR{which}_EL1", tuple(levels), start_va, end_va, max(root_bytes, 64))

    @property
    def halves(self) -> tuple[Half, ...]:
        return self._halves

    def half_for(self, va: int) -> Half | None:
        upper = (va >> 55) & 1
        if self.tbi[upper]:
            va = (va & ((1 << 56) - 1)) | ((0xFF << 56) if upper else 0)
        half = self._halves[upper]
        return half if half.contains(va) else None

    def canonical(self, va: int) -> int:
        return va

    def root_fault(self, root_pa: int, half: Half) -> tuple[str, str] | None:
        if self.epd[half.root]:
            return "translation", f"TCR_EL1.EPD{half.root}=1 disables walks from {half.name}"
        if root_pa >> self.pa_bits:
            return "address-size", f"{half.name} base {hx(root_pa)} exceeds IPS {self.pa_bits} bits"
        return None

    def root_from_register(self, value: int, half: int = 0) -> int:
        align = self._halves[half].table_align
        return value & ((1 << 48) - 1) & ~(align - 1)

    # ----------------------------------------------------------------------- decode
    def decode(self, raw: int, level: Level) -> Entry:
        if not raw & VALID:
            return Entry(EntryKind.INVALID, raw, fault="translation", reason="bit 0 (valid) is 0")
        number = level.number
        table_like = bool(raw & TYPE)
        if number == 3:
            if not table_like:
                return Entry(
                    EntryKind.INVALID,
                    raw,
                    fault="translation",
                    reason="a level-3 descriptor of type 0b01 is reserved",
                )
            return self._leaf(raw, level)
        if not table_like:
            if not level.leaf_size:
                return Entry(
                    EntryKind.INVALID,
                    raw,
                    fault="translation",
                    reason=f"a block descriptor is not allowed at level {number} with this granule",
                )
            return self._leaf(raw, level)
        granule = self._granule_of(level)
        address = raw & ((1 << 48) - 1) & ~((1 << granule) - 1)
        perm = ALL_PERMS
        if raw & AP_TABLE0:
            perm &= ~Perm.USER
        if raw & AP_TABLE1:
            perm &= ~Perm.WRITE
        if address >> self.pa_bits:
            return Entry(
                EntryKind.TABLE,
                raw,
                address,
                0,
                perm,
                None,
                "address-size",
                f"next-level table address {hx(address)} exceeds IPS {self.pa_bits} bits",
            )
        return Entry(EntryKind.TABLE, raw, address, 0, perm)

    def _granule_of(self, level: Level) -> int:
        return self._granule_by_level.get(level, self.granule_shift[0])

    def _leaf(self, raw: int, level: Level) -> Entry:
        size = level.leaf_size
        address = raw & ((1 << 48) - 1) & ~(size - 1)
        perm = Perm.READ
        if not raw & AP2:
            perm |= Perm.WRITE
        if raw & AP1:
            perm |= Perm.USER
            if not raw & UXN:
                perm |= Perm.EXEC
        elif not raw & PXN:
            perm |= Perm.EXEC
        if not raw & NG:
            perm |= Perm.GLOBAL
        memtype = mair_type((self.mair >> (8 * ((raw >> 2) & 7))) & 0xFF)
        if address >> self.pa_bits:
            reason = f"output address {hx(address)} exceeds IPS {self.pa_bits} bits"
            return Entry(EntryKind.LEAF, raw, address, size, perm, memtype, "address-size", reason)
        if not raw & AF and not self.ha:
            reason = "AF (bit 10) is 0 and TCR_EL1.HA is off"
            return Entry(EntryKind.LEAF, raw, address, size, perm, memtype, "access-flag", reason)
        return Entry(EntryKind.LEAF, raw, address, size, perm, memtype)

    # ------------------------------------------ permissions (Arm ARM D8.4, D8.5)
    def fold_table(self, half: Half, level: Level, raw: int, acc: Acc) -> Acc:
        if self.hpd[half.root]:  # TCR_EL1.HPDn: hierarchical permissions disabled
            return acc
        return (
            acc[0] or bool(raw & AP_TABLE0),
            acc[1] or bool(raw & AP_TABLE1),
            acc[2] or bool(raw & UXN_TABLE),
            acc[3] or bool(raw & PXN_TABLE),
        )

    def leaf_state(self, raw: int, acc: Acc, pge: bool = True) -> LeafState:
        user = bool(raw & AP1) and not acc[0]
        writable = not raw & AP2 and not acc[1]
        xn_user = bool(raw & UXN) or acc[2]
        xn_priv = bool(raw & PXN) or acc[3] or (user and writable)
        dbm = bool(self.hd and raw & DBM and raw & AP2) and not acc[1]
        rights = Rights(True, writable, user, xn_user, xn_priv)
        return LeafState(rights, not raw & NG, bool(raw & AF), not raw & AP2, dbm)

    def table_perm(self, acc: Acc) -> Perm:
        perm = Perm.READ | (Perm.NONE if acc[0] else Perm.USER)
        perm |= Perm.NONE if acc[1] else Perm.WRITE
        return perm | (Perm.NONE if acc[2] and acc[3] else Perm.EXEC)

    def mark_leaf(self, raw: int, write: bool, dbm: bool, svadu: bool) -> int:
        new = raw | (AF if self.ha else 0)
        return new & ~AP2 if write and dbm else new

    def fields(self, raw: int, level: Level) -> list[Field]:
        out = [Field("valid", raw & 1), Field("type", raw >> 1 & 1)]
        entry = self.decode(raw, level)
        if entry.kind is EntryKind.TABLE:
            out += [
                Field("NSTable", raw >> 63 & 1),
                Field("APTable", raw >> 61 & 3, 2),
                Field("UXNTable", raw >> 60 & 1),
                Field("PXNTable", raw >> 59 & 1),
            ]
        elif entry.kind is EntryKind.LEAF:
            out += [
                Field("AttrIndx", raw >> 2 & 7, 3),
                Field("NS", raw >> 5 & 1),
                Field("AP", raw >> 6 & 3, 2),
                Field("SH", raw >> 8 & 3, 2),
                Field("AF", raw >> 10 & 1),
                Field("nG", raw >> 11 & 1),
                Field("DBM", raw >> 51 & 1),
                Field("Contiguous", raw >> 52 & 1),
                Field("PXN", raw >> 53 & 1),
                Field("UXN", raw >> 54 & 1),
            ]
        out.append(Field("addr", entry.address, 64))
        return out

    # ----------------------------------------------------------------------- encode
    def encode_table(self, table_pa: int, level: Level, perm: Perm) -> int:
        self._check_pa(table_pa, 1 << self._granule_of(level), level)
        return table_pa | VALID | TYPE

    def widen_table(self, raw: int, level: Level, perm: Perm) -> int:
        if perm & Perm.USER:
            raw &= ~AP_TABLE0
        if perm & Perm.WRITE:
            raw &= ~AP_TABLE1
        if perm & Perm.EXEC:
            raw &= ~(UXN_TABLE if perm & Perm.USER else PXN_TABLE)
        return raw

    def encode_leaf(
        self, pa: int, level: Level, perm: Perm, memtype: MemType = MemType.NORMAL
    ) -> int:
        if not level.leaf_size:
            raise EntryFormatError(
                f"a block is not allowed at L{level.number} with this granule (no FEAT_LPA)"
            )
        self._check_pa(pa, level.leaf_size, level)
        raw = pa | VALID | AF | (TYPE if level.number == 3 else 0)
        raw |= self._attr_index(memtype) << 2
        if memtype in (MemType.NORMAL, MemType.WRITE_THROUGH):
            raw |= 0b11 << 8  # inner shareable, as kernels map normal memory
        if perm & Perm.USER:
            raw |= AP1
        if not perm & Perm.WRITE:
            raw |= AP2
        if not perm & Perm.GLOBAL:
            raw |= NG
        if perm & Perm.USER:
            raw |= PXN | (0 if perm & Perm.EXEC else UXN)
        else:
            raw |= UXN | (0 if perm & Perm.EXEC else PXN)
        return raw

    def resize_leaf(self, raw: int, level: Level, new_level: Level, new_pa: int) -> int:
        if not new_level.leaf_size:
            raise EntryFormatError(f"a block is not allowed at L{new_level.number}")
        self._check_pa(new_pa, new_level.leaf_size, new_level)
        attrs = raw & ~(((1 << 48) - 1) & ~0xFFF) & ~(TYPE | CONTIG)
        return attrs | new_pa | (TYPE if new_level.number == 3 else 0)

    def perm_mask(self, level: Level) -> int:
        return AP1 | AP2 | NG | UXN | PXN

    def memtype_mask(self, level: Level) -> int:
        return (7 << 2) | (3 << 8)

    def np_is_leaf(self, raws: U64Array, level: Level) -> BoolArray:
        if level.number == 3:
            return np.ones(raws.shape, dtype=np.bool_)
        if not level.leaf_size:  # a block where none may stand is invalid, not a leaf (D8.3)
            return np.zeros(raws.shape, dtype=np.bool_)
        return np.asarray((raws & np.uint64(TYPE)) == 0, dtype=np.bool_)

    def address_mask(self, level: Level, leaf: bool) -> int:
        # Bits 47:IPS are address bits too, but setting them is an Address size fault.
        low = level.leaf_size if leaf else 1 << self._granule_of(level)
        return ((1 << self.pa_bits) - 1) & ~(low - 1)

    def np_address(self, raws: U64Array, level: Level, leaf: bool) -> U64Array:
        low = level.leaf_size if leaf else 1 << self._granule_of(level)
        return raws & np.uint64(((1 << 48) - 1) & ~(low - 1))

    def _attr_index(self, memtype: MemType) -> int:
        wanted = _WANTED_MAIR[memtype]
        for index in range(8):
            if (self.mair >> (8 * index)) & 0xFF in wanted:
                return index
        raise EntryFormatError(
            f"no MAIR_EL1 attribute gives memory type {memtype.value} (MAIR={hx(self.mair)})"
        )

    def registers(self) -> dict[str, int]:
        return {"tcr": self.tcr, "mair": self.mair}
