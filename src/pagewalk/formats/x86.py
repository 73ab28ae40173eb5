"""The x86 paging formats: 32-bit (with PSE and PSE-36), PAE, 4-level and 5-level (LA57).

One parameterised codec covers the four modes; they differ only in data (levels, entry width,
reserved-bit masks). Facts follow Intel SDM vol. 3A ch. 4: §4.3 (32-bit paging, tables 4-4 to
4-6, PSE-36 in bits 20:13 of a 4-MByte PDE), §4.4 (PAE paging, table 4-8: PDPTE reserved bits
2:1 and 8:5, bits 62:MAXPHYADDR reserved in PAE PDEs/PTEs; CR3 bits 31:5 locate the PDPT),
§4.5 (4-level and 5-level paging, tables 4-14 to 4-20: PS reserved in PML5E/PML4E, bits
51:MAXPHYADDR reserved, bits 62:52 ignored or protection keys 62:59, bit 63 XD reserved unless
IA32_EFER.NXE), §4.9 (PAT index from PAT/PCD/PWT).

PAE PDPTEs, by default, are read as QEMU's walker reads them (target/i386, QEMU 7.2): on every
walk, with only bits 63:MAXPHYADDR checked. QEMU sets Accessed (bit 5) in them, so a dump of a PAE
guest taken under QEMU has a bit the manual reserves; a real CPU loads PDPTEs at MOV CR3 and raises
#GP for such a bit (§4.4.1). ``strict=True`` follows the manual: bits 2:1 and 8:5 are reserved.
"""

from __future__ import annotations

import numpy as np

from pagewalk.errors import ConfigError, EntryFormatError, hx
from pagewalk.formats.base import (
    PERMS,
    ArchFacts,
    BoolArray,
    Entry,
    EntryKind,
    Field,
    GiB,
    Half,
    Level,
    MemType,
    MiB,
    PagingMode,
    Perm,
    U64Array,
)

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

_VARIANTS = ("x86", "pae", "x86_64", "la57")

#: PAE PDPTE bits the SDM reserves (table 4-8) and QEMU's walker neither checks nor keeps clear
PDPTE_LENIENT = 0b1_1110_0110
#: why a PAE PDPTE may carry them (said in fault reasons and lint findings)
QEMU_PDPTE_NOTE = (
    "QEMU's walker sets Accessed (bit 5) in PAE PDPTEs and ignores bits 2:1 and 8:5, "
    "where a real CPU raises #GP at the MOV CR3 that loads them"
)


def _bits(hi: int, lo: int) -> int:
    """Mask of bits hi..lo inclusive."""
    return ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1) if hi >= lo else 0


class X86Mode(PagingMode):
    """x86 paging in one of its four modes, configured by CR0/CR4/EFER, MAXPHYADDR and PAT.

    Args:
        variant: ``x86``, ``pae``, ``x86_64`` or ``la57``.
        cr0: CR0 (WP matters to access checks).
        cr4: CR4 (PSE matters to 32-bit paging; PKE enables protection keys).
        efer: IA32_EFER (NXE makes bit 63 the XD bit instead of a reserved bit).
        maxphyaddr: the CPU's physical-address width (32-bit paging caps PSE-36 at 40).
        pdpe1gb: whether 1-GByte pages exist (CPUID.80000001H:EDX.Page1GB).
        pat: IA32_PAT, which gives the memory type of each PAT/PCD/PWT combination.
        strict: PAE PDPTE bits 2:1 and 8:5 are reserved, as the manual says (a real CPU's #GP
            at MOV CR3 shows as a reserved-bit fault at the PDPTE); by default they are
            accepted, as QEMU's walker does (see :meth:`lenient_bits`).
    """

    @property
    def facts(self) -> ArchFacts:
        long_mode = self.name in ("x86_64", "la57")
        return ArchFacts(
            "x86",
            pcid=long_mode,
            global_pages=True,
            protection_keys=long_mode,
            table_accessed=True,
            va_bits=64 if long_mode else 32,
        )

    def __init__(
        self,
        variant: str = "x86_64",
        *,
        cr0: int = CR0_PG | CR0_WP | 1,
        cr4: int | None = None,
        efer: int = EFER_NXE | EFER_LME,
        maxphyaddr: int = 52,
        pdpe1gb: bool = True,
        pat: int = PAT_RESET,
        strict: bool = False,
    ) -> None:
        if variant not in _VARIANTS:
            raise ConfigError(f"unknown x86 paging variant {variant!r}")
        if not 32 <= maxphyaddr <= 52:
            raise ConfigError(f"MAXPHYADDR {maxphyaddr} is outside 32..52")
        if cr4 is None:
            cr4 = {
                "x86": CR4_PSE,
                "pae": CR4_PSE | CR4_PAE,
                "x86_64": CR4_PSE | CR4_PAE,
                "la57": CR4_PSE | CR4_PAE | CR4_LA57,
            }[variant]
        self.name = variant
        self.cr0 = cr0
        self.cr4 = cr4
        self.efer = efer
        self.pat = pat
        self.maxphyaddr = maxphyaddr
        self.pdpe1gb = pdpe1gb
        self.strict = strict
        self.wide = variant != "x86"
        self.entry_size = 8 if self.wide else 4
        self.pse = bool(cr4 & CR4_PSE)
        self.nxe = bool(efer & EFER_NXE) and self.wide
        self.pke = bool(cr4 & CR4_PKE) and variant in ("x86_64", "la57")
        self.root_names = ("CR3",)
        self.pa_bits = min(maxphyaddr, 40) if variant == "x86" else maxphyaddr
        # CR3 is 32 bits outside IA-32e mode (SDM vol. 3A 4.3, 4.4.1)
        self.root_bits = 32 if variant in ("x86", "pae") else maxphyaddr
        self._build_levels()
        self._build_masks()

    # ----------------------------------------------------------------- levels and halves
    def _build_levels(self) -> None:
        v = self.name
        if v == "x86":
            large = 4 * MiB if self.pse else 0
            levels: tuple[Level, ...] = (
                Level(1, 2, "PD", 22, 10, large),
                Level(0, 1, "PT", 12, 10, 4096),
            )
            self._halves: tuple[Half, ...] = (Half(0, "CR3", levels, 0, 1 << 32, 4096),)
            return
        if v == "pae":
            levels = (
                Level(2, 3, "PDPT", 30, 2, 0),
                Level(1, 2, "PD", 21, 9, 2 * MiB),
                Level(0, 1, "PT", 12, 9, 4096),
            )
            self._halves = (Half(0, "CR3", levels, 0, 1 << 32, 32),)
            return
        top: tuple[Level, ...] = (Level(3, 4, "PML4", 39, 9, 0),)
        if v == "la57":
            top = (Level(4, 5, "PML5", 48, 9, 0), Level(3, 4, "PML4", 39, 9, 0))
        levels = (
            *top,
            Level(2, 3, "PDPT", 30, 9, GiB if self.pdpe1gb else 0),
            Level(1, 2, "PD", 21, 9, 2 * MiB),
            Level(0, 1, "PT", 12, 9, 4096),
        )
        va_bits = 57 if v == "la57" else 48
        half = 1 << (va_bits - 1)
        self._halves = (
            Half(0, "CR3", levels, 0, half, 4096),
            Half(0, "CR3", levels, (1 << 64) - half, 1 << 64, 4096),
        )

    @property
    def halves(self) -> tuple[Half, ...]:
        return self._halves

    def _build_masks(self) -> None:
        """Precompute, per depth, the reserved bits of table entries and of leaves."""
        m = self.pa_bits
        depths = len(self._halves[0].levels)
        self._rsv_table = [0] * depths
        self._rsv_leaf = [0] * depths
        self._addr_leaf = [0] * depths
        if not self.wide:
            self._addr_table = 0xFFFFF000
            self._addr_leaf[0] = 0xFFFFF000
            # 4-MByte PDE: bit 21 reserved, and PSE-36 bits above MAXPHYADDR (SDM table 4-4).
            self._rsv_leaf[1] = _bits(21, 13 + m - 32)
            self._addr_leaf[1] = 0xFFC00000
            return
        above = _bits(51, m)
        high = above | (0 if self.nxe else XD)
        if self.name == "pae":
            high = _bits(62, m) | (0 if self.nxe else XD)
        self._addr_table = _bits(m - 1, 12)
        for depth in range(depths):
            self._rsv_table[depth] = high
            self._rsv_leaf[depth] = high
        self._addr_leaf[0] = _bits(m - 1, 12)
        self._addr_leaf[1] = _bits(m - 1, 21)
        self._rsv_leaf[1] |= _bits(20, 13)
        if self.name == "pae":
            # PDPTEs: bits 63:MAXPHYADDR reserved (no XD in a PDPTE); 2:1 and 8:5 only if strict.
            self._rsv_table[2] = _bits(63, m) | (PDPTE_LENIENT if self.strict else 0)
        else:
            self._addr_leaf[2] = _bits(m - 1, 30)
            self._rsv_leaf[2] |= _bits(29, 13)
            # PS is reserved where no page may stand: PML4E/PML5E, and PDPTE without Page1GB.
            for depth in range(3 if self.pdpe1gb else 2, depths):
                self._rsv_table[depth] |= PS

    # ----------------------------------------------------------------------- decode
    def decode(self, raw: int, level: Level) -> Entry:
        if not raw & P:
            return Entry(EntryKind.INVALID, raw, fault="not-present", reason="P (bit 0) is 0")
        depth = level.depth
        leaf = depth == 0 or (raw & PS and level.leaf_size and (self.wide or self.pse))
        if leaf:
            rsv = raw & self._rsv_leaf[depth]
            address = raw & self._addr_leaf[depth]
            if not self.wide and depth == 1:
                address |= ((raw >> 13) & 0xFF) << 32
                address &= (1 << self.pa_bits) - 1
            size = level.leaf_size
        else:
            rsv = raw & self._rsv_table[depth]
            address = raw & self._addr_table
            size = 0
        bits = 1  # READ; plain ints here, one table lookup at the end (IntFlag ops are slow)
        pdpte = depth == 2 and self.name == "pae"
        if raw & RW or pdpte:
            bits |= 2
        if raw & US or pdpte:
            bits |= 8
        if not (self.nxe and raw & XD):
            bits |= 4
        if leaf and raw & G:
            bits |= 16
        perm = PERMS[bits]
        kind = EntryKind.LEAF if leaf else EntryKind.TABLE
        if rsv:
            return Entry(
                kind, raw, address, size, perm, None, "reserved", self._reserved_reason(rsv, level)
            )
        memtype = self._memtype(raw, depth) if leaf else None
        return Entry(kind, raw, address, size, perm, memtype)

    def _pdpte(self, depth: int) -> bool:
        """Whether entries at ``depth`` are PAE PDPTEs, which carry no R/W or U/S bit."""
        return depth == 2 and self.name == "pae"

    def _reserved_reason(self, rsv: int, level: Level) -> str:
        why = self._reserved_what(rsv, level)
        if self._pdpte(level.depth) and rsv & PDPTE_LENIENT and not rsv & ~PDPTE_LENIENT:
            why += f" (under --strict; {QEMU_PDPTE_NOTE})"
        return why

    def _reserved_what(self, rsv: int, level: Level) -> str:
        bits = [b for b in range(64) if rsv >> b & 1]
        what = f"{level.name}E" if level.depth else "PTE"
        if rsv & PS and level.depth >= 2 and not level.leaf_size:
            return f"PS (bit 7) is reserved in a {what}"
        if rsv & XD and not self.nxe:
            return f"bit 63 (XD) is reserved in a {what} while EFER.NXE=0"
        span = f"bit {bits[0]}" if len(bits) == 1 else f"bits {bits[-1]}:{bits[0]}"
        return f"reserved {span} set in a {what} (mask {hx(rsv)}; MAXPHYADDR={self.maxphyaddr})"

    def lenient_bits(self, raw: int, level: Level) -> int:
        """The bits of a present ``raw`` that the manual reserves but this mode accepts, as
        QEMU does: PAE PDPTE bits 2:1 and 8:5 unless ``strict`` (0 everywhere else)."""
        if self.strict or not self._pdpte(level.depth) or not raw & P:
            return 0
        return raw & PDPTE_LENIENT

    def describe(self) -> str:
        text = super().describe()
        return f"{text[:-1]}, strict)" if self.strict else text

    def _memtype(self, raw: int, depth: int) -> MemType | str:
        pat_bit = PAT_PTE if depth == 0 else PAT_LARGE
        index = (1 if raw & PWT else 0) | (2 if raw & PCD else 0) | (4 if raw & pat_bit else 0)
        code = (self.pat >> (8 * index)) & 0xFF
        return _PAT_TYPES.get(code, f"PAT{index}={code:#x}")

    def fields(self, raw: int, level: Level) -> list[Field]:
        leaf = level.depth == 0 or bool(raw & PS and level.leaf_size)
        out = [Field("P", raw & 1)]
        if self.name == "pae" and level.depth == 2:
            out += [Field("PWT", raw >> 3 & 1), Field("PCD", raw >> 4 & 1)]
        else:
            out += [
                Field("R/W", raw >> 1 & 1),
                Field("U/S", raw >> 2 & 1),
                Field("PWT", raw >> 3 & 1),
                Field("PCD", raw >> 4 & 1),
                Field("A", raw >> 5 & 1),
            ]
            if leaf:
                out.append(Field("D", raw >> 6 & 1))
            if level.depth:
                out.append(Field("PS", raw >> 7 & 1))
            if leaf:
                out.append(Field("G", raw >> 8 & 1))
                out.append(Field("PAT", raw >> (7 if level.depth == 0 else 12) & 1))
        if self.wide:
            if leaf and self.pke:
                out.append(Field("PK", raw >> 59 & 0xF, 4))
            out.append(Field("XD", raw >> 63 & 1))
        entry = self.decode(raw, level)
        out.append(Field("addr", entry.address, 64))
        return out

    # ----------------------------------------------------------------------- encode
    def encode_table(self, table_pa: int, level: Level, perm: Perm) -> int:
        self._check_pa(table_pa, 4096, level, 32 if not self.wide else self.pa_bits)
        if self.name == "pae" and level.depth == 2:
            return table_pa | P
        return self.widen_table(table_pa | P, level, perm)

    def widen_table(self, raw: int, level: Level, perm: Perm) -> int:
        if self.name == "pae" and level.depth == 2:
            return raw
        if perm & Perm.WRITE:
            raw |= RW
        if perm & Perm.USER:
            raw |= US
        return raw

    def encode_leaf(
        self, pa: int, level: Level, perm: Perm, memtype: MemType = MemType.NORMAL
    ) -> int:
        if not level.leaf_size:
            raise EntryFormatError(f"mode {self.name} cannot put a leaf in a {level.name}")
        large = level.depth > 0
        limit = 32 if not self.wide and not large else self.pa_bits
        self._check_pa(pa, level.leaf_size, level, limit)
        raw = P
        if not self.wide and large:
            raw |= (pa & 0xFFC00000) | ((pa >> 32) << 13)
        else:
            raw |= pa
        if large:
            raw |= PS
        if perm & Perm.WRITE:
            raw |= RW
        if perm & Perm.USER:
            raw |= US
        if perm & Perm.GLOBAL:
            raw |= G
        if self.nxe and not perm & Perm.EXEC:
            raw |= XD
        return raw | self._pat_bits(memtype, large)

    def resize_leaf(self, raw: int, level: Level, new_level: Level, new_pa: int) -> int:
        if not new_level.leaf_size:
            raise EntryFormatError(f"mode {self.name} cannot put a leaf in a {new_level.name}")
        large, new_large = level.depth > 0, new_level.depth > 0
        limit = 32 if not (self.wide or new_large) else self.pa_bits
        self._check_pa(new_pa, new_level.leaf_size, new_level, limit)
        attrs = raw & ~self._addr_leaf[level.depth]
        if not self.wide and large:
            attrs &= ~_bits(20, 13)
        pat = attrs & (PAT_LARGE if large else PAT_PTE)
        attrs &= ~(PAT_LARGE | PS) if large else ~PAT_PTE
        if new_large:
            attrs |= PS | (PAT_LARGE if pat else 0)
        elif pat:
            attrs |= PAT_PTE
        if not self.wide and new_large:
            return attrs | (new_pa & 0xFFC00000) | ((new_pa >> 32) << 13)
        return attrs | new_pa

    def perm_mask(self, level: Level) -> int:
        return RW | US | G | (XD if self.nxe else 0)

    def memtype_mask(self, level: Level) -> int:
        return PWT | PCD | (PAT_PTE if level.depth == 0 else PAT_LARGE)

    def np_is_leaf(self, raws: U64Array, level: Level) -> BoolArray:
        if level.depth == 0:
            return np.ones(raws.shape, dtype=np.bool_)
        if not level.leaf_size:
            return np.zeros(raws.shape, dtype=np.bool_)
        return np.asarray((raws & np.uint64(PS)) != 0, dtype=np.bool_)

    def address_mask(self, level: Level, leaf: bool) -> int:
        if not leaf:
            return self._addr_table
        if not self.wide and level.depth == 1:
            return 0xFFC00000 | (_bits(13 + self.pa_bits - 33, 13) if self.pa_bits > 32 else 0)
        return self._addr_leaf[level.depth]

    def np_address(self, raws: U64Array, level: Level, leaf: bool) -> U64Array:
        if not leaf:
            return raws & np.uint64(self._addr_table)
        out = raws & np.uint64(self._addr_leaf[level.depth])
        if not self.wide and level.depth == 1:
            out |= ((raws >> np.uint64(13)) & np.uint64(0xFF)) << np.uint64(32)
            out &= np.uint64((1 << self.pa_bits) - 1)
        return out

    def _pat_bits(self, memtype: MemType, large: bool) -> int:
        wanted = _WANTED_PAT[memtype]
        for index in range(8):
            if (self.pat >> (8 * index)) & 0xFF in wanted:
                bits = (PWT if index & 1 else 0) | (PCD if index & 2 else 0)
                if index & 4:
                    bits |= PAT_LARGE if large else PAT_PTE
                return bits
        raise EntryFormatError(
            f"no IA32_PAT entry gives memory type {memtype.value} (PAT={hx(self.pat)})"
        )

    # ------------------------------------------------------------------ registers
    def root_from_register(self, value: int, half: int = 0) -> int:
        if self.name == "x86":
            return value & 0xFFFFF000
        if self.name == "pae":
            return value & 0xFFFFFFE0
        return value & _bits(self.pa_bits - 1, 12)

    def canonical(self, va: int) -> int:
        if not self.wide or self.name == "pae":
            return va & 0xFFFFFFFF
        bits = 57 if self.name == "la57" else 48
        va &= (1 << bits) - 1
        return va | (((1 << 64) - (1 << bits)) if va >> (bits - 1) else 0)

    def registers(self) -> dict[str, int]:
        return {
            "cr0": self.cr0,
            "cr4": self.cr4,
            "efer": self.efer,
            "maxphyaddr": self.maxphyaddr,
            "pat": self.pat,
        }
