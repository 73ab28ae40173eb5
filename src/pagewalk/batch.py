"""Batch translation: walk a numpy array of virtual addresses with one gather per level.

The batch walker does what :func:`pagewalk.walk.walk` does, for every address at once: pick the
half (root register) by VA, then per level compute every index, gather every entry from the
physical-memory array in one numpy operation, and classify the entries. Classification decodes
each distinct *shape* of entry once with the mode's scalar codec (the raw value with its address
bits cleared, see ``PagingMode.address_mask``), so the batch path cannot drift from the scalar
one: every bit that decides a fault or a leaf lies outside the address mask. It follows the same
manual sections as the walker (Intel SDM vol. 3A §4.3-4.5, Arm ARM D8.2-D8.3, RISC-V privileged
spec "Virtual Address Translation Process").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pagewalk.batch_result import (
    FAULT_CODES,
    FAULT_KINDS,
    NO_PA,
    BatchResult,
    I8Array,
    fault_code,
)
from pagewalk.errors import ConfigError
from pagewalk.formats.base import EntryKind, Half, Level, PagingMode, U64Array
from pagewalk.memory.protocols import BatchReader

#: fault codes by kind (the old private name, imported by tests)
_CODE = FAULT_CODES
#: bits 63:56, the byte a tagged-address mode ignores (``mode.tbi``)
TOP_BYTE_SHIFT = 56

__all__ = [
    "FAULT_CODES",
    "FAULT_KINDS",
    "IMPLS",
    "NO_PA",
    "BatchReader",
    "BatchResult",
    "I8Array",
    "Translator",
    "group_shapes",
    "translate_batch",
]


#: the implementations :func:`translate_batch` can use
IMPLS = ("auto", "compiled", "numpy")


def translate_batch(
    mem: BatchReader,
    mode: PagingMode,
    roots: Sequence[int],
    vas: npt.ArrayLike,
    *,
    impl: str = "auto",
    out: BatchResult | None = None,
) -> BatchResult:
    """Translate every address in ``vas`` (any integer array, taken as uint64).

    Args:
        impl: ``auto`` (the compiled walker of :mod:`pagewalk.fast` when it is built and fits
            the memory and mode, else numpy), ``compiled`` (that or an error) or ``numpy``.
        out: arrays to fill in place (see :meth:`BatchResult.empty`) instead of new ones;
            reusing them saves the cost of fresh memory on every call.

    Raises:
        ConfigError: ``impl="compiled"`` where there is no compiled path, an unknown impl, or
            an ``out`` of the wrong size or type.
    """
    return Translator(mem, mode, roots, impl=impl).translate(vas, out=out)


class Translator:
    """Batch translation through one memory, mode and set of roots, called once per chunk.

    It picks the implementation once (see :func:`translate_batch`), so streaming many chunks
    pays the set-up, and the compiled path's learning of entry shapes, only once.

    ``static=True`` promises that nothing writes the memory while the Translator lives (a dump
    streamed through it, as ``pagewalk translate --from-file`` does): the compiled walker then
    keeps, from call to call, the table addresses it found above the last level, instead of
    finding them again in every batch. A memory written between calls gets stale answers.
    """

    def __init__(
        self,
        mem: BatchReader,
        mode: PagingMode,
        roots: Sequence[int],
        *,
        impl: str = "auto",
        static: bool = False,
    ) -> None:
        if impl not in IMPLS:
            raise ConfigError(f"unknown batch implementation {impl!r} (use {', '.join(IMPLS)})")
        self.mem, self.mode, self.roots = mem, mode, tuple(roots)
        self._compiled = None
        if impl != "numpy":
            from pagewalk import fast

            self._compiled = fast.compiled_walker(mem, mode, self.roots)
            if self._compiled is None and impl == "compiled":
                raise ConfigError(
                    "no compiled batch walker here (not built, or this memory/mode has no fast "
                    "path); use impl='numpy'"
                )
        self.impl = "numpy" if self._compiled is None else "compiled"
        self.static = static

    def translate(self, vas: npt.ArrayLike, *, out: BatchResult | None = None) -> BatchResult:
        """Translate every address in ``vas`` (into ``out`` if given; it is returned)."""
        if self._compiled is not None:
            return self._compiled.translate(vas, out=out, memory_unchanged=self.static)
        got = _translate_numpy(self.mem, self.mode, self.roots, vas)
        if out is None:
            return got
        out.check_out(got.pa.size)
        for name in ("pa", "page_size", "fault", "level"):
            getattr(out, name)[:] = getattr(got, name)
        return out


def _translate_numpy(
    mem: BatchReader, mode: PagingMode, roots: Sequence[int], vas: npt.ArrayLike
) -> BatchResult:
    va = np.asarray(vas, dtype=np.uint64).ravel()
    n = va.size
    out = BatchResult(
        np.full(n, NO_PA, dtype=np.uint64),
        np.zeros(n, dtype=np.uint64),
        np.full(n, FAULT_CODES[mode.non_canonical_kind], dtype=np.int8),
        np.full(n, -1 if mode.non_canonical_level is None else mode.non_canonical_level, np.int8),
    )
    for half in mode.halves:
        sel = np.flatnonzero(_in_half(mode, half, va))
        if sel.size:
            _walk_half(mem, mode, half, roots[half.root], va, sel, out)
    return out


def _in_half(mode: PagingMode, half: Half, va: U64Array) -> npt.NDArray[np.bool_]:
    """Which addresses the half serves (vectorised ``mode.half_for``).

    Where the mode ignores the top byte for this root (``mode.tbi``), the range is checked on the
    address with bits 63:56 replaced by copies of bit 55; where one VA bit picks the root
    (``mode.facts.half_select_bit``), that bit must also equal the half's root index.
    """
    probe = va
    if mode.tbi and mode.tbi[half.root]:
        shift = np.int64(64 - TOP_BYTE_SHIFT)
        probe = ((va.view(np.int64) << shift) >> shift).view(np.uint64)
    inside: npt.NDArray[np.bool_] = (probe >= np.uint64(half.va_start)) & (
        probe <= np.uint64(half.va_end - 1)
    )
    select = mode.facts.half_select_bit
    if select is not None:
        inside &= ((va >> np.uint64(select)) & np.uint64(1)) == np.uint64(half.root)
    return inside


def _walk_half(
    mem: BatchReader,
    mode: PagingMode,
    half: Half,
    root: int,
    va: U64Array,
    sel: npt.NDArray[np.intp],
    out: BatchResult,
) -> None:
    early = mode.root_fault(root, half)
    if early is not None:
        out.fault[sel] = FAULT_CODES[early[0]]
        out.level[sel] = 0
        return
    esize = mode.entry_size
    table = np.full(sel.size, root, dtype=np.uint64)
    active = sel
    v = va[sel]
    for level in half.levels:
        index = (v >> np.uint64(level.shift)) & np.uint64(level.mask)
        entry_pa = table + index * np.uint64(esize)
        inside = mem.is_ram_array(entry_pa, esize)
        if not inside.all():
            out.fault[active[~inside]] = FAULT_CODES["bad-table"]
            out.level[active[~inside]] = level.number
            active, v, entry_pa = active[inside], v[inside], entry_pa[inside]
        raws = mem.gather(entry_pa, esize)
        code, leaf = _classify(mode, level, raws)
        bad = code != 0
        if bad.any():
            out.fault[active[bad]] = code[bad]
            out.level[active[bad]] = level.number
        done = leaf & ~bad
        if done.any():
            idx = active[done]
            size = np.uint64(level.leaf_size)
            base = mode.np_address(raws[done], level, leaf=True)
            out.pa[idx] = base | (v[done] & (size - np.uint64(1)))
            out.page_size[idx] = size
            out.fault[idx] = 0
            out.level[idx] = -1
        more = ~leaf & ~bad
        active, v = active[more], v[more]
        table = mode.np_address(raws[more], level, leaf=False)
        if not active.size:
            return


def _classify(
    mode: PagingMode, level: Level, raws: U64Array
) -> tuple[I8Array, npt.NDArray[np.bool_]]:
    """Per entry: fault code (0 = none) and whether it is a leaf.

    Entries are grouped by shape (raw with address bits cleared, per leaf/table), and each shape
    is decoded once with the scalar codec.
    """
    code = np.zeros(raws.size, dtype=np.int8)
    valid = (raws & np.uint64(mode.present_mask)) != 0
    code[~valid] = FAULT_CODES[mode.not_present_kind]
    leaf = np.zeros(raws.size, dtype=np.bool_)
    vidx = np.flatnonzero(valid)
    if not vidx.size:
        return code, leaf
    vr = raws[vidx]
    is_leaf = mode.np_is_leaf(vr, level)
    leaf_mask = np.uint64(~mode.address_mask(level, True) & ((1 << 64) - 1))
    table_mask = np.uint64(~mode.address_mask(level, False) & ((1 << 64) - 1))
    keys = np.where(is_leaf, vr & leaf_mask, vr & table_mask)
    shape_code, shape_leaf = np.zeros(vr.size, np.int8), np.zeros(vr.size, np.bool_)
    for rows, rep in group_shapes(keys):
        entry = mode.decode(int(vr[rep]), level)
        shape_leaf[rows] = entry.kind is EntryKind.LEAF
        shape_code[rows] = fault_code(entry.fault)
    code[vidx] = shape_code
    leaf[vidx] = shape_leaf
    return code, leaf


def group_shapes(keys: U64Array, peel: int = 8) -> list[tuple[npt.NDArray[np.intp] | slice, int]]:
    """Group equal keys: ``(rows, one row)`` per distinct key.

    Tables hold few distinct shapes, so the common ones are peeled off with one comparison
    each (linear); whatever is left after ``peel`` shapes is grouped by sorting.
    """
    if not keys.size:
        return []
    first = keys[0]
    same = keys == first
    if same.all():
        return [(slice(None), 0)]
    groups: list[tuple[npt.NDArray[np.intp] | slice, int]] = [(np.flatnonzero(same), 0)]
    rest = np.flatnonzero(~same)
    for _ in range(peel):
        if not rest.size:
            return groups
        key = keys[rest[0]]
        hit = keys[rest] == key
        groups.append((rest[hit], int(rest[0])))
        rest = rest[~hit]
    if rest.size:
        uniq, first_idx, inverse = np.unique(keys[rest], return_index=True, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(uniq.size + 1))
        for u in range(uniq.size):
            rows = rest[order[bounds[u] : bounds[u + 1]]]
            groups.append((rows, int(rest[first_idx[u]])))
    return groups
