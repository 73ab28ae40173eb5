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
from pagewalk.formats.x86_bits import (
    _PAT_TYPES,
    _WANTED_PAT,
    CR0_PG,
    CR0_WP,
    CR4_LA57,
    CR4_PAE,
    CR4_PKE,
    CR4_PSE,
    EFER_LME,
    EFER_NXE,
    PAT_LARGE,
    PAT_PTE,
    PAT_RESET,
    PCD,
    PDPTE_LENIENT,
    PS,
    PWT,
    RW,
    US,
    XD,
    A,
    D,
    G,
    P,
    bits,
    x86_halves,
    x86_masks,
)

_VARIANTS = ("x86", "pae", "x86_64", "la57")

#: why a PAE PDPTE may carry them (said in fault reasons and lint findings)
QEMU_PDPTE_NOTE = (
    "QEMU's walker sets Accessed (bit 5) in PAE PDPTEs and ignores bits 2:1 and 8:5, "
    "where a real CPU raises #GP at the MOV CR3 that loads them"
)


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

    def arch_facts(self) -> ArchFacts:
        long_mode = self.name in ("x86_64", "la57")
        return ArchFacts(
            "x86",
            pcid=long_mode,
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
        self._halves = x86_halves(variant, self.pse, pdpe1gb)
        masks = x86_masks(variant, self.pa_bits, self.nxe, strict, pdpe1gb)
        self._rsv_table, self._rsv_leaf = masks.rsv_table, masks.rsv_leaf
        self._addr_table, self._addr_leaf = masks.addr_table, masks.addr_leaf

    @property
    def halves(self) -> tuple[Half, ...]:
        return self._halves

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
        pdpte = self._pdpte(depth)
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
        if self._pdpte(level.depth):
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

    # ---------------------------------------------- permissions (SDM §4.6.1, §4.8)
    def walk_start(self) -> Acc:
        return (True, True, False, False)

    def fold_table(self, half: Half, level: Level, raw: int, acc: Acc) -> Acc:
        if self._pdpte(level.depth):
            return acc  # PAE PDPTEs carry no R/W, U/S or XD
        return (
            acc[0] and bool(raw & RW),
            acc[1] and bool(raw & US),
            acc[2] or bool(self.nxe and raw & XD),
            False,
        )

    def leaf_state(self, raw: int, acc: Acc, pge: bool = True) -> LeafState:
        xd = acc[2] or bool(self.nxe and raw & XD)
        key = (raw >> 59) & 0xF if self.facts.protection_keys else 0
        rights = Rights(True, acc[0] and bool(raw & RW), acc[1] and bool(raw & US), xd, xd, key)
        return LeafState(rights, pge and bool(raw & G), bool(raw & A), bool(raw & D))

    def table_perm(self, acc: Acc) -> Perm:
        perm = Perm.READ | (Perm.WRITE if acc[0] else Perm.NONE)
        perm |= Perm.USER if acc[1] else Perm.NONE
        return perm | (Perm.NONE if acc[2] else Perm.EXEC)

    def table_accessed(self, level: Level, raw: int) -> int:
        return raw if self._pdpte(level.depth) else raw | A  # PAE PDPTEs have no A bit

    def mark_leaf(self, raw: int, write: bool, dbm: bool, svadu: bool) -> int:
        return raw | A | (D if write else 0)

    # ----------------------------------------------------------------------- encode
    def encode_table(self, table_pa: int, level: Level, perm: Perm) -> int:
        self._check_pa(table_pa, 4096, level, 32 if not self.wide else self.pa_bits)
        if self._pdpte(level.depth):
            return table_pa | P
        return self.widen_table(table_pa | P, level, perm)

    def widen_table(self, raw: int, level: Level, perm: Perm) -> int:
        if self._pdpte(level.depth):
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
            attrs &= ~bits(20, 13)
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
        return np_leaf_by_bit(raws, level, PS, leaf_if_set=True)

    def address_mask(self, level: Level, leaf: bool) -> int:
        if not leaf:
            return self._addr_table
        if not self.wide and level.depth == 1:
            return 0xFFC00000 | (bits(13 + self.pa_bits - 33, 13) if self.pa_bits > 32 else 0)
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
        return value & bits(self.pa_bits - 1, 12)

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
