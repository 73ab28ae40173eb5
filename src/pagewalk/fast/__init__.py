"""The compiled fast path of batch translation, optional at import.

:class:`CompiledWalker` runs :mod:`pagewalk.batch`'s walk in C (``_walk.c``, loaded with
ctypes): every address goes through every level in one compiled loop, with no numpy temporaries.
The C code knows no architecture. Each mode arrives as numbers (:mod:`pagewalk.fast._rules`,
and the mode's :class:`~pagewalk.formats.base.ArchFacts` for which VA bit picks the root and
whether the top byte is ignored), and what an entry *means* comes from per-level hash tables of
entry shapes (:mod:`pagewalk.fast.shapes`: raw value with the address bits cleared) whose
verdicts the scalar codec writes: the first time the loop meets a shape it stops that walk and
reports a miss, Python decodes the shape with ``mode.decode``, and the walk runs again. So the
fast path reaches the reference's verdicts by construction (Intel SDM vol. 3A ch. 4, Arm ARM D8,
RISC-V privileged spec), and a property test checks it on every mode. The shape tables are
shared by all walkers of a mode, so a walker points its levels at the current arrays before
every call into C. Each walker also keeps a paging-structure cache for the C loop (as the CPU's,
Intel SDM vol. 3A §4.10.3: the table a walk's last level reads, by the VA bits above it), valid
while the memory does not change: emptied at every batch, unless the caller promises otherwise
(``memory_unchanged``, for a dump streamed in chunks).

When the library is not built (no C compiler at install time), the mode cannot be reduced to
numbers, or the memory does not expose its bytes (:class:`pagewalk.memory.protocols.Segmented`),
:func:`compiled_walker` returns None and callers use numpy.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pagewalk.batch_result import FAULT_CODES, NO_PA, BatchResult, fault_code
from pagewalk.fast import _native
from pagewalk.fast._rules import apply_leaf_rule
from pagewalk.fast.shapes import ModePlan, ShapeTable, plan_for
from pagewalk.formats.base import EntryKind, Level, PagingMode, U64Array
from pagewalk.memory.protocols import Segmented, SegmentView

_LIB = _native.load()
#: whether the compiled walker was built and loads
AVAILABLE = _LIB is not None
#: addresses per call into C (bounds the miss buffers)
CALL_CHUNK = 1 << 16
#: addresses in a walker's first call into C: a cold walker meets its first shapes on a few
#: addresses, not on a whole chunk walked again once per level
WARM_CHUNK = 256
#: misses decoded per round: the first ones name the new shapes (the rest mostly repeat them)
LEARN_CAP = 4096


class CompiledWalker:
    """Batch translation through one memory, mode and set of roots, in compiled code.

    Build it with :func:`compiled_walker`; call :meth:`translate` as often as needed (the
    command-line streaming reuses one walker for every chunk).
    """

    def __init__(
        self, mode: PagingMode, roots: Sequence[int], plan: ModePlan, view: SegmentView
    ) -> None:
        assert _LIB is not None
        self.mode, self.plan = mode, plan
        self._fn = _LIB.pw_translate
        self._buf = view.buf  # keeps the bytes alive as long as the walker
        w = _native.PwWalker()
        w.buf = self._buf.ctypes.data
        for i, (start, end, delta) in enumerate(view.spans):
            w.seg_start[i], w.seg_end[i], w.seg_delta[i] = start, end, delta
        w.nseg, w.esize, w.nhalves = len(view.spans), mode.entry_size, len(mode.halves)
        w.nc_code = FAULT_CODES[mode.non_canonical_kind]
        w.nc_level = -1 if mode.non_canonical_level is None else mode.non_canonical_level
        w.np_code, w.bad_code = FAULT_CODES[mode.not_present_kind], FAULT_CODES["bad-table"]
        w.present_mask = mode.present_mask
        self._where: list[Level] = [mode.halves[0].levels[0]] * 16
        for h, half in enumerate(mode.halves):
            c = w.halves[h]
            c.lo, c.hi = half.va_start, half.va_end - 1
            select = mode.facts.half_select_bit
            c.select_bit = -1 if select is None else select
            c.ignore_top = int(bool(mode.tbi and mode.tbi[half.root]))
            c.root_index, c.root, c.nlevels = half.root, roots[half.root], len(half.levels)
            early = mode.root_fault(roots[half.root], half)
            c.early_code = FAULT_CODES[early[0]] if early is not None else 0
            for li, level in enumerate(half.levels):
                self._where[h * 8 + li] = level
                self._fill_level(c.levels[li], level)
        self._w = w
        self._warm = False  # whether a call into C has run (so the common shapes are known)
        self._generation = plan.generation  # of the tables the levels point at
        self._miss_idx = np.empty(CALL_CHUNK, np.int64)
        self._miss_where = np.empty(CALL_CHUNK, np.int32)
        self._miss_raw = np.empty(CALL_CHUNK, np.uint64)
        # the last clean shape per (half, level): kept from call to call (verdicts never change)
        self._memo = np.zeros((16, 2), np.uint64)
        # the paging-structure cache of _walk.c (the table each walk's last level reads): valid
        # while the memory does not change, so emptied at every batch unless told otherwise
        self._cache = np.zeros(_LIB.pw_cache_bytes(), np.uint8)
        # the pointers that are the same at every call
        self._fixed = (
            self._miss_idx.ctypes.data,
            self._miss_where.ctypes.data,
            self._miss_raw.ctypes.data,
            self._memo.ctypes.data,
            self._cache.ctypes.data,
        )

    def _fill_level(self, lv: _native.PwLevel, level: Level) -> None:
        r = self.plan.rules[level]
        lv.index_mask, lv.shift, lv.number = level.mask, level.shift, level.number
        lv.leaf_rule, lv.leaf_bits, lv.leaf_size = r.leaf_rule, r.leaf_bits, level.leaf_size
        for leaf in (0, 1):
            lv.shape_mask[leaf] = r.shape_mask[leaf]
            pairs = list(r.fields[leaf]) + [(0, 0)] * (2 - len(r.fields[leaf]))
            for g, (mask, shift) in enumerate(pairs):
                lv.amask[leaf][g], lv.ashift[leaf][g] = mask, shift
        self._point_shapes(lv, level)

    def _point_shapes(self, lv: _native.PwLevel, level: Level) -> None:
        table = self.plan.shapes[level]
        lv.keys, lv.vals = table.keys.ctypes.data, table.vals.ctypes.data
        lv.hmask, lv.hshift = len(table.vals) - 1, 64 - table.log_cap

    def _repoint(self) -> None:
        """Point every level at its shape table's current arrays."""
        self._generation = self.plan.generation
        for h, half in enumerate(self.mode.halves):
            for li, level in enumerate(half.levels):
                self._point_shapes(self._w.halves[h].levels[li], level)

    def _learn(self, where: npt.NDArray[np.int32], raws: U64Array) -> bool:
        """Decode every new shape among the misses with the scalar codec; True if any was new.

        None may be new when another walker of the mode learned them while this one was in C.
        """
        learned = False
        plan = self.plan
        with plan.lock:
            for w in np.unique(where).tolist():
                level = self._where[w]
                rules, table = plan.rules[level], plan.shapes[level]
                mine = raws[where == w]
                leafy = apply_leaf_rule(rules.leaf_rule, rules.leaf_bits, mine)
                keys = np.where(
                    leafy,
                    mine & np.uint64(rules.shape_mask[1]),
                    mine & np.uint64(rules.shape_mask[0]),
                )
                uniq, first = np.unique(keys, return_index=True)
                size = len(table.vals)
                for key, rep in zip(uniq.tolist(), first.tolist(), strict=True):
                    entry = self.mode.decode(int(mine[rep]), level)
                    val = 0x80 | (fault_code(entry.fault) << 1) | int(entry.kind is EntryKind.LEAF)
                    learned |= table.insert(int(key), val)
                if len(table.vals) != size:
                    plan.generation += 1
            self._repoint()
        return learned

    def translate(
        self,
        vas: npt.ArrayLike,
        *,
        out: BatchResult | None = None,
        memory_unchanged: bool = False,
    ) -> BatchResult:
        """Translate every address (any integer array, taken as uint64), into ``out`` if given.

        ``memory_unchanged`` promises that nothing wrote the memory since the previous call:
        the walker then keeps its cache of the tables above the last level (streaming does).
        """
        va = np.ascontiguousarray(np.asarray(vas, dtype=np.uint64).ravel())
        n = va.size
        if out is None:
            out = BatchResult.empty(n)
        else:
            out.check_out(n)
        if not memory_unchanged:
            self._cache.fill(0)
        walker = ctypes.byref(self._w)
        arrays = (va, out.pa, out.page_size, out.fault, out.level)
        bases = [(a.ctypes.data, a.itemsize) for a in arrays]
        done = 0
        while done < n:
            count = min(CALL_CHUNK if self._warm else WARM_CHUNK, n - done)
            ptrs = [base + size * done for base, size in bases]
            done, self._warm = done + count, True
            idx: npt.NDArray[np.int64] | None = None
            stalled = False  # the last round learned nothing new
            while True:
                if self._generation != self.plan.generation:  # another walker grew the tables
                    with self.plan.lock:
                        self._repoint()
                idx_ptr = None if idx is None else idx.ctypes.data
                misses = int(self._fn(walker, ptrs[0], idx_ptr, count, *ptrs[1:], *self._fixed))
                if not misses:
                    break
                some = min(misses, LEARN_CAP)
                if self._learn(self._miss_where[:some], self._miss_raw[:some]):
                    stalled = False
                elif stalled:  # twice in a row, with current tables: a bug, not a race
                    raise AssertionError("compiled walker missed on shapes it already knows")
                else:
                    stalled = True
                idx, count = self._miss_idx[:misses].copy(), misses
        return out


def compiled_walker(mem: object, mode: PagingMode, roots: Sequence[int]) -> CompiledWalker | None:
    """A compiled walker for this memory, mode and roots, or None when there is no fast path."""
    if _LIB is None or not isinstance(mem, Segmented) or not 0 < mode.present_mask < 1 << 32:
        return None
    plan = plan_for(mode)
    if plan is None:
        return None
    view = mem.segment_view()
    if len(view.spans) > _native.MAX_SEGS:
        return None
    return CompiledWalker(mode, roots, plan, view)


__all__ = [
    "AVAILABLE",
    "NO_PA",
    "CompiledWalker",
    "ModePlan",
    "ShapeTable",
    "compiled_walker",
    "plan_for",
]
