"""Intel EPT, the extended page tables of VMX: guest-physical to host-physical, 4 or 5 levels.

Facts follow Intel SDM vol. 3C ch. 29 "VMX Support for Address Translation" (numbered ch. 28 in
editions before 2023), §29.3 "The Extended Page Table Mechanism (EPT)": the EPTP (memory type in
bits 2:0, 0 UC or 6 WB; page-walk length minus 1 in bits 5:3; bit 6 enables accessed and dirty
flags; bit 7 supervisor shadow-stack control; bits 11:8 reserved; the PML4 or PML5 table at bits
N-1:12), the entry formats (R/W/X in bits 2:0, bits 7:3 reserved in a pointer, bit 7 makes a
PDPTE or PDE a 1-GByte or 2-MByte page, memory type in bits 5:3 and ignore-PAT in bit 6 of a
leaf, accessed bit 8, dirty bit 9 of a leaf, user-mode execute bit 10 with mode-based execute
control, bits 51:N reserved, bits 29:12 or 20:12 of a large page reserved), and §29.3.3 "EPT-
Induced VM Exits": an entry is present when any of bits 2:0 is 1 (or bit 10, under mode-based
execute control); W without R (bits 2:0 = 010b or 110b), execute-only where the CPU lacks it,
a set reserved bit, and a leaf memory type of 2, 3 or 7 are EPT *misconfigurations* (fault
kind ``reserved``); a not-present entry is an EPT *violation* (fault kind ``not-present``);
permissions are the AND of bits 0, 1, 2 (and 10) over every entry used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pagewalk.errors import ConfigError, EntryFormatError, hx
from pagewalk.formats.base import (
    PERMS,
    Acc,
    ArchFacts,
    BoolArray,
    Entry,
    EntryKind,
    Field,
    GiB,
    Half,
    LeafState,
    Level,
    MemType,
    MiB,
    PagingMode,
    Perm,
    Rights,
    U64Array,
)
from pagewalk.formats.model import np_leaf_by_bit
from pagewalk.formats.x86_bits import bits

R = 1 << 0
W = 1 << 1
X = 1 << 2
IPAT = 1 << 6
PS = 1 << 7
A = 1 << 8
D = 1 << 9
UX = 1 << 10
MT_SHIFT = 3
MT_MASK = 7 << MT_SHIFT

#: EPT memory types (SDM §29.3.7; the same encodings as the MTRRs and PAT); 2, 3 and 7 reserved
EPT_TYPES: dict[int, MemType] = {
    0: MemType.UNCACHED,
    1: MemType.WRITE_COMBINING,
    4: MemType.WRITE_THROUGH,
    5: MemType.WRITE_PROTECT,
    6: MemType.NORMAL,
}
_WANTED: dict[MemType, int] = {
    MemType.NORMAL: 6,
    MemType.WRITE_THROUGH: 4,
    MemType.WRITE_COMBINING: 1,
    MemType.WRITE_PROTECT: 5,
    MemType.UNCACHED_MINUS: 0,
    MemType.UNCACHED: 0,
    MemType.DEVICE: 0,
    MemType.DEVICE_STRICT: 0,
}
#: EPTP bits (SDM §25.6.11 "Extended-Page-Table Pointer (EPTP)")
EPTP_AD = 1 << 6
EPTP_SSS = 1 << 7


class EptMode(PagingMode):
    """EPT with a 4-level (``ept``) or 5-level (``ept5``) walk.

    Args:
        levels: the page-walk length, 4 or 5 (EPTP bits 5:3 plus one).
        maxphyaddr: N, the physical-address width; bits 51:N are reserved.
        ad: EPTP bit 6: the walk sets accessed flags, writes set dirty flags.
        mbec: the "mode-based execute control for EPT" VM-execution control: bit 10 is
            execute permission for user-mode linear addresses, bit 2 for supervisor-mode.
        exec_only: the CPU supports execute-only translations (IA32_VMX_EPT_VPID_CAP bit 0);
            without it, bits 2:0 = 100b are a misconfiguration.
        page_1g: 1-GByte pages are supported (IA32_VMX_EPT_VPID_CAP bit 17).
    """

    entry_size = 8
    root_names = ("EPTP",)
    not_present_kind = "not-present"
    non_canonical_kind = "non-canonical"

    def __init__(
        self,
        levels: int = 4,
        *,
        maxphyaddr: int = 52,
        ad: bool = False,
        mbec: bool = False,
        exec_only: bool = True,
        page_1g: bool = True,
    ) -> None:
        if levels not in (4, 5):
            raise ConfigError(f"EPT page-walk length {levels} is not 4 or 5")
        if not 32 <= maxphyaddr <= 52:
            raise ConfigError(f"MAXPHYADDR {maxphyaddr} is outside 32..52")
        self.name = "ept" if levels == 4 else "ept5"
        self.levels, self.maxphyaddr, self.ad, self.mbec = levels, maxphyaddr, ad, mbec
        self.exec_only, self.page_1g = exec_only, page_1g
        self.pa_bits = self.root_bits = maxphyaddr
        names = ("PT", "PD", "PDPT", "PML4", "PML5")
        sizes = (4096, 2 * MiB, GiB if page_1g else 0, 0, 0)
        lv = tuple(
            Level(d, d + 1, f"EPT {names[d]}", 12 + 9 * d, 9, sizes[d])
            for d in reversed(range(levels))
        )
        self._halves = (Half(0, "EPTP", lv, 0, 1 << (12 + 9 * levels), 4096),)
        self._high = bits(51, maxphyaddr)
        self._addr = bits(maxphyaddr - 1, 12)
        #: the bits that make an entry present: R, W, X, and UX under mode-based execute control
        self.present_bits = R | W | X | (UX if mbec else 0)
        self.present_mask = self.present_bits

    @property
    def halves(self) -> tuple[Half, ...]:
        return self._halves

    def arch_facts(self) -> ArchFacts:
        return ArchFacts("x86", table_accessed=self.ad, stage=2)

    # ----------------------------------------------------------------------- decode
    def _is_leaf(self, raw: int, level: Level) -> bool:
        return level.depth == 0 or bool(raw & PS and level.leaf_size)

    def decode(self, raw: int, level: Level) -> Entry:
        if not raw & self.present_bits:
            return Entry(EntryKind.INVALID, raw, fault="not-present", reason="bits 2:0 are 0")
        leaf = self._is_leaf(raw, level)
        kind = EntryKind.LEAF if leaf else EntryKind.TABLE
        address = raw & (self._addr & ~(level.leaf_size - 1) if leaf else self._addr)
        size = level.leaf_size if leaf else 0
        perm = self._perm(raw & R, raw & W, self._x(raw, True), self._x(raw, False))
        why = self._misconfig(raw, level, leaf)
        if why:
            return Entry(kind, raw, address, size, perm, None, "reserved", why)
        memtype = EPT_TYPES[(raw >> MT_SHIFT) & 7] if leaf else None
        return Entry(kind, raw, address, size, perm, memtype)

    def _x(self, raw: int, user: bool) -> bool:
        return bool(raw & (UX if user and self.mbec else X))

    @staticmethod
    def _perm(r: object, w: object, xu: object, xs: object) -> Perm:
        # Guest accesses of every privilege go through EPT: USER is always set; EXEC is the
        # user-mode execute right (bit 10 under mode-based execute control, else bit 2).
        return PERMS[8 | (1 if r else 0) | (2 if w else 0) | (4 if xu else 0)]

    def _misconfig(self, raw: int, level: Level, leaf: bool) -> str:
        """Why ``raw`` (present) is an EPT misconfiguration (SDM §29.3.3.1), or ``""``."""
        rwx = raw & 7
        if rwx & W and not rwx & R:
            return f"EPT misconfiguration: bits 2:0 = {rwx:03b}b (write without read)"
        if rwx == X and not self.exec_only:  # 000b with bit 10 under MBEC is not 100b
            return "EPT misconfiguration: execute-only (bits 2:0 = 100b) is not supported"
        high = raw & self._high
        if high:
            return (
                f"EPT misconfiguration: reserved bits {hx(high)} (51:{self.maxphyaddr}) "
                f"set in an {level.name}E"
            )
        if leaf:
            low = raw & bits(level.shift - 1, 12) if level.depth else 0
            if low:
                return f"EPT misconfiguration: reserved bits {hx(low)} set in a large-page entry"
            mt = (raw >> MT_SHIFT) & 7
            if mt not in EPT_TYPES:
                return f"EPT misconfiguration: memory type {mt} (bits 5:3) is reserved"
            return ""
        rsv = raw & (0xF8 if not level.leaf_size else 0x78)
        if rsv:
            what = "bit 7 (no page may stand here)" if rsv & PS else f"bits {hx(rsv)} of 7:3"
            return f"EPT misconfiguration: reserved {what} set in an {level.name}E"
        return ""

    def fields(self, raw: int, level: Level) -> list[Field]:
        leaf = self._is_leaf(raw, level)
        out = [Field("R", raw & 1), Field("W", raw >> 1 & 1), Field("X", raw >> 2 & 1)]
        if leaf:
            out += [Field("MT", raw >> 3 & 7, 3), Field("IPAT", raw >> 6 & 1)]
        if level.depth and level.leaf_size:
            out.append(Field("PS", raw >> 7 & 1))
        out.append(Field("A", raw >> 8 & 1))
        if leaf:
            out.append(Field("D", raw >> 9 & 1))
        out.append(Field("UX", raw >> 10 & 1))
        out.append(Field("SVE", raw >> 63 & 1))
        out.append(Field("addr", self.decode(raw, level).address, 64))
        return out

    # ------------------------------------ permissions: AND over every entry (SDM §29.3.3.2)
    def walk_start(self) -> Acc:
        return (True, True, True, True)

    def fold_table(self, half: Half, level: Level, raw: int, acc: Acc) -> Acc:
        return (
            acc[0] and bool(raw & R),
            acc[1] and bool(raw & W),
            acc[2] and self._x(raw, False),
            acc[3] and self._x(raw, True),
        )

    def leaf_state(self, raw: int, acc: Acc, pge: bool = True) -> LeafState:
        r, w, xs, xu = self.fold_table(self._halves[0], self._halves[0].levels[-1], raw, acc)
        rights = Rights(r, w, True, not xu, not xs)
        return LeafState(rights, False, bool(raw & A), bool(raw & D))

    def table_perm(self, acc: Acc) -> Perm:
        return self._perm(acc[0], acc[1], acc[3], acc[2])

    def table_accessed(self, level: Level, raw: int) -> int:
        return raw | A if self.ad else raw

    def mark_leaf(self, raw: int, write: bool, dbm: bool, svadu: bool) -> int:
        return raw | A | (D if write else 0) if self.ad else raw

    # ----------------------------------------------------------------------- encode
    def encode_table(self, table_pa: int, level: Level, perm: Perm) -> int:
        self._check_pa(table_pa, 4096, level)
        return table_pa | R | W | X | (UX if self.mbec else 0)

    def widen_table(self, raw: int, level: Level, perm: Perm) -> int:
        return raw | R | W | X | (UX if self.mbec else 0)

    def encode_leaf(
        self, pa: int, level: Level, perm: Perm, memtype: MemType = MemType.NORMAL
    ) -> int:
        if not level.leaf_size:
            raise EntryFormatError(f"EPT cannot put a page in an {level.name}E")
        self._check_pa(pa, level.leaf_size, level)
        raw = pa | (_WANTED[memtype] << MT_SHIFT) | (PS if level.depth else 0)
        if perm & (Perm.READ | Perm.WRITE):
            raw |= R  # W without R is a misconfiguration, so write implies read
        if perm & Perm.WRITE:
            raw |= W
        if perm & Perm.EXEC:
            raw |= X | (UX if self.mbec else 0)
        if not raw & 7:
            raise EntryFormatError("an EPT page needs at least one of R, W, X (else not present)")
        return raw

    def resize_leaf(self, raw: int, level: Level, new_level: Level, new_pa: int) -> int:
        if not new_level.leaf_size:
            raise EntryFormatError(f"EPT cannot put a page in an {new_level.name}E")
        self._check_pa(new_pa, new_level.leaf_size, new_level)
        attrs = raw & ~self._addr & ~PS
        return attrs | new_pa | (PS if new_level.depth else 0)

    def perm_mask(self, level: Level) -> int:
        return R | W | X | UX

    def memtype_mask(self, level: Level) -> int:
        return MT_MASK | IPAT

    def np_is_leaf(self, raws: U64Array, level: Level) -> BoolArray:
        return np_leaf_by_bit(raws, level, PS, leaf_if_set=True)

    def address_mask(self, level: Level, leaf: bool) -> int:
        return self._addr & ~(level.leaf_size - 1) if leaf else self._addr

    def np_address(self, raws: U64Array, level: Level, leaf: bool) -> U64Array:
        return raws & np.uint64(self.address_mask(level, leaf))

    # ------------------------------------------------------------------ registers
    def root_from_register(self, value: int, half: int = 0) -> int:
        return value & self._addr

    def eptp(self, root_pa: int, memtype: int = 6) -> int:
        """The EPTP that selects this walk with the table at ``root_pa``."""
        return root_pa | memtype | ((self.levels - 1) << 3) | (EPTP_AD if self.ad else 0)

    def registers(self) -> dict[str, int]:
        return {"maxphyaddr": self.maxphyaddr, "ad": int(self.ad), "mbec": int(self.mbec)}


@dataclass(frozen=True)
class Eptp:
    """A decoded EPTP: memory type of the paging structures, walk length, A/D, root."""

    value: int
    memtype: int
    levels: int
    ad: bool
    sss: bool
    root: int

    def describe(self) -> str:
        """``EPTP=0x...5e (WB, 4-level, A/D on, root 0x...)``."""
        mt = "WB" if self.memtype == 6 else "UC"
        ad = "A/D on" if self.ad else "A/D off"
        return f"EPTP={hx(self.value)} ({mt}, {self.levels}-level, {ad}, root {hx(self.root)})"


def decode_eptp(value: int, maxphyaddr: int = 52) -> Eptp:
    """Decode an EPTP (SDM vol. 3C §25.6.11); VM entry fails on the values refused here.

    Raises:
        ConfigError: a reserved memory type (not 0 UC or 6 WB), a page-walk length other than
            4 or 5, or reserved bits 11:8 or 63:N set.
    """
    mt, length = value & 7, ((value >> 3) & 7) + 1
    if mt not in (0, 6):
        raise ConfigError(f"EPTP {hx(value)}: memory type {mt} in bits 2:0 is not 0 (UC) or 6 (WB)")
    if length not in (4, 5):
        raise ConfigError(
            f"EPTP {hx(value)}: page-walk length {length} (bits 5:3 = {length - 1}) is not 4 or 5"
        )
    rsv = value & (bits(11, 8) | bits(63, maxphyaddr))
    if rsv:
        raise ConfigError(f"EPTP {hx(value)}: reserved bits {hx(rsv)} are set")
    root = value & bits(maxphyaddr - 1, 12)
    return Eptp(value, mt, length, bool(value & EPTP_AD), bool(value & EPTP_SSS), root)


def ept_from_eptp(
    value: int, *, maxphyaddr: int = 52, mbec: bool = False, exec_only: bool = True
) -> tuple[EptMode, int]:
    """The EPT mode an EPTP selects and its root table's PA."""
    eptp = decode_eptp(value, maxphyaddr)
    mode = EptMode(eptp.levels, maxphyaddr=maxphyaddr, ad=eptp.ad, mbec=mbec, exec_only=exec_only)
    return mode, eptp.root
