"""TLB maintenance instructions, each mapped to exactly what its manual says it invalidates.

- x86, Intel SDM vol. 3A §4.10.4.1: INVLPG drops the page's entries for the current PCID and its
  global entries, plus every paging-structure cache entry of the current PCID. INVPCID type 0
  (one address, one PCID, globals kept), type 1 (one PCID, globals kept), type 2 (everything,
  globals too) and type 3 (every PCID, globals kept). MOV to CR3 drops the new PCID's non-global
  entries, unless CR4.PCIDE=1 and bit 63 (no-flush) is set. MOV to CR4 that toggles PGE, or
  clears PCIDE, drops everything; one that changes PAE or sets SMEP drops the current PCID.
- AArch64, Arm ARM D8.13 and the TLBI instruction descriptions: VAE1 (one VA, one ASID, and global
  entries; walk caches too), VALE1 (the same, last level only: walk caches stay), ASIDE1 (one
  ASID, globals kept), VMALLE1 (everything), and their IS forms, which reach every MMU in the
  inner-shareable domain.
- RISC-V privileged spec, SFENCE.VMA: with rs1=x0 and rs2=x0 everything; with rs2 an ASID only
  that ASID's non-global entries; with rs1 an address only the leaf entries for that address
  (non-leaf entries need not be invalidated, so the walk cache stays).
"""

from __future__ import annotations

from pagewalk.errors import ConfigError
from pagewalk.formats.base import PagingMode
from pagewalk.formats.x86_bits import CR4_PAE, CR4_PCIDE, CR4_PGE, CR4_SMEP
from pagewalk.mmu.cpu import CPU
from pagewalk.mmu.regs import Regs, X86Regs
from pagewalk.mmu.tlb import TLB

#: CR3 bit 63: with CR4.PCIDE=1, a MOV to CR3 keeps the new PCID's entries
CR3_NOFLUSH = 1 << 63
_TLBI = ("vae1", "vale1", "aside1", "vmalle1")


class Maintenance:
    """Mixin of :class:`~pagewalk.mmu.core.MMU`: the flush instructions of every architecture."""

    mode: PagingMode
    arch: str
    regs: Regs
    cpu: CPU
    tlb: TLB
    peers: list[Maintenance]

    @property
    def asid(self) -> int:
        """The current ASID/PCID (defined by the MMU)."""
        raise NotImplementedError

    def _x86(self) -> X86Regs:
        if not isinstance(self.regs, X86Regs):
            raise ConfigError(f"x86 instruction on a {self.mode.name} MMU")
        return self.regs

    def _need(self, arch: str, what: str) -> None:
        if self.arch != arch:
            raise ConfigError(f"{what} is not an instruction of {self.mode.name}")

    # ------------------------------------------------------------------------ x86
    def invlpg(self, va: int) -> None:
        """INVLPG: the page of ``va`` for the current PCID, its global entries, all PWC entries."""
        self._x86()
        self.tlb.drop(va, va + 1, asid=self.asid, globals_=True, walk_cache=False)
        if self.tlb.pwc is not None:
            self.tlb.pwc.drop(asid=self.asid)

    def invpcid(self, kind: int, pcid: int = 0, va: int = 0) -> None:
        """INVPCID of type 0 (address), 1 (single context), 2 (all, with globals) or 3 (all)."""
        self._x86()
        if kind == 0:
            self.tlb.drop(va, va + 1, asid=pcid, globals_=False, walk_cache=False)
            if self.tlb.pwc is not None:
                self.tlb.pwc.drop(asid=pcid)
        elif kind == 1:
            self.tlb.drop(asid=pcid, globals_=False)
        elif kind == 2:
            self.tlb.drop()
        elif kind == 3:
            self.tlb.drop(globals_=False)
        else:
            raise ConfigError(f"INVPCID type {kind} is reserved (#GP)")

    def write_cr3(self, value: int) -> None:
        """MOV to CR3: load the root (and PCID) and flush as §4.10.4.1 says."""
        regs = self._x86()
        pcid = value & 0xFFF if regs.pcide else 0
        root = self.mode.root_from_register(value & ~CR3_NOFLUSH)
        self.cpu.load_roots(self.mode, [root], pcid)
        if not (regs.pcide and value & CR3_NOFLUSH):
            self.tlb.drop(asid=pcid, globals_=False)

    def write_cr4(self, value: int) -> None:
        """MOV to CR4, with the flushes that PGE, PCIDE, PAE and SMEP changes cause."""
        regs = self._x86()
        old = regs.cr4
        regs.cr4 = value
        changed = old ^ value
        if changed & CR4_PGE or (old & CR4_PCIDE and not value & CR4_PCIDE):
            self.tlb.drop()
        elif changed & CR4_PAE or (value & CR4_SMEP and not old & CR4_SMEP):
            self.tlb.drop(asid=self.asid, globals_=False)

    # -------------------------------------------------------------------- AArch64
    def tlbi(self, op: str, va: int | None = None, asid: int | None = None) -> None:
        """TLBI ``op``: ``vae1``, ``vale1``, ``aside1``, ``vmalle1`` or their ``...is`` forms.

        Args:
            op: the operation name (case-insensitive; ``vae1is`` is the IS form of ``vae1``).
            va: the address for VAE1/VALE1; asid: the ASID (default: the current one).
        """
        self._need("arm", f"TLBI {op}")
        name = op.lower()
        shared = name.endswith("is") and name[:-2] in _TLBI
        base = name[:-2] if shared else name
        if base not in _TLBI:
            raise ConfigError(f"unknown TLBI operation {op!r} (known: {', '.join(_TLBI)} + IS)")
        if base in ("vae1", "vale1") and va is None:
            raise ConfigError(f"TLBI {op} needs a VA")
        asid = self.asid if asid is None else asid
        for mmu in self.peers if shared else [self]:
            mmu._tlbi_local(base, va, asid)

    def _tlbi_local(self, base: str, va: int | None, asid: int) -> None:
        if base == "vmalle1":
            self.tlb.drop()
        elif base == "aside1":
            self.tlb.drop(asid=asid, globals_=False)
        else:
            assert va is not None
            page = va & ~(self.mode.page_size - 1)
            self.tlb.drop(page, page + 1, asid=asid, walk_cache=base == "vae1")

    # --------------------------------------------------------------------- RISC-V
    def sfence_vma(self, va: int | None = None, asid: int | None = None) -> None:
        """SFENCE.VMA rs1, rs2: ``va=None`` is rs1=x0 and ``asid=None`` is rs2=x0."""
        self._need("riscv", "SFENCE.VMA")
        if va is None:
            self.tlb.drop(asid=asid, globals_=asid is None)
        else:
            self.tlb.drop(va, va + 1, asid=asid, globals_=asid is None, walk_cache=False)
