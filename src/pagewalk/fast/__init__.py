"""The compiled fast path of batch translation, optional at import.

:class:`CompiledWalker` runs :mod:`pagewalk.batch`'s walk in C (``_walk.c``, loaded with
ctypes): every address goes through every level in one compiled loop, with no numpy temporaries.
The C code knows no architecture. Each mode arrives as numbers (:mod:`pagewalk.fast._rules`),
and what an entry *means* comes from per-level hash tables of entry shapes (raw value with the
address bits cleared) whose verdicts the scalar codec writes: the first time the loop meets a
shape it stops that walk and reports a miss, Python decodes the shape with ``mode.decode``, and
the walk runs again. So the fast path reaches the reference's verdicts by construction (Intel SDM
vol. 3A ch. 4, Arm ARM D8, RISC-V privileged spec), and a property test checks it on every mode.
The shape tables belong to the mode and are shared by all its walkers (several Translators, one
per address space, live at once): a table that grows gets new arrays, so a walker points its
levels at the current arrays before every call into C, and old arrays are never freed while C
may still read them.

When the library is not built (no C compiler at install time), the mode cannot be reduced to
numbers, or the memory is not one of the known byte-array backends, :func:`compiled_walker`
returns None and callers use numpy.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from pagewalk.batch import _CODE, NO_PA, BatchResult
from pagewalk.fast import _native
from pagewalk.fast._rules import MASK64, LevelRules, level_rules
from pagewalk.formats.base import EntryKind, Level, PagingMode, U64Array

_LIB = _native.load()
#: whether the compiled walker was built and loads
AVAILABLE = _LIB is not None
#: addresses per call into C (bounds the miss buffers)
CALL_CHUNK = 1 << 16
_GOLDEN = 0x9E3779B97F4A7C15


class ShapeTable:
    """An open-addressing hash table of entry shapes, laid out as ``_walk.c`` reads it.

    ``vals[h]`` is 0 for an empty slot, else ``0x80 | fault_code << 1 | leaf``. Growing
    reallocates the arrays; the old ones are kept in ``retired`` (never freed), because every
    walker of the mode points into them and another walker may be reading them right now.
    """

    def __init__(self, log_cap: int = 5) -> None:
        self._allocate(log_cap)
        self.count = 0
        self.retired: list[tuple[U64Array, npt.NDArray[np.uint8]]] = []

    def _allocate(self, log_cap: int) -> None:
        self.log_cap = log_cap
        self.keys: U64Array = np.zeros(1 << log_cap, dtype=np.uint64)
        self.vals: npt.NDArray[np.uint8] = np.zeros(1 << log_cap, dtype=np.uint8)

    def _slot(self, key: int) -> int:
        mask = (1 << self.log_cap) - 1
        h = ((key * _GOLDEN) & MASK64) >> (64 - self.log_cap)
        while self.vals[h] and int(self.keys[h]) != key:
            h = (h + 1) & mask
        return h

    def get(self, key: int) -> int | None:
        """The stored value for ``key``, or None."""
        h = self._slot(key)
        return int(self.vals[h]) if self.vals[h] else None

    def insert(self, key: int, val: int) -> bool:
        """Store ``key`` (True if it was new); the table doubles at half load."""
        h = self._slot(key)
        if self.vals[h]:
            return False
        if 2 * (self.count + 1) > len(self.vals):
            old = [(int(k), int(v)) for k, v in zip(self.keys, self.vals, strict=True) if v]
            self.retired.append((self.keys, self.vals))
            self._allocate(self.log_cap + 1)
            self.count = 0
            for k, v in old:
                self.insert(k, v)
            h = self._slot(key)
        self.keys[h], self.vals[h] = key, val
        self.count += 1
        return True


@dataclass
class ModePlan:
    """A mode reduced to numbers, with its shape tables (shared by every walker of the mode).

    ``generation`` counts the times a table grew (and so moved): a walker whose pointers are
    older points its levels at the current arrays before it calls into C. ``lock`` serialises
    learning, so two threads cannot interleave inserts into one table.
    """

    rules: dict[Level, LevelRules]
    shapes: dict[Level, ShapeTable] = field(default_factory=dict)
    generation: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


_PLANS: weakref.WeakKeyDictionary[PagingMode, ModePlan | None] = weakref.WeakKeyDictionary()


def plan_for(mode: PagingMode) -> ModePlan | None:
    """The mode's plan (cached per mode object), or None if it cannot be reduced."""
    if mode in _PLANS:
        return _PLANS[mode]
    rules: dict[Level, LevelRules] = {}
    plan: ModePlan | None = ModePlan(rules)
    if len(mode.halves) > 2 or mode.entry_size not in (4, 8):
        plan = None
    for half in mode.halves:
        if len(half.levels) > _native.MAX_LEVELS:
            plan = None
        for level in half.levels:
            found = level_rules(mode, level)
            if found is None:
                plan = None
            else:
                rules[level] = found
    if plan is not None:
        plan.shapes = {level: ShapeTable() for level in rules}
    _PLANS[mode] = plan
    return plan


def memory_segments(mem: Any) -> tuple[npt.NDArray[np.uint8], list[tuple[int, int, int]]] | None:
    """The bytes of ``mem`` and its ``(start, end, file offset - PA)`` segments, or None.

    Only the two byte-array backends qualify: simulated memory and dump files (raw, ELF core,
    inflated compressed dumps).
    """
    from pagewalk.memory.dump import FileMemory
    from pagewalk.memory.physical import PhysicalMemory

    if isinstance(mem, PhysicalMemory):
        return mem.array(), [(r.base, r.end, 0) for r in mem.regions]
    if isinstance(mem, FileMemory):
        # FileMemory keeps its mapped bytes private; the walk only reads them.
        buf: npt.NDArray[np.uint8] = mem._u8
        return buf, [(s.pa, s.pa + s.size, s.offset - s.pa) for s in mem.segments]
    return None


class CompiledWalker:
    """Batch translation through one memory, mode and set of roots, in compiled code.

    Build it with :func:`compiled_walker`; call :meth:`translate` as often as needed (the
    command-line streaming reuses one walker for every chunk).
    """

    def __init__(
        self,
        mem: Any,
        mode: PagingMode,
        roots: Sequence[int],
        plan: ModePlan,
        view: tuple[npt.NDArray[np.uint8], list[tuple[int, int, int]]],
    ) -> None:
        assert _LIB is not None
        self.mode, self.plan = mode, plan
        self._fn = _LIB.pw_translate
        self._buf, segs = view  # keeps the bytes alive as long as the walker
        w = _native.PwWalker()
        w.buf = self._buf.ctypes.data
        for i, (start, end, delta) in enumerate(segs):
            w.seg_start[i], w.seg_end[i], w.seg_delta[i] = start, end, delta
        w.nseg, w.esize, w.nhalves = len(segs), mode.entry_size, len(mode.halves)
        w.nc_code = _CODE[mode.non_canonical_kind]
        w.nc_level = -1 if mode.non_canonical_level is None else mode.non_canonical_level
        w.np_code, w.bad_code = _CODE[mode.not_present_kind], _CODE["bad-table"]
        self._where: list[Level] = [mode.halves[0].levels[0]] * 16
        for h, half in enumerate(mode.halves):
            c = w.halves[h]
            c.lo, c.hi = half.va_start, half.va_end - 1
            c.tbi = int(bool(mode.tbi and mode.tbi[half.root]))
            c.split55 = int(mode.name == "aarch64")
            c.root_index, c.root, c.nlevels = half.root, roots[half.root], len(half.levels)
            early = mode.root_fault(roots[half.root], half)
            c.early_code = _CODE[early[0]] if early is not None else 0
            for li, level in enumerate(half.levels):
                self._where[h * 8 + li] = level
                self._fill_level(c.levels[li], level)
        self._w = w
        self._generation = plan.generation  # of the tables the levels point at
        self._miss_idx = np.empty(CALL_CHUNK, np.int64)
        self._miss_where = np.empty(CALL_CHUNK, np.int32)
        self._miss_raw = np.empty(CALL_CHUNK, np.uint64)
        # the last clean shape per (half, level): kept from call to call (verdicts never change)
        self._memo = np.zeros((16, 2), np.uint64)

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
                hit = (mine & np.uint64(rules.leaf_bits)) != 0
                leafy = {0: False, 1: True, 2: hit, 3: ~hit}[rules.leaf_rule]
                keys = np.where(
                    leafy,
                    mine & np.uint64(rules.shape_mask[1]),
                    mine & np.uint64(rules.shape_mask[0]),
                )
                uniq, first = np.unique(keys, return_index=True)
                size = len(table.vals)
                for key, rep in zip(uniq.tolist(), first.tolist(), strict=True):
                    entry = self.mode.decode(int(mine[rep]), level)
                    code = _CODE.get(entry.fault, _CODE["reserved"]) if entry.fault else 0
                    val = 0x80 | (code << 1) | int(entry.kind is EntryKind.LEAF)
                    learned |= table.insert(int(key), val)
                if len(table.vals) != size:
                    plan.generation += 1
            self._repoint()
        return learned

    def translate(self, vas: npt.ArrayLike, *, out: BatchResult | None = None) -> BatchResult:
        """Translate every address (any integer array, taken as uint64), into ``out`` if given."""
        va = np.ascontiguousarray(np.asarray(vas, dtype=np.uint64).ravel())
        n = va.size
        if out is None:
            out = BatchResult.empty(n)
        else:
            out.check_out(n)
        walker = ctypes.byref(self._w)
        miss = (self._miss_idx.ctypes.data, self._miss_where.ctypes.data)
        miss_raw, memo = self._miss_raw.ctypes.data, self._memo.ctypes.data
        for start in range(0, n, CALL_CHUNK):
            count = min(CALL_CHUNK, n - start)
            ptrs = (
                va.ctypes.data + 8 * start,
                out.pa.ctypes.data + 8 * start,
                out.page_size.ctypes.data + 8 * start,
                out.fault.ctypes.data + start,
                out.level.ctypes.data + start,
            )
            idx: npt.NDArray[np.int64] | None = None
            stalled = False  # the last round learned nothing new
            while True:
                if self._generation != self.plan.generation:  # another walker grew the tables
                    with self.plan.lock:
                        self._repoint()
                idx_ptr = None if idx is None else idx.ctypes.data
                misses = int(
                    self._fn(walker, ptrs[0], idx_ptr, count, *ptrs[1:], *miss, miss_raw, memo)
                )
                if not misses:
                    break
                if self._learn(self._miss_where[:misses], self._miss_raw[:misses]):
                    stalled = False
                elif stalled:  # twice in a row, with current tables: a bug, not a race
                    raise AssertionError("compiled walker missed on shapes it already knows")
                else:
                    stalled = True
                idx, count = self._miss_idx[:misses].copy(), misses
        return out


def compiled_walker(mem: Any, mode: PagingMode, roots: Sequence[int]) -> CompiledWalker | None:
    """A compiled walker for this memory, mode and roots, or None when there is no fast path."""
    if _LIB is None:
        return None
    plan = plan_for(mode)
    view = memory_segments(mem)
    if plan is None or view is None or len(view[1]) > _native.MAX_SEGS:
        return None
    return CompiledWalker(mem, mode, roots, plan, view)


__all__ = ["AVAILABLE", "NO_PA", "CompiledWalker", "compiled_walker", "plan_for"]
