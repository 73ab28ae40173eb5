"""Range operations on page tables: map, unmap and protect ranges (clone is in space_clone).

Each operation descends once per table (never once per page) and writes runs of entries with one
numpy operation, following the table structures of Intel SDM vol. 3A ch. 4, Arm ARM D8 and the
RISC-V privileged spec. Each runs twice: a *plan* pass that only reads (finding conflicts, holes,
broken entries, and counting the table frames needed), then, after every frame is allocated, a
*write* pass. So an operation either completes or changes nothing.

Huge pages that a range only partly covers are split: the leaf is replaced by a table of leaves
one level down with the same attributes (``PagingMode.resize_leaf``), then the range continues in
that table. Tables left empty by an unmap are freed (when this space owns them).
"""

from __future__ import annotations

import contextlib
import itertools
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pagewalk.alloc.base import FRAME_SIZE, FrameAllocator
from pagewalk.errors import (
    AlreadyMappedError,
    EntryFormatError,
    HugePageConflictError,
    MisalignedAddressError,
    NotMappedError,
    OutOfMemoryError,
    PagingError,
    PhysicalAddressTooWideError,
    hx,
)
from pagewalk.flush import Flush
from pagewalk.formats.base import Entry, EntryKind, Half, Level, MemType, PagingMode, Perm, U64Array
from pagewalk.memory.physical import PhysicalMemory

if TYPE_CHECKING:
    from pagewalk.space_clone import SharingEditor

DEFAULT_PERM = Perm.READ | Perm.WRITE
_ids = itertools.count(1)
_TABLE_LIMITS: weakref.WeakKeyDictionary[PagingMode, int] = weakref.WeakKeyDictionary()


def table_limit(mode: PagingMode) -> int:
    """The PA below which a table can be pointed to from every level that points to tables.

    Found once per mode with the codec's own ``encode_table`` (a binary search on the width), so
    it is the codec's rule: 4 GiB for 32-bit x86's 32-bit PDEs, MAXPHYADDR elsewhere.
    """
    if mode in _TABLE_LIMITS:
        return _TABLE_LIMITS[mode]
    size = max(FRAME_SIZE, mode.page_size)
    limit = 1 << 64
    for half in mode.halves:
        for level in half.levels[:-1]:
            lo, hi = size.bit_length() - 1, 64  # the widest 2**b whose last frame encodes
            while lo < hi:
                mid = (lo + hi + 1) // 2
                try:
                    mode.encode_table((1 << mid) - size, level, Perm.NONE)
                    lo = mid
                except PagingError:
                    hi = mid - 1
            limit = min(limit, 1 << lo)
    _TABLE_LIMITS[mode] = limit
    return limit


@dataclass
class _Ctx:
    """The state of one range operation."""

    half: Half
    op: str
    plan: bool = True
    perm: Perm = Perm.NONE
    memtype: MemType | None = MemType.NORMAL
    delta: int = 0
    sizes: frozenset[int] = frozenset()
    needed: int = 0
    pool: list[int] = field(default_factory=list)
    widened: list[tuple[int, int]] = field(default_factory=list)
    unmapped: list[tuple[int, int, int]] = field(default_factory=list)
    tables_freed: bool = False
    #: inside a subtree shared with a clone: its tables are never freed
    keep_tables: bool = False


class TableEditor:
    """The table-editing machinery under :class:`~pagewalk.space.AddressSpace`."""

    mode: PagingMode
    mem: PhysicalMemory
    frames: FrameAllocator
    roots: tuple[int, ...]
    owned: set[int]
    destroyed: bool
    listeners: list[Callable[[Any, Flush], None]]
    bbm: Callable[[Flush], None] | None

    def _setup(self, mode: PagingMode, mem: PhysicalMemory, frames: FrameAllocator) -> None:
        self.mode = mode
        self.mem = mem
        self.frames = frames
        self.id = next(_ids)
        self.listeners = []
        #: the name listeners see while a one-page call (map, protect, unmap) runs a range call
        self._operation: str | None = None
        #: break-before-make (Arm ARM D8.16.1): when set, a change that replaces one valid entry
        #: by another with a different output address, block size or memory type is made in
        #: three steps: the entries are made invalid, the listeners hear of it and this is
        #: called with a Flush for their span (the kernel's TLBI and DSB), and only then are the
        #: new entries written. AArch64 kernels set it to their flush; None writes straight over
        self.bbm = None
        self.destroyed = False
        self.owned = set()
        #: root entries (root register, index) or whole roots (register, -1) shared by clones,
        #: with how many clones share them: tables below are not freed while a clone points there
        self.shared: Counter[tuple[int, int]] = Counter()
        #: the space this one shares kernel tables with, and which entries (set by clone)
        self.lender: tuple[SharingEditor, list[tuple[int, int]]] | None = None
        self._esize = mode.entry_size

    # ------------------------------------------------------------------- table frames
    @property
    def table_bytes(self) -> int:
        """Bytes a table frame takes: 4 KiB, or one Arm granule."""
        return max(FRAME_SIZE, self.mode.page_size)

    def _alloc_frames(self, n: int, n_roots: int = 0) -> list[int]:
        """Allocate and zero ``n`` table frames, all or nothing (not yet owned).

        The first ``n_roots`` (the lowest) are for root tables. Every frame must lie where the
        mode can point to it: below :func:`table_limit`, and a root below what the root register
        holds (32 bits for 32-bit x86 and PAE's CR3, SDM vol. 3A 4.3, 4.4.1).
        """
        size = self.table_bytes
        got: list[int] = []
        try:
            for _ in range(n):
                got.append(self.frames.allocate(size // FRAME_SIZE, size))
        except OutOfMemoryError as exc:
            self._give_back(got)
            raise OutOfMemoryError(
                f"out of frames: needed {n} table frame(s), got {len(got)}; nothing changed ({exc})"
            ) from None
        if n_roots:  # the lowest frames become the roots; the rest keep the allocator's order
            low = sorted(got)[:n_roots]
            lows = set(low)
            got = low + [pa for pa in got if pa not in lows]
        tables = table_limit(self.mode)
        for i, pa in enumerate(got):
            limit, what = tables, "table"
            if i < n_roots:
                limit, what = min(limit, 1 << self.mode.root_bits), "root table"
            if pa + size > limit:
                self._give_back(got)
                raise PhysicalAddressTooWideError(
                    f"the frame allocator gave PA {hx(pa)} for a {what}, but mode "
                    f"{self.mode.name} can only point to tables below {hx(limit)}; nothing "
                    "changed (give the space an allocator whose frames lie lower)"
                )
        ordered = sorted(got)
        start = 0
        for j in range(1, len(ordered) + 1):  # zero each run of adjacent frames at once
            if j == len(ordered) or ordered[j] != ordered[j - 1] + size:
                self.mem.zero(ordered[start], ordered[j - 1] + size - ordered[start])
                start = j
        return got

    def _give_back(self, frames: list[int]) -> None:
        for pa in frames:
            self.frames.free(pa, self.table_bytes // FRAME_SIZE)

    def _alloc_tables(self, n: int, n_roots: int = 0) -> list[int]:
        got = self._alloc_frames(n, n_roots)
        self.owned.update(got)
        return got

    def _free_table(self, pa: int) -> bool:
        if pa not in self.owned:
            return False
        self.owned.discard(pa)
        self.frames.free(pa, self.table_bytes // FRAME_SIZE)
        return True

    # ------------------------------------------------------------------------ helpers
    def _alive(self) -> None:
        if self.destroyed:
            raise PagingError(f"address space {self.id} was destroyed")

    def _read(self, pa: int) -> int:
        return self.mem.read_entry(pa, self._esize)

    @contextlib.contextmanager
    def _named(self, operation: str) -> Iterator[None]:
        """Announce the range call made inside as ``operation``."""
        self._operation = operation
        try:
            yield
        finally:
            self._operation = None

    def _write(self, pa: int, raw: int) -> None:
        self.mem.write_entry(pa, self._esize, raw)

    def _break(self, table: int, i0: int, n: int, va: int, size: int) -> None:
        """The *break* of break-before-make, if :attr:`bbm` is set: make entries ``i0`` to
        ``i0 + n`` of ``table`` (which map ``[va, va + size)``) invalid, announce it, and have
        the TLBs invalidated before the caller writes the new entries."""
        if self.bbm is None:
            return
        self.mem.write_table(table + i0 * self._esize, np.zeros(n, np.uint64), self._esize)
        flush = self._notify(Flush("break-before-make", ((va, size),)))
        self.bbm(flush)

    def _slice(self, table: int, i0: int, n: int) -> U64Array:
        return self.mem.read_table(table + i0 * self._esize, n, self._esize)

    def _notify(self, flush: Flush) -> Flush:
        flush.space_id = self.id
        if self._operation is not None and flush.operation != "break-before-make":
            flush.operation = self._operation  # the one-page call that ran this range call
        for listener in self.listeners:
            listener(self, flush)
        return flush

    def _check_range(self, va: int, size: int) -> Half:
        half = self.mode.check_virtual(va)
        step = self.mode.page_size
        if size <= 0 or size % step or va % step:
            raise MisalignedAddressError(
                f"range {hx(va)}+{hx(size)} is not whole {hx(step)}-byte pages"
            )
        end = va + size - 1
        if end >= 1 << 64 or self.mode.half_for(end) is not half:
            raise MisalignedAddressError(
                f"range {hx(va)}+{hx(size)} leaves {half.name}'s range "
                f"{hx(half.va_start)}-{hx(half.va_end - 1)}"
            )
        return half

    @staticmethod
    def _table_base(half: Half) -> int:
        """The VA of entry 0 of ``half``'s root table."""
        top = half.levels[0]
        return half.va_start & ~((1 << (top.shift + top.bits)) - 1)

    def _broken(self, level: Level, entry_pa: int, raw: int, reason: str) -> EntryFormatError:
        return EntryFormatError(
            f"{level.name} entry {hx(raw)} at PA {hx(entry_pa)} is broken: {reason}"
        )

    def _retarget(self, raw: int, level: Level, old: int, new: int) -> int:
        """A table entry ``raw`` pointing to ``new`` instead of ``old``, flags kept."""
        zero = self.mode.encode_table(0, level, Perm.NONE)
        old_bits = self.mode.encode_table(old, level, Perm.NONE) ^ zero
        new_bits = self.mode.encode_table(new, level, Perm.NONE) ^ zero
        return raw ^ old_bits ^ new_bits

    def _leaf_run(
        self, level: Level, pa0: int, n: int, make: Callable[[int], int]
    ) -> U64Array | list[int]:
        """``n`` leaves for ``pa0, pa0 + span, ...`` using one numpy op when linear."""
        span = level.leaf_size
        first = make(pa0)
        if n == 1:
            return [first]
        last = make(pa0 + (n - 1) * span)
        step = make(pa0 + span) - first
        if step > 0 and first + (n - 1) * step == last:
            return np.uint64(first) + np.arange(n, dtype=np.uint64) * np.uint64(step)
        return [make(pa0 + j * span) for j in range(n)]

    # -------------------------------------------------------------------- map_range
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
        half = self._check_range(va, size)
        if pa % self.mode.page_size:
            raise MisalignedAddressError(f"PA {hx(pa)} is not page aligned")
        try:
            self.mode.check_physical(pa + size - 1)
        except PhysicalAddressTooWideError:
            raise PhysicalAddressTooWideError(
                f"PA range {hx(pa)}-{hx(pa + size - 1)} is wider than the {self.mode.pa_bits} "
                f"bits mode {self.mode.name} can encode"
            ) from None
        sizes = frozenset(page_sizes or self.mode.leaf_sizes())
        unknown = sizes - set(self.mode.leaf_sizes())
        if unknown:
            raise MisalignedAddressError(
                f"mode {self.mode.name} has no page size {', '.join(hx(s) for s in unknown)}"
            )
        ctx = _Ctx(half, "map_range", True, perm, memtype, pa - va, sizes)
        root, base = self.roots[half.root], self._table_base(half)
        self._map_rec(ctx, root, 0, base, va, va + size)
        ctx.pool = self._alloc_tables(ctx.needed)
        ctx.plan = False
        self._map_rec(ctx, root, 0, base, va, va + size)
        ranges = ((va, size), *ctx.widened)
        return self._notify(Flush("map_range", ranges, new_only=not ctx.widened))

    def _map_rec(self, ctx: _Ctx, table: int | None, li: int, tbase: int, lo: int, hi: int) -> None:
        level = ctx.half.levels[li]
        shift, span = level.shift, level.span
        i0, i1 = (lo - tbase) >> shift, (hi - 1 - tbase) >> shift
        raws = self._slice(table, i0, i1 - i0 + 1) if table is not None else None
        i = i0
        while i <= i1:
            e_lo = tbase + (i << shift)
            s_lo, s_hi = max(lo, e_lo), min(hi, e_lo + span)
            full = s_lo == e_lo and s_hi == e_lo + span
            if full and level.leaf_size in ctx.sizes and (e_lo + ctx.delta) % span == 0:
                k = i1 if hi >= tbase + ((i1 + 1) << shift) else i1 - 1
                if raws is not None:
                    hits = np.flatnonzero(raws[i - i0 : k - i0 + 1] & np.uint64(1))
                    if hits.size:
                        j = i + int(hits[0])
                        self._refuse(tbase + (j << shift), level, table, j, int(raws[j - i0]))
                if ctx.plan:
                    # Encode the run's first and last leaf now, so a permission, memory type or
                    # PA the format cannot hold fails before anything is allocated or written.
                    for pa in (e_lo + ctx.delta, e_lo + ctx.delta + (k - i) * span):
                        self.mode.encode_leaf(pa, level, ctx.perm, ctx.memtype or MemType.NORMAL)
                if not ctx.plan and table is not None:
                    self._write_leaves(ctx, table, level, i, k - i + 1, e_lo + ctx.delta)
                i = k + 1
                continue
            if li == len(ctx.half.levels) - 1:
                raise MisalignedAddressError(
                    f"cannot map {hx(s_lo)}-{hx(s_hi - 1)} with page sizes "
                    f"{', '.join(hx(s) for s in sorted(ctx.sizes))}"
                )
            last = len(ctx.half.levels) - 1
            if li == last - 1 and full and ctx.half.levels[last].leaf_size in ctx.sizes:
                k = self._fresh_run(raws, i, i0, i1, hi - tbase, shift)
                if k >= i:
                    self._fill_leaf_tables(ctx, table, li, i, k, e_lo)
                    i = k + 1
                    continue
            raw = int(raws[i - i0]) if raws is not None else 0
            child = self._map_child(ctx, table, level, i, raw, s_lo)
            self._map_rec(ctx, child, li + 1, e_lo, s_lo, s_hi)
            if not ctx.plan and not raw & 1 and table is not None and child is not None:
                self._write(table + i * self._esize, self.mode.encode_table(child, level, ctx.perm))
            i += 1

    @staticmethod
    def _fresh_run(raws: U64Array | None, i: int, i0: int, i1: int, hi: int, shift: int) -> int:
        """The last index of the run from ``i`` of fully covered, still invalid entries.

        ``hi`` is the request's end relative to the table's base. Returns ``i - 1`` if none.
        """
        k = i1 if hi >= (i1 + 1) << shift else i1 - 1
        if raws is None or k < i:
            return k
        hits = np.flatnonzero(raws[i - i0 : k - i0 + 1] & np.uint64(1))
        return k if not hits.size else i + int(hits[0]) - 1

    def _fill_leaf_tables(
        self, ctx: _Ctx, table: int | None, li: int, i: int, k: int, e_lo: int
    ) -> None:
        """New leaf tables for entries ``i..k``, all their leaves made by one numpy operation."""
        level, child = ctx.half.levels[li], ctx.half.levels[li + 1]
        n, pa0 = k - i + 1, e_lo + ctx.delta
        memtype = ctx.memtype or MemType.NORMAL
        if ctx.plan:
            ctx.needed += n
            for pa in (pa0, pa0 + n * level.span - child.leaf_size):
                self.mode.encode_leaf(pa, child, ctx.perm, memtype)  # fail before writing
            return
        assert table is not None
        tables = sorted(ctx.pool.pop() for _ in range(n))  # ascending: often one contiguous run

        def make(pa: int) -> int:
            return self.mode.encode_leaf(pa, child, ctx.perm, memtype)

        leaves = np.asarray(self._leaf_run(child, pa0, n * child.entries, make), dtype=np.uint64)
        step = self.table_bytes
        if tables[-1] - tables[0] == (n - 1) * step and child.entries * self._esize == step:
            self.mem.write_table(tables[0], leaves, self._esize)  # all the tables in one write
        else:
            for c, new in enumerate(tables):
                part = leaves[c * child.entries : (c + 1) * child.entries]
                self.mem.write_table(new, part, self._esize)
        parents = self._table_run(level, tables, ctx.perm)
        self.mem.write_table(table + i * self._esize, parents, self._esize)

    def _table_run(self, level: Level, tables: list[int], perm: Perm) -> U64Array | list[int]:
        """Table entries pointing to ``tables``: one numpy operation when evenly spaced."""
        n = len(tables)
        first = self.mode.encode_table(tables[0], level, perm)
        if n > 2 and tables[-1] - tables[0] == (n - 1) * (tables[1] - tables[0]):
            step = self.mode.encode_table(tables[1], level, perm) - first
            if step > 0 and first + (n - 1) * step == self.mode.encode_table(
                tables[-1], level, perm
            ):
                return np.uint64(first) + np.arange(n, dtype=np.uint64) * np.uint64(step)
        return [self.mode.encode_table(t, level, perm) for t in tables]

    def _map_child(
        self, ctx: _Ctx, table: int | None, level: Level, i: int, raw: int, s_lo: int
    ) -> int | None:
        """The child table under entry ``i`` (existing, widened, or new from the pool).

        ``s_lo`` is the first VA of the request under this entry, which errors name.
        """
        if raw & 1:
            assert table is not None
            entry = self.mode.decode(raw, level)
            e_lo = s_lo - s_lo % level.span
            if entry.kind is EntryKind.LEAF:
                raise HugePageConflictError(
                    f"VA {hx(s_lo)} lies in a {hx(level.leaf_size)}-byte page at {level.name} "
                    f"(VA {hx(e_lo)}, entry {hx(raw)} at PA {hx(table + i * self._esize)})",
                    va=s_lo,
                    level=level.number,
                    existing_entry=raw,
                )
            if entry.fault is not None:
                raise self._broken(level, table + i * self._esize, raw, entry.reason)
            if not ctx.plan:
                wider = self.mode.widen_table(raw, level, ctx.perm)
                if wider != raw:
                    self._write(table + i * self._esize, wider)
                    ctx.widened.append((e_lo, level.span))
            return entry.address
        if ctx.plan:
            ctx.needed += 1
            return None
        return ctx.pool.pop()

    def _refuse(self, va: int, level: Level, table: int | None, i: int, raw: int) -> None:
        entry_pa = (table or 0) + i * self._esize
        entry = self.mode.decode(raw, level)
        if entry.kind is EntryKind.TABLE:
            raise HugePageConflictError(
                f"a {level.name} table stands at VA {hx(va)} where a {hx(level.leaf_size)}-byte "
                f"page was asked (entry {hx(raw)} at PA {hx(entry_pa)})",
                va=va,
                level=level.number,
                existing_entry=raw,
            )
        raise AlreadyMappedError(
            f"VA {hx(va)} is already mapped at {level.name} (entry {hx(raw)} at PA {hx(entry_pa)})",
            va=va,
            existing_entry=raw,
            level=level.number,
        )

    def _write_leaves(self, ctx: _Ctx, table: int, level: Level, i: int, n: int, pa0: int) -> None:
        memtype = ctx.memtype or MemType.NORMAL

        def make(pa: int) -> int:
            return self.mode.encode_leaf(pa, level, ctx.perm, memtype)

        self.mem.write_table(
            table + i * self._esize, self._leaf_run(level, pa0, n, make), self._esize
        )

    # ------------------------------------------------------------------- splitting
    def _split(self, ctx: _Ctx, table: int, level: Level, i: int, raw: int, va: int) -> int:
        """Replace the leaf ``raw`` at entry ``i`` (mapping ``va``) by a table of smaller
        leaves that map the same; return it. The new table is filled before it is linked."""
        child_level = ctx.half.levels[ctx.half.levels.index(level) + 1]
        entry = self.mode.decode(raw, level)
        child = ctx.pool.pop()

        def make(pa: int) -> int:
            return self.mode.resize_leaf(raw, level, child_level, pa)

        run = self._leaf_run(child_level, entry.address, child_level.entries, make)
        self.mem.write_table(child, run, self._esize)
        parent = self.mode.encode_table(child, level, entry.perm | ctx.perm)
        self._break(table, i, 1, va, level.span)
        self._write(table + i * self._esize, parent)
        return child

    def _plan_split(self, half: Half, li: int, raw: int, pa: int, lo: int, hi: int) -> int:
        """Check that the leaf ``raw`` at level ``li`` can be split; return the tables needed.

        The first and last child leaves are encoded now, so a split the format cannot express
        (a PSE-36 page above 4 GiB into 4 KiB pages, say) fails before anything is written.
        """
        level, child = half.levels[li], half.levels[li + 1]
        for child_pa in (pa, pa + level.leaf_size - child.leaf_size):
            self.mode.resize_leaf(raw, level, child, child_pa)
        return self._split_need(half, li, lo, hi)

    def _split_need(self, half: Half, li: int, lo: int, hi: int) -> int:
        """Tables needed to split the leaf at level ``li`` around ``[lo, hi)``, cascading."""
        need, child_li = 1, li + 1
        if child_li == len(half.levels) - 1:
            return need
        cspan = half.levels[child_li].span
        edges = {lo // cspan} if lo % cspan else set()
        if hi % cspan:
            edges.add((hi - 1) // cspan)
        for e in edges:
            need += self._split_need(half, child_li, max(lo, e * cspan), min(hi, (e + 1) * cspan))
        return need

    # ------------------------------------------------------------------ unmap_range
    def unmap_range(self, va: int, size: int) -> Flush:
        """Unmap everything in ``[va, va + size)``, splitting huge pages at the edges.

        Holes are allowed. Tables left empty are freed. ``Flush.unmapped`` lists the runs.
        """
        self._alive()
        half = self._check_range(va, size)
        ctx = _Ctx(half, "unmap_range")
        root, base = self.roots[half.root], self._table_base(half)
        self._unmap_rec(ctx, root, 0, base, va, va + size)
        ctx.pool = self._alloc_tables(ctx.needed)
        ctx.plan = False
        self._unmap_rec(ctx, root, 0, base, va, va + size)
        for pa in ctx.pool:
            self._free_table(pa)
        flush = Flush("unmap_range", ((va, size),), tables_freed=ctx.tables_freed)
        flush.unmapped = ctx.unmapped
        return self._notify(flush)

    def _unmap_rec(self, ctx: _Ctx, table: int, li: int, tbase: int, lo: int, hi: int) -> None:
        level = ctx.half.levels[li]
        shift, span = level.shift, level.span
        i0, i1 = (lo - tbase) >> shift, (hi - 1 - tbase) >> shift
        raws = self._slice(table, i0, i1 - i0 + 1)
        valid = (raws & np.uint64(1)) != 0
        if li == len(ctx.half.levels) - 1:
            if not ctx.plan and valid.any():
                self._record(ctx, level, tbase + (i0 << shift), raws, valid)
                self.mem.write_table(
                    table + i0 * self._esize, np.where(valid, 0, raws), self._esize
                )
            return
        for j in np.flatnonzero(valid).tolist():
            i = i0 + j
            raw = int(raws[j])
            entry, e_lo, s_lo, s_hi, full = self._covered(table, level, i, raw, tbase, lo, hi)
            if entry.kind is EntryKind.LEAF and full:
                if not ctx.plan:
                    ctx.unmapped.append((e_lo, entry.address, span))
                    self._write(table + i * self._esize, 0)
                continue
            child = self._child(ctx, table, li, i, raw, entry, e_lo, s_lo, s_hi)
            if child is None:
                continue
            outer = ctx.keep_tables
            if li == 0:
                r = ctx.half.root
                ctx.keep_tables = (r, -1) in self.shared or (r, i) in self.shared
            self._unmap_rec(ctx, child, li + 1, e_lo, s_lo, s_hi)
            if not ctx.plan and not ctx.keep_tables:
                self._drop_if_empty(ctx, table, level, i, child)
            ctx.keep_tables = outer

    def _child(
        self,
        ctx: _Ctx,
        table: int,
        li: int,
        i: int,
        raw: int,
        entry: Entry,
        e_lo: int,
        s_lo: int,
        s_hi: int,
    ) -> int | None:
        """The table below entry ``i`` that a range operation goes on in. A leaf the range
        only partly covers is split first (the plan pass only counts the tables: None)."""
        if entry.kind is not EntryKind.LEAF:
            return entry.address
        if ctx.plan:
            ctx.needed += self._plan_split(ctx.half, li, raw, entry.address, s_lo, s_hi)
            return None
        return self._split(ctx, table, ctx.half.levels[li], i, raw, e_lo)

    def _covered(
        self, table: int, level: Level, i: int, raw: int, tbase: int, lo: int, hi: int
    ) -> tuple[Entry, int, int, int, bool]:
        """Entry ``i`` decoded, its VA span, the part of ``[lo, hi)`` in it, and whether all.

        Raises on a broken entry; an Arm leaf with AF=0 is a normal mapping (access tracking).
        """
        e_lo = tbase + (i << level.shift)
        s_lo, s_hi = max(lo, e_lo), min(hi, e_lo + level.span)
        entry = self.mode.decode_cached(raw, level)
        if entry.fault is not None and entry.fault != "access-flag":
            raise self._broken(level, table + i * self._esize, raw, entry.reason)
        return entry, e_lo, s_lo, s_hi, s_lo == e_lo and s_hi == e_lo + level.span

    def _drop_if_empty(self, ctx: _Ctx, table: int, level: Level, i: int, child: int) -> None:
        n = ctx.half.levels[ctx.half.levels.index(level) + 1].entries
        if child in self.owned and not (self._slice(child, 0, n) & np.uint64(1)).any():
            self._write(table + i * self._esize, 0)
            self._free_table(child)
            ctx.tables_freed = True

    def _record(self, ctx: _Ctx, level: Level, base: int, raws: U64Array, valid: Any) -> None:
        """Append the unmapped runs of a leaf-table slice (contiguous in VA and PA)."""
        idx = np.flatnonzero(valid)
        pas = self.mode.np_address(raws[idx], level, leaf=True)
        span = level.leaf_size
        breaks = np.flatnonzero((np.diff(idx) != 1) | (np.diff(pas) != np.uint64(span))) + 1
        for run in np.split(np.arange(idx.size), breaks):
            first = int(run[0])
            ctx.unmapped.append(
                (base + int(idx[first]) * span, int(pas[first]), int(run.size) * span)
            )

    # ---------------------------------------------------------------- protect_range
    def protect_range(
        self, va: int, size: int, perm: Perm, memtype: MemType | None = None
    ) -> Flush:
        """Change permissions (and memory type, if given) of every page in the range.

        Raises:
            NotMappedError naming the first hole (nothing changes).
        """
        self._alive()
        half = self._check_range(va, size)
        for level in half.levels:
            if level.leaf_size:
                # Fails here, before any split, if the format cannot express perm or memtype.
                self.mode.encode_leaf(0, level, perm, memtype or MemType.NORMAL)
        ctx = _Ctx(half, "protect_range", True, perm, memtype)
        root, base = self.roots[half.root], self._table_base(half)
        self._protect_rec(ctx, root, 0, base, va, va + size)
        ctx.pool = self._alloc_tables(ctx.needed)
        ctx.plan = False
        self._protect_rec(ctx, root, 0, base, va, va + size)
        for pa in ctx.pool:
            self._free_table(pa)
        return self._notify(Flush("protect_range", ((va, size), *ctx.widened)))

    def _protect_rec(self, ctx: _Ctx, table: int, li: int, tbase: int, lo: int, hi: int) -> None:
        level = ctx.half.levels[li]
        shift, span = level.shift, level.span
        i0, i1 = (lo - tbase) >> shift, (hi - 1 - tbase) >> shift
        raws = self._slice(table, i0, i1 - i0 + 1)
        holes = np.flatnonzero((raws & np.uint64(1)) == 0)
        if holes.size:
            hole = max(lo, tbase + ((i0 + int(holes[0])) << shift))
            raise NotMappedError(f"VA {hx(hole)} is not mapped ({ctx.op} needs it)", va=hole)
        if li == len(ctx.half.levels) - 1:
            if not ctx.plan:
                new = self._reprotect(raws, level, ctx)
                if self._retyped(raws, new, level):
                    self._break(table, i0, raws.size, tbase + (i0 << shift), raws.size << shift)
                self.mem.write_table(table + i0 * self._esize, new, self._esize)
            return
        for i in range(i0, i1 + 1):
            raw = int(raws[i - i0])
            entry, e_lo, s_lo, s_hi, full = self._covered(table, level, i, raw, tbase, lo, hi)
            if entry.kind is EntryKind.LEAF and full:
                if not ctx.plan:
                    one = np.array([raw], dtype=np.uint64)
                    new = self._reprotect(one, level, ctx)
                    if self._retyped(one, new, level):
                        self._break(table, i, 1, e_lo, span)
                    self._write(table + i * self._esize, int(new[0]))
                continue
            child = self._child(ctx, table, li, i, raw, entry, e_lo, s_lo, s_hi)
            if child is None:
                continue
            if entry.kind is EntryKind.TABLE and not ctx.plan:
                wider = self.mode.widen_table(raw, level, ctx.perm)
                if wider != raw:
                    self._write(table + i * self._esize, wider)
                    ctx.widened.append((e_lo, span))
            self._protect_rec(ctx, child, li + 1, e_lo, s_lo, s_hi)

    def _retyped(self, old: U64Array, new: U64Array, level: Level) -> bool:
        """Whether a protect changes the memory type of any entry (a BBM case on Arm)."""
        mask = np.uint64(self.mode.memtype_mask(level))
        return self.bbm is not None and bool(((old ^ new) & mask).any())

    def _reprotect(self, raws: U64Array, level: Level, ctx: _Ctx) -> U64Array:
        mask = self.mode.perm_mask(level)
        if ctx.memtype is not None:
            mask |= self.mode.memtype_mask(level)
        pa0 = 0
        flags = self.mode.encode_leaf(pa0, level, ctx.perm, ctx.memtype or MemType.NORMAL)
        out = (raws & np.uint64(~mask & (2**64 - 1))) | np.uint64(flags & mask)
        return out
