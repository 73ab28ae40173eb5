"""AddressSpace: the builder that kernels use to change page tables, for every paging mode.

It maps, unmaps, protects and remaps pages and ranges in real tables held in simulated physical
memory, following the same structures the walker reads (Intel SDM vol. 3A ch. 4; Arm ARM D8;
RISC-V privileged spec, Sv32-Sv57). Policies:

- **Parent flags**: a new table entry allows at least what its leaves need, and an existing one
  is widened when a leaf needs more (x86 sets R/W and U/S; Arm clears APTable/XNTable bits). So
  the leaf decides, and effective permissions equal the leaf's.
- **All or nothing**: every operation first checks for conflicts and allocates every table frame
  it may need; only then does it write. A failure leaves the tables as they were.
- **Ranges** descend once per table and write runs of entries with one numpy operation; they use
  the largest page that fits each step's alignment and the remaining size.
- **Flushes**: every change returns a :class:`~pagewalk.flush.Flush` naming what a TLB must drop.
- **Break-before-make** (Arm ARM D8.16.1): with ``space.bbm`` set (AArch64 kernels set it to
  their flush), a change that Arm forbids over a live entry (remap, block split, memory type)
  goes invalid, flush, new entry.
- **Ownership**: the space frees only table frames it allocated; tables shared with another
  space (a kernel half after ``clone``) are never freed by it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pagewalk.alloc.base import FRAME_SIZE, FrameAllocator
from pagewalk.errors import (
    MisalignedAddressError,
    NotMappedError,
    PagingError,
    PhysicalAddressTooWideError,
    hx,
)
from pagewalk.flush import Flush
from pagewalk.formats.base import Level, MemType, PagingMode, Perm
from pagewalk.memory.physical import PhysicalMemory
from pagewalk.space_clone import SharingEditor
from pagewalk.space_ops import DEFAULT_PERM
from pagewalk.walk import Walk, translate, walk


class AddressSpace(SharingEditor):
    """One set of page tables (one root per root register of the mode).

    Args:
        mode: the configured paging mode.
        mem: the physical memory the tables live in.
        frames: where table frames come from and go back to.
        roots: existing root table PAs (to adopt tables); new empty roots are made if None.
        owned: the table frames this space may free (default when adopting: every table
            reachable from ``roots``).
    """

    def __init__(
        self,
        mode: PagingMode,
        mem: PhysicalMemory,
        frames: FrameAllocator,
        *,
        roots: Sequence[int] | None = None,
        owned: set[int] | None = None,
    ) -> None:
        self._setup(mode, mem, frames)
        if roots is None:
            n = len(self._root_ids())
            self.roots = tuple(self._alloc_tables(n, n_roots=n))
        else:
            for r in roots:
                if r < 0 or r >> mode.root_bits:
                    raise PhysicalAddressTooWideError(
                        f"root table PA {hx(r)} does not fit the {mode.root_bits}-bit root "
                        f"register of mode {mode.name}"
                    )
            self.roots = tuple(roots)
            self.owned = set(self.table_frames()) if owned is None else set(owned)

    # ---------------------------------------------------------------------- one page
    def map(
        self,
        va: int,
        pa: int,
        page_size: int = FRAME_SIZE,
        perm: Perm = DEFAULT_PERM,
        memtype: MemType = MemType.NORMAL,
    ) -> Flush:
        """Map one page of ``page_size`` bytes at ``va`` to ``pa``.

        Raises:
            NonCanonicalAddressError, MisalignedAddressError, PhysicalAddressTooWideError,
            AlreadyMappedError, HugePageConflictError, OutOfMemoryError: and nothing changes.
        """
        self._alive()
        half = self.mode.check_virtual(va)
        if not any(lv.leaf_size == page_size for lv in half.levels):
            sizes = ", ".join(hx(s) for s in self.mode.leaf_sizes())
            raise MisalignedAddressError(
                f"mode {self.mode.name} has no {hx(page_size)}-byte page (sizes: {sizes})"
            )
        if va % page_size:
            raise MisalignedAddressError(f"VA {hx(va)} is not aligned to {hx(page_size)}")
        if pa % page_size:
            raise MisalignedAddressError(
                f"PA {hx(pa)} is not aligned to {hx(page_size)} (mapping VA {hx(va)})"
            )
        with self._named("map"):
            flush = self.map_range(va, pa, page_size, perm, memtype, page_sizes=(page_size,))
        return flush

    def _leaf_at(self, va: int) -> tuple[Level, int, int]:
        """The leaf that maps ``va``: (level, entry PA, raw), or raise NotMappedError."""
        result = self.walk(va)
        leaf = result.leaf
        if leaf is None:
            reason = result.fault.reason if result.fault else "no leaf"
            raise NotMappedError(f"VA {hx(va)} is not mapped ({reason})", va=va)
        step = result.steps[-1]
        return step.level, step.entry_pa, step.entry.raw

    def protect(self, va: int, perm: Perm, memtype: MemType | None = None) -> Flush:
        """Change the permissions (and memory type) of the page that starts at ``va``."""
        self._alive()
        level, _entry_pa, _raw = self._leaf_at(va)
        if va % level.leaf_size:
            raise MisalignedAddressError(
                f"VA {hx(va)} is inside a {hx(level.leaf_size)}-byte page; use protect_range"
            )
        with self._named("protect"):
            flush = self.protect_range(va, level.leaf_size, perm, memtype)
        return flush

    def remap(self, va: int, new_pa: int) -> Flush:
        """Point the page that starts at ``va`` to ``new_pa``, keeping its attributes."""
        self._alive()
        level, entry_pa, raw = self._leaf_at(va)
        if va % level.leaf_size:
            raise MisalignedAddressError(
                f"VA {hx(va)} is inside a {hx(level.leaf_size)}-byte page at {level.name}"
            )
        new_raw = self.mode.resize_leaf(raw, level, level, new_pa)
        table = entry_pa - entry_pa % FRAME_SIZE
        self._break(table, (entry_pa - table) // self._esize, 1, va, level.leaf_size)
        self._write(entry_pa, new_raw)
        old_pa = self.mode.decode(raw, level).address
        flush = Flush("remap", ((va, level.leaf_size),))
        flush.unmapped.append((va, old_pa, level.leaf_size))
        return self._notify(flush)

    def unmap(self, va: int, page_size: int | None = None) -> Flush:
        """Unmap the page at ``va``: the whole leaf, or ``page_size`` bytes of a huge page."""
        self._alive()
        level, _entry_pa, _raw = self._leaf_at(va)
        size = level.leaf_size if page_size is None else page_size
        if va % size:
            raise MisalignedAddressError(
                f"VA {hx(va)} is not the start of a {hx(size)}-byte page; use unmap_range"
            )
        with self._named("unmap"):
            flush = self.unmap_range(va, size)
        return flush

    # ------------------------------------------------------------------------ queries
    def walk(self, va: int) -> Walk:
        """The full walk record of ``va``."""
        return walk(self.mem, self.mode, self.roots, va)

    def translate(self, va: int) -> int | None:
        """The PA ``va`` maps to, or None."""
        return translate(self.mem, self.mode, self.roots, va)[0]

    def table_frames(self) -> list[int]:
        """Every table frame reachable from the roots (each once; loops are cut)."""
        seen: set[int] = set()
        for r in self._root_ids():
            for _ in self._subtree(self.roots[r], self._root_half(r), 0, seen):
                pass
        return sorted(seen)

    # ---------------------------------------------------------------------- lifecycle
    def install(self, cpu: object, asid: int = 0) -> None:
        """Load the roots into ``cpu`` (CR3, TTBR0/TTBR1_EL1 or satp), with an ASID/PCID."""
        self._alive()
        load = getattr(cpu, "load_roots", None)
        if load is None:
            raise PagingError(f"{cpu!r} has no load_roots(); pass a pagewalk.mmu.CPU")
        load(self.mode, self.roots, asid)

    def destroy(self) -> Flush:
        """Return every table frame this space owns; the space is unusable afterwards."""
        self._alive()
        for pa in sorted(self.owned):
            self.frames.free(pa, self.table_bytes // FRAME_SIZE)
        self.owned.clear()
        self.destroyed = True
        flush = Flush("destroy", everything=True, tables_freed=True)
        if self.lender is not None:
            lender, keys = self.lender
            self.lender = None
            flush = flush | lender._release_shares(keys)
            flush.operation = "destroy"
        return self._notify(flush)

    def __repr__(self) -> str:
        roots = ", ".join(
            f"{n}={hx(r)}" for n, r in zip(self.mode.root_names, self.roots, strict=False)
        )
        return f"AddressSpace({self.mode.name}, {roots}, {len(self.owned)} tables)"
