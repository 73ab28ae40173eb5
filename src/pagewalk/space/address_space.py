"""AddressSpace: the builder that kernels use to change page tables, for every paging mode.

It maps, unmaps, protects and remaps pages and ranges in real tables held in simulated physical
memory, following the same structures the walker reads (Intel SDM vol. 3A ch. 4; Arm ARM D8;
RISC-V privileged spec, Sv32-Sv57). One idea: the public face, built by composition from the
parts that do the work, each its own module:

- :mod:`.tables`: entry I/O; :mod:`.descent`: the one descent over the tables;
- :mod:`.ownership`: which table frames the space allocated, owns and shares;
- :mod:`.ranges` (with :mod:`.mapping` and :mod:`.editing`): map, unmap and protect ranges with
  the largest pages that fit, all or nothing, splitting huge pages at the edges;
- :mod:`.clone`: clones that share or copy the kernel half, and the release of shared tables;
- :mod:`.announce`: the flushes listeners hear, and break-before-make (Arm ARM D8.16.1).

Policies: a new table entry allows at least what its leaves need (so effective permissions
equal the leaf's); every operation checks and allocates before it writes, so a failure leaves
the tables as they were; every change returns a :class:`~pagewalk.flush.Flush`; the space frees
only table frames it allocated, never tables it shares with another space.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

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
from pagewalk.space.announce import Announcer
from pagewalk.space.clone import Cloner, kernel_indices
from pagewalk.space.ownership import Ownership
from pagewalk.space.ranges import DEFAULT_PERM, Ranges
from pagewalk.space.tables import Tables, root_ids
from pagewalk.walk import Walk, translate, walk


class AddressSpace:
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
        self.mode = mode
        self.mem = mem
        self.destroyed = False
        #: the space this one shares kernel tables with, and which root entries (set by clone)
        self.lender: tuple[AddressSpace, list[tuple[int, int]]] | None = None
        self._tables = Tables(mode, mem)
        self._own = Ownership(self._tables, frames)
        self._announce = Announcer(self, self._tables)
        self._ranges = Ranges(self._tables, self._own, self._announce)
        self._cloner = Cloner(self._tables, self._own)
        self.roots: tuple[int, ...]
        if roots is None:
            n = len(root_ids(mode))
            self.roots = tuple(self._own.alloc_owned(n, n_roots=n))
        else:
            for r in roots:
                if r < 0 or r >> mode.root_bits:
                    raise PhysicalAddressTooWideError(
                        f"root table PA {hx(r)} does not fit the {mode.root_bits}-bit root "
                        f"register of mode {mode.name}"
                    )
            self.roots = tuple(roots)
            self._own.owned = set(self.table_frames()) if owned is None else set(owned)

    # ------------------------------------------------------------------ the parts' state
    @property
    def frames(self) -> FrameAllocator:
        """Where table frames come from and go back to."""
        return self._own.allocator

    @property
    def owned(self) -> set[int]:
        """The table frames this space may free."""
        return self._own.owned

    @property
    def shared(self) -> Counter[tuple[int, int]]:
        """Root entries ``(register, index)`` or whole roots ``(register, -1)`` shared with
        clones, with how many clones share each (a ``Counter``)."""
        return self._own.shared

    @property
    def table_bytes(self) -> int:
        """Bytes a table frame takes: 4 KiB, or one Arm granule."""
        return self._tables.table_bytes

    @property
    def id(self) -> int:
        """The identity of this space, which every flush it returns carries."""
        return self._announce.id

    @property
    def listeners(self) -> list[Callable[[Any, Flush], None]]:
        """Called as ``listener(space, flush)`` after every change."""
        return self._announce.listeners

    @property
    def bbm(self) -> Callable[[Flush], None] | None:
        """Break-before-make (Arm ARM D8.16.1): when set, a change that replaces a valid entry
        by one with another output address, block size or memory type makes the entries
        invalid, announces it, calls this with a Flush for their span (the kernel's TLBI and
        DSB), and only then writes the new entries. None writes straight over."""
        return self._announce.bbm

    @bbm.setter
    def bbm(self, value: Callable[[Flush], None] | None) -> None:
        self._announce.bbm = value

    def _alive(self) -> None:
        if self.destroyed:
            raise PagingError(f"address space {self.id} was destroyed")

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
        with self._announce.named("map"):
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
        with self._announce.named("protect"):
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
        esize = self._tables.esize
        self._announce.brk(table, (entry_pa - table) // esize, 1, va, level.leaf_size)
        self._tables.write(entry_pa, new_raw)
        old_pa = self.mode.decode(raw, level).address
        flush = Flush("remap", ((va, level.leaf_size),))
        flush.unmapped.append((va, old_pa, level.leaf_size))
        return self._announce.notify(flush)

    def unmap(self, va: int, page_size: int | None = None) -> Flush:
        """Unmap the page at ``va``: the whole leaf, or ``page_size`` bytes of a huge page."""
        self._alive()
        level, _entry_pa, _raw = self._leaf_at(va)
        size = level.leaf_size if page_size is None else page_size
        if va % size:
            raise MisalignedAddressError(
                f"VA {hx(va)} is not the start of a {hx(size)}-byte page; use unmap_range"
            )
        with self._announce.named("unmap"):
            flush = self.unmap_range(va, size)
        return flush

    # ------------------------------------------------------------------------ ranges
    def map_range(
        self,
        va: int,
        pa: int,
        size: int,
        perm: Perm = DEFAULT_PERM,
        memtype: MemType = MemType.NORMAL,
        *,
        page_sizes: tuple[int, ...] | None = None,
    ) -> Flush:
        """Map ``[va, va + size)`` to ``[pa, pa + size)`` with the largest pages that fit.

        Args:
            page_sizes: the page sizes allowed (default: every size the mode has).

        Raises:
            AlreadyMappedError or HugePageConflictError if any part is mapped (nothing changes),
            MisalignedAddressError, PhysicalAddressTooWideError, OutOfMemoryError.
        """
        self._alive()
        return self._ranges.map_range(self.roots, va, pa, size, perm, memtype, page_sizes)

    def unmap_range(self, va: int, size: int) -> Flush:
        """Unmap everything in ``[va, va + size)``, splitting huge pages at the edges.

        Holes are allowed. Tables left empty are freed. ``Flush.unmapped`` lists the runs.
        """
        self._alive()
        return self._ranges.unmap_range(self.roots, va, size)

    def protect_range(
        self, va: int, size: int, perm: Perm, memtype: MemType | None = None
    ) -> Flush:
        """Change permissions (and memory type, if given) of every page in the range.

        Raises:
            NotMappedError naming the first hole (nothing changes).
        """
        self._alive()
        return self._ranges.protect_range(self.roots, va, size, perm, memtype)

    # ------------------------------------------------------------------------ queries
    def walk(self, va: int) -> Walk:
        """The full walk record of ``va``."""
        return walk(self.mem, self.mode, self.roots, va)

    def translate(self, va: int) -> int | None:
        """The PA ``va`` maps to, or None."""
        return translate(self.mem, self.mode, self.roots, va)[0]

    def table_frames(self) -> list[int]:
        """Every table frame reachable from the roots (each once; loops are cut)."""
        return self._cloner.table_frames(self.roots)

    def kernel_indices(self) -> range:
        """Root-table indices that form the kernel half (the upper half of the root table).

        Where one root register serves the kernel half by itself (AArch64's TTBR1,
        ``mode.facts.kernel_root``), the kernel half is that whole root instead.
        """
        return kernel_indices(self.mode)

    # ---------------------------------------------------------------------- lifecycle
    def clone(self, share_kernel: bool = True, user: bool = True) -> AddressSpace:
        """A new space: the kernel half shared (or copied), the user half copied (or empty).

        Sharing means the new root points to the very same kernel tables (the x86-64 upper
        half, AArch64's TTBR1 root, the upper half of the root elsewhere); the new space does
        not own them. Copying duplicates every table (leaves still point to the same frames).
        All table frames are allocated before anything is written.
        """
        self._alive()
        roots, owned, keys = self._cloner.clone(self.roots, share_kernel, user)
        child = AddressSpace(self.mode, self.mem, self.frames, roots=roots, owned=owned)
        child.bbm = self.bbm
        child.lender = (self, keys)
        return child

    def install(self, cpu: object, asid: int = 0) -> None:
        """Load the roots into ``cpu`` (CR3, TTBR0/TTBR1_EL1 or satp), with an ASID/PCID."""
        self._alive()
        load = getattr(cpu, "load_roots", None)
        if load is None:
            raise PagingError(f"{cpu!r} has no load_roots(); pass a pagewalk.mmu.CPU")
        load(self.mode, self.roots, asid)

    def destroy(self) -> Flush:
        """Return every table frame this space owns; the space is unusable afterwards.

        Raises:
            PagingError: clones still share this space's tables (freeing them would leave
                the clones pointing at frames handed out again); nothing is changed.
        """
        self._alive()
        if self._own.shared:
            clones = max(self._own.shared.values())
            raise PagingError(
                f"{self!r} shares {len(self._own.shared)} root entr"
                f"{'y' if len(self._own.shared) == 1 else 'ies'} with {clones} live clone"
                f"{'' if clones == 1 else 's'}: destroy the clones first"
            )
        self._own.free_all()
        self.destroyed = True
        flush = Flush("destroy", everything=True, tables_freed=True)
        if self.lender is not None:
            lender, keys = self.lender
            self.lender = None
            flush = flush | lender._cloner.release(lender.roots, keys)
            flush.operation = "destroy"
        return self._announce.notify(flush)

    def __repr__(self) -> str:
        roots = ", ".join(
            f"{n}={hx(r)}" for n, r in zip(self.mode.root_names, self.roots, strict=False)
        )
        return f"AddressSpace({self.mode.name}, {roots}, {len(self.owned)} tables)"
