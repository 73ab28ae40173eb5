"""The AArch64 stage-1 EL1&0 translation format (VMSAv8-64): the descriptor codec and the
permission model, for 4K, 16K and 64K granules, with 52-bit addresses (FEAT_LPA, FEAT_LVA,
FEAT_LPA2).

Facts follow the Arm ARM (DDI 0487), chapter D8 "The AArch64 Virtual Memory System Architecture":
the TTBR0/TTBR1 split by VA bit 55 and the top bits; the start level from the granule and TnSZ
(D8.2, level -1 with FEAT_LPA2); table, block and page descriptors (D8.3), with the block levels
each granule allows (4K: L1, L2, and L0 with TCR_EL1.DS=1; 16K: L2, and L1 with DS=1; 64K: L2,
and L1 with a 52-bit output size); a block at a level that cannot hold one, and a level-3
descriptor of type 0b01, give a Translation fault (D8.3.1); APTable/UXNTable/PXNTable (D8.4.2),
AP[2:1], UXN/PXN, AF, SH (bits [9:8] unless DS=1, when they are OA[51:50]), AttrIndx resolved
through MAIR_EL1, nG, DBM and the Contiguous hint (D8.4-D8.6). Output and next-level table
addresses above the output size give an Address size fault. The TCR_EL1 fields, the levels and
where the address bits sit are in :mod:`pagewalk.formats.aarch64_regs`.
"""

from __future__ import annotations

import numpy as np

from pagewalk.errors import EntryFormatError, hx
from pagewalk.formats.aarch64_regs import (
    AF,
    AP1,
    AP2,
    AP_TABLE0,
    AP_TABLE1,
    CONTIG,
    DBM,
    IPS_52,
    MAIR_DEFAULT,
    NG,
    NS,
    NS_TABLE,
    PXN,
    PXN_TABLE,
    TCR_A1,
    TCR_DEFAULT,
    TCR_DS,
    TCR_EPD0,
    TCR_EPD1,
    TCR_HA,
    TCR_HD,
    TCR_HPD0,
    TCR_HPD1,
    TCR_TBI0,
    TCR_TBI1,
    TYPE,
    UXN,
    UXN_TABLE,
    VALID,
    WANTED_MAIR,
    Granule,
    mair_type,
    make_half,
    parse_tcr,
    ttbr_base,
    ttbr_value,
)
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
from pagewalk.formats.model import np_leaf_by_bit


class AArch64Mode(PagingMode):
    """VMSAv8-64 stage 1 for EL1&0, configured by TCR_EL1 and MAIR_EL1.

    Args:
        tcr: TCR_EL1 (granules, region sizes, IPS, DS, TBI, HA/HD, HPD, EPD).
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
        self.granules, self.tsz = parse_tcr(tcr)
        self.pa_bits = max(g.pa_bits for g in self.granules)
        self.root_bits = self.pa_bits  # TTBRn_EL1.BADDR
        self.ha = bool(tcr & TCR_HA)
        self.hd = bool(tcr & TCR_HD) and self.ha
        self.tbi = (bool(tcr & TCR_TBI0), bool(tcr & TCR_TBI1))
        self.hpd = (bool(tcr & TCR_HPD0), bool(tcr & TCR_HPD1))
        self.epd = (bool(tcr & TCR_EPD0), bool(tcr & TCR_EPD1))
        self.granule_shift = (self.granules[0].shift, self.granules[1].shift)
        self.page_size = 1 << min(self.granule_shift)
        self._halves = (
            make_half(0, self.granules[0], self.tsz[0]),
            make_half(1, self.granules[1], self.tsz[1]),
        )
        self._gran = {lv: self.granules[h.root] for h in self._halves for lv in h.levels}

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
        bits = self.granules[half.root].pa_bits
        if root_pa >> bits:
            return "address-size", f"{half.name} base {hx(root_pa)} exceeds IPS {bits} bits"
        return None

    def root_from_register(self, value: int, half: int = 0) -> int:
        return ttbr_base(value, self.granules[half], self._halves[half].table_align)

    def ttbr(self, root_pa: int, asid: int = 0) -> int:
        """The TTBRn_EL1 value for a root table at ``root_pa`` (BADDR[51:48] in bits [5:2])."""
        return ttbr_value(root_pa, asid)

    # ----------------------------------------------------------------------- decode
    def _granule(self, level: Level) -> Granule:
        return self._gran.get(level, self.granules[0])

    def decode(self, raw: int, level: Level) -> Entry:
        if not raw & VALID:
            return Entry(EntryKind.INVALID, raw, fault="translation", reason="bit 0 (valid) is 0")
        number = level.number
        table_like = bool(raw & TYPE)
        if number == 3 or not table_like:
            if number == 3 and not table_like:
                reason = "a level-3 descriptor of type 0b01 is reserved"
            elif not level.leaf_size:
                reason = f"a block descriptor is not allowed at level {number} with this granule"
            else:
                return self._leaf(raw, level)
            return Entry(EntryKind.INVALID, raw, fault="translation", reason=reason)
        gran = self._granule(level)
        address = gran.extract(raw, 1 << gran.shift)
        perm = ALL_PERMS
        if raw & AP_TABLE0:
            perm &= ~Perm.USER
        if raw & AP_TABLE1:
            perm &= ~Perm.WRITE
        if address >> gran.pa_bits:
            reason = f"next-level table address {hx(address)} exceeds IPS {gran.pa_bits} bits"
            return Entry(EntryKind.TABLE, raw, address, 0, perm, None, "address-size", reason)
        return Entry(EntryKind.TABLE, raw, address, 0, perm)

    def _leaf(self, raw: int, level: Level) -> Entry:
        size = level.leaf_size
        gran = self._granule(level)
        address = gran.extract(raw, size)
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
        if address >> gran.pa_bits:
            reason = f"output address {hx(address)} exceeds IPS {gran.pa_bits} bits"
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
        ds = self._granule(level).sh_is_address
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
                Field("OA[51:50]" if ds else "SH", raw >> 8 & 3, 2),
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
        gran = self._granule(level)
        self._check_pa(table_pa, 1 << gran.shift, level, gran.pa_bits)
        return gran.place(table_pa) | VALID | TYPE

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
            raise EntryFormatError(f"a block is not allowed at L{level.number} with this granule")
        gran = self._granule(level)
        self._check_pa(pa, level.leaf_size, level, gran.pa_bits)
        raw = gran.place(pa) | VALID | AF | (TYPE if level.number == 3 else 0)
        raw |= self._attr_index(memtype) << 2
        if memtype in (MemType.NORMAL, MemType.WRITE_THROUGH) and not gran.sh_is_address:
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
        gran = self._granule(new_level)
        self._check_pa(new_pa, new_level.leaf_size, new_level, gran.pa_bits)
        attrs = raw & ~gran.all_bits(1 << gran.shift) & ~(TYPE | CONTIG)
        return attrs | gran.place(new_pa) | (TYPE if new_level.number == 3 else 0)

    def perm_mask(self, level: Level) -> int:
        return AP1 | AP2 | NG | UXN | PXN

    def memtype_mask(self, level: Level) -> int:
        return (7 << 2) | (0 if self._granule(level).sh_is_address else 3 << 8)

    def np_is_leaf(self, raws: U64Array, level: Level) -> BoolArray:
        return np_leaf_by_bit(raws, level, TYPE, leaf_if_set=False)

    def address_mask(self, level: Level, leaf: bool) -> int:
        # Bits above the output size are address bits too, but setting them is an Address
        # size fault, so they stay in the shape.
        gran = self._granule(level)
        low = level.leaf_size if leaf else 1 << gran.shift
        return gran.valid_bits(low) if low else 0

    def np_address(self, raws: U64Array, level: Level, leaf: bool) -> U64Array:
        gran = self._granule(level)
        low = level.leaf_size if leaf else 1 << gran.shift
        if not low:
            return np.zeros(raws.shape, np.uint64)
        return gran.np_extract(raws, low)

    def _attr_index(self, memtype: MemType) -> int:
        wanted = WANTED_MAIR[memtype]
        for index in range(8):
            if (self.mair >> (8 * index)) & 0xFF in wanted:
                return index
        raise EntryFormatError(
            f"no MAIR_EL1 attribute gives memory type {memtype.value} (MAIR={hx(self.mair)})"
        )

    def registers(self) -> dict[str, int]:
        return {"tcr": self.tcr, "mair": self.mair}

    def describe(self) -> str:
        """The registers, and the 52-bit features they turn on (FEAT_LPA, FEAT_LVA, FEAT_LPA2)."""
        text = super().describe()
        feats = []
        if any(g.oa == "ds" for g in self.granules):
            feats.append("FEAT_LPA2 (TCR_EL1.DS=1)")
        if any(g.oa == "lpa" for g in self.granules):
            feats.append("FEAT_LPA")
        if any(t < 16 and g.shift == 16 for t, g in zip(self.tsz, self.granules, strict=True)):
            feats.append("FEAT_LVA")
        if not feats:
            return text
        vas = "/".join(str(64 - t) for t in self.tsz)
        return f"{text}: {', '.join(feats)}, {vas}-bit VAs, {self.pa_bits}-bit PAs"


__all__ = [
    "AF",
    "AP1",
    "AP2",
    "AP_TABLE0",
    "AP_TABLE1",
    "CONTIG",
    "DBM",
    "IPS_52",
    "MAIR_DEFAULT",
    "NG",
    "NS",
    "NS_TABLE",
    "PXN",
    "PXN_TABLE",
    "TCR_A1",
    "TCR_DEFAULT",
    "TCR_DS",
    "TCR_EPD0",
    "TCR_EPD1",
    "TCR_HA",
    "TCR_HD",
    "TCR_HPD0",
    "TCR_HPD1",
    "TCR_TBI0",
    "TCR_TBI1",
    "TYPE",
    "UXN",
    "UXN_TABLE",
    "VALID",
    "AArch64Mode",
    "Granule",
    "mair_type",
]
