"""Range operations: map, unmap and protect a VA range, all or nothing, with one flush each.

One idea: each operation checks its arguments, then runs its visitor (:mod:`.mapping`,
:mod:`.editing`) down the tables twice with :func:`~pagewalk.space.descent.descend`: a plan
pass that only reads and counts the table frames needed, then, after every frame is allocated,
the write pass. A failure leaves the tables as they were. The result is one
:class:`~pagewalk.flush.Flush` naming what a TLB must drop (Intel SDM vol. 3A 4.10.4, Arm ARM
D8.13, RISC-V privileged spec SFENCE.VMA); a range must stay inside one half of the VA space
(one canonical half, Intel SDM vol. 3A ch. 4; one of the TTBR0/TTBR1 regions, Arm ARM D8.2;
one sign-extended half, RISC-V Sv39-Sv57).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from pagewalk.errors import MisalignedAddressError, PhysicalAddressTooWideError, hx
from pagewalk.flush import Flush
from pagewalk.formats.base import Half, MemType, Perm
from pagewalk.space.announce import Announcer
from pagewalk.space.descent import Span, descend
from pagewalk.space.editing import protect_visit, unmap_visit
from pagewalk.space.mapping import map_visit
from pagewalk.space.ownership import Ownership
from pagewalk.space.rangeop import RangeOp
from pagewalk.space.tables import Tables, table_base

DEFAULT_PERM = Perm.READ | Perm.WRITE


class Ranges:
    """The range operations of one space's tables."""

    def __init__(self, tables: Tables, own: Ownership, announce: Announcer) -> None:
        self.tables = tables
        self.own = own
        self.announce = announce
        #: every page size the mode has (a mode's settings never change after it is made)
        self.all_sizes = frozenset(tables.mode.leaf_sizes())

    def check_range(self, va: int, size: int) -> Half:
        """The half ``[va, va + size)`` lies in, if it is whole pages inside one half."""
        mode = self.tables.mode
        half = mode.check_virtual(va)
        step = mode.page_size
        if size <= 0 or size % step or va % step:
            raise MisalignedAddressError(
                f"range {hx(va)}+{hx(size)} is not whole {hx(step)}-byte pages"
            )
        end = va + size - 1
        if end >= 1 << 64 or mode.half_for(end) is not half:
            raise MisalignedAddressError(
                f"range {hx(va)}+{hx(size)} leaves {half.name}'s range "
                f"{hx(half.va_start)}-{hx(half.va_end - 1)}"
            )
        return half

    def _op(
        self,
        half: Half,
        name: str,
        perm: Perm = Perm.NONE,
        memtype: MemType | None = MemType.NORMAL,
        delta: int = 0,
        sizes: frozenset[int] = frozenset(),
    ) -> RangeOp:
        """A new operation on this space's tables."""
        tables, own, announce = self.tables, self.own, self.announce
        return RangeOp(tables, own, announce, half, name, True, perm, memtype, delta, sizes)

    def _run(
        self,
        op: RangeOp,
        visit: Callable[[RangeOp, Span], Iterator[Span]],
        root: int,
        va: int,
        size: int,
    ) -> None:
        """Plan, allocate every frame needed, write."""
        top = (root, 0, table_base(op.half), va, va + size)
        descend(partial(visit, op), top)
        op.pool = self.own.alloc_owned(op.needed)
        op.plan = False
        descend(partial(visit, op), top)

    def map_range(
        self,
        roots: tuple[int, ...],
        va: int,
        pa: int,
        size: int,
        perm: Perm,
        memtype: MemType,
        page_sizes: tuple[int, ...] | None,
    ) -> Flush:
        """Map ``[va, va + size)`` to ``[pa, pa + size)`` with the largest pages that fit."""
        mode = self.tables.mode
        half = self.check_range(va, size)
        if pa % mode.page_size:
            raise MisalignedAddressError(f"PA {hx(pa)} is not page aligned")
        try:
            mode.check_physical(pa + size - 1)
        except PhysicalAddressTooWideError:
            raise PhysicalAddressTooWideError(
                f"PA range {hx(pa)}-{hx(pa + size - 1)} is wider than the {mode.pa_bits} "
                f"bits mode {mode.name} can encode"
            ) from None
        sizes = frozenset(page_sizes) if page_sizes else self.all_sizes
        unknown = sizes - self.all_sizes
        if unknown:
            raise MisalignedAddressError(
                f"mode {mode.name} has no page size {', '.join(hx(s) for s in unknown)}"
            )
        op = self._op(half, "map_range", perm=perm, memtype=memtype, delta=pa - va, sizes=sizes)
        self._run(op, map_visit, roots[half.root], va, size)
        ranges = ((va, size), *op.widened)
        return self.announce.notify(Flush("map_range", ranges, new_only=not op.widened))

    def unmap_range(self, roots: tuple[int, ...], va: int, size: int) -> Flush:
        """Unmap everything in ``[va, va + size)``, splitting huge pages at the edges."""
        half = self.check_range(va, size)
        op = self._op(half, "unmap_range")
        self._run(op, unmap_visit, roots[half.root], va, size)
        for pa in op.pool:
            self.own.free(pa)
        flush = Flush("unmap_range", ((va, size),), tables_freed=op.tables_freed)
        flush.unmapped = op.unmapped
        return self.announce.notify(flush)

    def protect_range(
        self,
        roots: tuple[int, ...],
        va: int,
        size: int,
        perm: Perm,
        memtype: MemType | None,
    ) -> Flush:
        """Change permissions (and memory type, if given) of every page in the range."""
        mode = self.tables.mode
        half = self.check_range(va, size)
        for level in half.levels:
            if level.leaf_size:
                # Fails here, before any split, if the format cannot express perm or memtype.
                mode.encode_leaf(0, level, perm, memtype or MemType.NORMAL)
        op = self._op(half, "protect_range", perm=perm, memtype=memtype)
        self._run(op, protect_visit, roots[half.root], va, size)
        for pa in op.pool:
            self.own.free(pa)
        return self.announce.notify(Flush("protect_range", ((va, size), *op.widened)))
