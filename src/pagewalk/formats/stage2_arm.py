"""The AArch64 stage-2 translation format (VMSAv8-64): IPA to PA under VTTBR_EL2 and VTCR_EL2.

Facts follow the Arm ARM (DDI 0487), chapter D8 "The AArch64 Virtual Memory System Architecture",
its stage 2 sections and the ``AArch64.S2Walk``, ``AArch64.S2StartLevel``,
``AArch64.S2InvalidSL`` and ``AArch64.S2InconsistentSL`` pseudo-code: VTCR_EL2 T0SZ (bits 5:0),
SL0 (7:6, the start level per granule), TG0 (15:14), PS (18:16, the output size), VS (19, a
16-bit VMID), HA (21) and HD (22); the start level's table may be up to 16 concatenated tables
(the IPA may carry up to 4 bits more than one table resolves), and VTTBR_EL2.BADDR is aligned to
their total size; VTTBR_EL2 VMID in bits 63:48 (55:48 without VS), CnP bit 0. Descriptors
(D8.3): bits 1:0 = 0b11 is a table (no APTable/XNTable at stage 2: those bits are ignored) or a
level-3 page, 0b01 a block where the granule allows one; block and page attributes MemAttr[3:0]
(bits 5:2, decoded with HCR_EL2.FWB = 0), S2AP[1:0] (bits 7:6: bit 6 read, bit 7 write), SH
(9:8), AF (10), DBM (51), Contiguous (52, a hint) and XN[1:0] (bits 54:53; XN[0] only with
FEAT_XNX). Faults: Translation, Access flag (AF = 0 without VTCR_EL2.HA), Address size (an
address at or above the PS size). 52-bit addresses (FEAT_LPA/LPA2) are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pagewalk.errors import ConfigError, EntryFormatError, hx
from pagewalk.formats.aarch64 import AF, CONTIG, DBM, TYPE, VALID
from pagewalk.formats.base import (
    ALL_PERMS,
    PERMS,
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
from pagewalk.formats.x86_bits import bits

S2AP_R = 1 << 6
S2AP_W = 1 << 7
XN0 = 1 << 53  # FEAT_XNX
XN1 = 1 << 54

VTCR_VS = 1 << 19
VTCR_HA = 1 << 21
VTCR_HD = 1 << 22

_TG0 = {0b00: 12, 0b01: 16, 0b10: 14}
_PS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48}
#: start level by granule shift and SL0 (``AArch64.S2StartLevel``, without FEAT_LPA2/TTST)
_START = {12: {0: 2, 1: 1, 2: 0}, 14: {0: 3, 1: 2, 2: 1}, 16: {0: 3, 1: 2, 2: 1}}
#: the levels where a block may stand, per granule shift (without FEAT_LPA/LPA2)
_BLOCK_LEVELS = {12: (1, 2), 14: (2,), 16: (2,)}
#: MemType -> MemAttr[3:0] (FWB = 0): Normal WB/WB, WT/WT, NC/NC; Device nGnRE, nGnRnE
_MEMATTR = {
    MemType.NORMAL: 0b1111,
    MemType.WRITE_THROUGH: 0b1010,
    MemType.WRITE_COMBINING: 0b0101,
    MemType.UNCACHED_MINUS: 0b0101,
    MemType.WRITE_PROTECT: 0b1010,
    MemType.DEVICE: 0b0001,
    MemType.DEVICE_STRICT: 0b0000,
    MemType.UNCACHED: 0b0000,
}
#: XN[1:0] -> (EL0 may not execute, EL1 may not execute), with FEAT_XNX (Arm ARM D8.4)
XN_TABLE = {0b00: (False, False), 0b01: (False, True), 0b10: (True, True), 0b11: (True, False)}


def memattr_type(attr: int) -> MemType | str:
    """Decode a stage-2 MemAttr[3:0] (HCR_EL2.FWB = 0)."""
    outer, inner = attr >> 2, attr & 3
    if outer == 0:
        return (MemType.DEVICE_STRICT, MemType.DEVICE, "device-nGRE", "device-GRE")[inner]
    names = {1: "nc", 2: "wt", 3: "wb"}
    if inner == 0:
        return f"unpredictable-memattr-{attr:#06b}"
    if outer == inner:
        return {1: MemType.WRITE_COMBINING, 2: MemType.WRITE_THROUGH, 3: MemType.NORMAL}[inner]
    return f"normal-o{names[outer]}-i{names[inner]}"


class ArmStage2Mode(PagingMode):
    """VMSAv8-64 stage 2 for the EL1&0 regime, configured by VTCR_EL2.

    Args:
        vtcr: VTCR_EL2 (T0SZ, SL0, TG0, PS, VS, HA, HD).
        xnx: FEAT_XNX is implemented (XN[0], bit 53, splits EL0 and EL1 execute).
    """

    name = "aarch64_s2"
    entry_size = 8
    root_names = ("VTTBR_EL2",)
    not_present_kind = "translation"
    non_canonical_kind = "translation"
    non_canonical_level = 0

    def __init__(self, vtcr: int, *, xnx: bool = True) -> None:
        self.vtcr, self.xnx = vtcr, xnx
        tg0, ps, sl0, t0sz = (vtcr >> 14) & 3, (vtcr >> 16) & 7, (vtcr >> 6) & 3, vtcr & 0x3F
        if tg0 not in _TG0:
            raise ConfigError(f"VTCR_EL2 {hx(vtcr)}: TG0={tg0:#04b} is reserved")
        if ps not in _PS:
            raise ConfigError(f"VTCR_EL2 {hx(vtcr)}: PS={ps} is reserved (52 bits needs LPA)")
        if not 16 <= t0sz <= 39:
            raise ConfigError(f"VTCR_EL2 {hx(vtcr)}: T0SZ={t0sz} is outside 16..39")
        g = self.granule_shift = _TG0[tg0]
        self.page_size = 1 << g
        self.pa_bits = self.root_bits = _PS[ps]
        self.ha = bool(vtcr & VTCR_HA)
        self.hd = self.ha and bool(vtcr & VTCR_HD)
        self.vmid16 = bool(vtcr & VTCR_VS)
        start = _START[g].get(sl0)
        if start is None:
            raise ConfigError(
                f"VTCR_EL2 {hx(vtcr)}: SL0={sl0} is reserved with a {1 << (g - 10)}K granule "
                "(a stage-2 Translation fault at level 0 on every access)"
            )
        stride, ia = g - 3, 64 - t0sz
        levels_below = 3 - start
        lo = levels_below * stride + g + 1  # AArch64.S2InconsistentSL
        if not lo <= ia <= lo + stride - 1 + 4:
            raise ConfigError(
                f"VTCR_EL2 {hx(vtcr)}: a {ia}-bit IPA (T0SZ={t0sz}) cannot start at level "
                f"{start} (SL0={sl0}) with a {1 << (g - 10)}K granule: it needs {lo}.."
                f"{lo + stride + 3} bits (a stage-2 Translation fault at level 0)"
            )
        levels: list[Level] = []
        for number in range(start, 4):
            shift = g + (3 - number) * stride
            width = stride if number != start else ia - shift
            leaf = 1 << shift if number == 3 or number in _BLOCK_LEVELS[g] else 0
            levels.append(Level(3 - number, number, f"S2 L{number}", shift, width, leaf))
        self.start_level = start
        #: how many tables the start level concatenates (1..16)
        self.concatenated = 1 << max(0, levels[0].bits - stride)
        align = max(8 << levels[0].bits, 64)
        self._halves = (Half(0, "VTTBR_EL2", tuple(levels), 0, 1 << ia, align),)

    @property
    def halves(self) -> tuple[Half, ...]:
        return self._halves

    def arch_facts(self) -> ArchFacts:
        return ArchFacts("arm", needs_bbm=True, stage=2)

    def root_fault(self, root_pa: int, half: Half) -> tuple[str, str] | None:
        if root_pa >> self.pa_bits:
            return "address-size", f"VTTBR_EL2 base {hx(root_pa)} exceeds PS {self.pa_bits} bits"
        return None

    def root_from_register(self, value: int, half: int = 0) -> int:
        return value & bits(47, 1) & ~(self._halves[0].table_align - 1)

    # ----------------------------------------------------------------------- decode
    def decode(self, raw: int, level: Level) -> Entry:
        if not raw & VALID:
            return Entry(EntryKind.INVALID, raw, fault="translation", reason="bit 0 (valid) is 0")
        table_like = bool(raw & TYPE)
        if level.number == 3 and not table_like:
            why = "a level-3 descriptor of type 0b01 is reserved"
            return Entry(EntryKind.INVALID, raw, fault="translation", reason=why)
        if not table_like and not level.leaf_size:
            why = f"a block descriptor is not allowed at stage-2 level {level.number}"
            return Entry(EntryKind.INVALID, raw, fault="translation", reason=why)
        if level.number == 3 or not table_like:
            return self._leaf(raw, level)
        address = raw & bits(47, self.granule_shift)
        if address >> self.pa_bits:
            why = f"next-level table address {hx(address)} exceeds PS {self.pa_bits} bits"
            return Entry(EntryKind.TABLE, raw, address, 0, ALL_PERMS, None, "address-size", why)
        return Entry(EntryKind.TABLE, raw, address, 0, ALL_PERMS)

    def _xn(self, raw: int) -> tuple[bool, bool]:
        if not self.xnx:
            return (bool(raw & XN1),) * 2
        return XN_TABLE[(raw >> 53) & 3]

    def _leaf(self, raw: int, level: Level) -> Entry:
        size = level.leaf_size
        address = raw & bits(47, 0) & ~(size - 1)
        xn_user = self._xn(raw)[0]
        perm = PERMS[
            8 | (1 if raw & S2AP_R else 0) | (2 if raw & S2AP_W else 0) | (0 if xn_user else 4)
        ]
        memtype = memattr_type((raw >> 2) & 0xF)
        if address >> self.pa_bits:
            why = f"output address {hx(address)} exceeds PS {self.pa_bits} bits"
            return Entry(EntryKind.LEAF, raw, address, size, perm, memtype, "address-size", why)
        if not raw & AF and not self.ha:
            why = "AF (bit 10) is 0 and VTCR_EL2.HA is off"
            return Entry(EntryKind.LEAF, raw, address, size, perm, memtype, "access-flag", why)
        return Entry(EntryKind.LEAF, raw, address, size, perm, memtype)

    def fields(self, raw: int, level: Level) -> list[Field]:
        out = [Field("valid", raw & 1), Field("type", raw >> 1 & 1)]
        entry = self.decode(raw, level)
        if entry.kind is EntryKind.LEAF:
            out += [
                Field("MemAttr", raw >> 2 & 0xF, 4),
                Field("S2AP", raw >> 6 & 3, 2),
                Field("SH", raw >> 8 & 3, 2),
                Field("AF", raw >> 10 & 1),
                Field("DBM", raw >> 51 & 1),
                Field("Contiguous", raw >> 52 & 1),
                Field("XN", raw >> 53 & 3, 2) if self.xnx else Field("XN", raw >> 54 & 1),
            ]
        out.append(Field("addr", entry.address, 64))
        return out

    # --------------------- permissions: the leaf alone decides (no hierarchical attributes)
    def fold_table(self, half: Half, level: Level, raw: int, acc: Acc) -> Acc:
        return acc

    def leaf_state(self, raw: int, acc: Acc, pge: bool = True) -> LeafState:
        xn_user, xn_priv = self._xn(raw)
        writable = bool(raw & S2AP_W)
        dbm = self.hd and bool(raw & DBM) and not writable
        rights = Rights(bool(raw & S2AP_R), writable, True, xn_user, xn_priv)
        return LeafState(rights, False, bool(raw & AF), writable, dbm)

    def table_perm(self, acc: Acc) -> Perm:
        return ALL_PERMS

    def mark_leaf(self, raw: int, write: bool, dbm: bool, svadu: bool) -> int:
        new = raw | (AF if self.ha else 0)
        return new | S2AP_W if write and dbm else new

    # ----------------------------------------------------------------------- encode
    def encode_table(self, table_pa: int, level: Level, perm: Perm) -> int:
        self._check_pa(table_pa, self.page_size, level)
        return table_pa | VALID | TYPE

    def widen_table(self, raw: int, level: Level, perm: Perm) -> int:
        return raw

    def encode_leaf(
        self, pa: int, level: Level, perm: Perm, memtype: MemType = MemType.NORMAL
    ) -> int:
        if not level.leaf_size:
            raise EntryFormatError(f"a block is not allowed at stage-2 level {level.number}")
        self._check_pa(pa, level.leaf_size, level)
        raw = pa | VALID | AF | (TYPE if level.number == 3 else 0) | (_MEMATTR[memtype] << 2)
        if memtype in (MemType.NORMAL, MemType.WRITE_THROUGH):
            raw |= 0b11 << 8  # inner shareable
        raw |= S2AP_R if perm & Perm.READ else 0
        raw |= S2AP_W if perm & Perm.WRITE else 0
        return raw | (0 if perm & Perm.EXEC else XN1)

    def resize_leaf(self, raw: int, level: Level, new_level: Level, new_pa: int) -> int:
        if not new_level.leaf_size:
            raise EntryFormatError(f"a block is not allowed at stage-2 level {new_level.number}")
        self._check_pa(new_pa, new_level.leaf_size, new_level)
        attrs = raw & ~bits(47, 12) & ~(TYPE | CONTIG)
        return attrs | new_pa | (TYPE if new_level.number == 3 else 0)

    def perm_mask(self, level: Level) -> int:
        return S2AP_R | S2AP_W | XN0 | XN1

    def memtype_mask(self, level: Level) -> int:
        return (0xF << 2) | (3 << 8)

    def np_is_leaf(self, raws: U64Array, level: Level) -> BoolArray:
        return np_leaf_by_bit(raws, level, TYPE, leaf_if_set=False)

    def address_mask(self, level: Level, leaf: bool) -> int:
        low = level.leaf_size if leaf else self.page_size
        return ((1 << self.pa_bits) - 1) & ~(low - 1)

    def np_address(self, raws: U64Array, level: Level, leaf: bool) -> U64Array:
        low = level.leaf_size if leaf else self.page_size
        return raws & np.uint64(bits(47, 0) & ~(low - 1))

    def vttbr(self, root_pa: int, vmid: int = 0) -> int:
        """The VTTBR_EL2 value with ``root_pa`` and ``vmid``."""
        return ((vmid & (0xFFFF if self.vmid16 else 0xFF)) << 48) | root_pa

    def registers(self) -> dict[str, int]:
        return {"vtcr": self.vtcr, "xnx": int(self.xnx)}


@dataclass(frozen=True)
class Vttbr:
    """A decoded VTTBR_EL2: the VMID, the base address, CnP."""

    value: int
    vmid: int
    baddr: int
    cnp: bool


def decode_vttbr(value: int, vtcr: int) -> Vttbr:
    """Decode VTTBR_EL2 as VTCR_EL2 configures it (VMID 63:48 with VS, else 55:48).

    Raises:
        ConfigError: a value wider than 64 bits, or VMID bits 63:56 set while VTCR_EL2.VS = 0.
    """
    if value >> 64 or value < 0:
        raise ConfigError(f"VTTBR_EL2 {hx(value)} is wider than 64 bits")
    if not vtcr & VTCR_VS and value >> 56:
        raise ConfigError(f"VTTBR_EL2 {hx(value)}: bits 63:56 are RES0 while VTCR_EL2.VS=0")
    return Vttbr(value, value >> 48, value & bits(47, 1), bool(value & 1))


def arm_s2_from_regs(vttbr: int, vtcr: int, *, xnx: bool = True) -> tuple[ArmStage2Mode, int]:
    """The stage-2 mode VTCR_EL2 selects and the root PA VTTBR_EL2 holds."""
    mode = ArmStage2Mode(vtcr, xnx=xnx)
    decode_vttbr(vttbr, vtcr)
    return mode, mode.root_from_register(vttbr)
