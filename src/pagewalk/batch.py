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
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pagewalk.formats.base import EntryKind, Half, Level, PagingMode, U64Array
from pagewalk.walk import EntryReader


class BatchReader(EntryReader, Protocol):
    """What the batch walker needs from memory: vectorised RAM checks and gathers."""

    def is_ram_array(self, pas: U64Array, n: int) -> npt.NDArray[np.bool_]: ...

    def gather(self, pas: U64Array, entry_size: int) -> U64Array: ...


#: fault kinds by code; code 0 means "translated"
FAULT_KINDS = (
    "",
    "not-present",
    "reserved",
    "non-canonical",
    "translation",
    "access-flag",
    "address-size",
    "page-fault",
    "bad-table",
)
_CODE = {kind: code for code, kind in enumerate(FAULT_KINDS)}
NO_PA = np.uint64(0xFFFFFFFFFFFFFFFF)
I8Array = npt.NDArray[np.int8]


@dataclass
class BatchResult:
    """Arrays parallel to the input addresses.

    Attributes:
        pa: physical addresses; ``0xFFFFFFFFFFFFFFFF`` where the walk faulted.
        page_size: leaf sizes; 0 where the walk faulted.
        fault: fault codes (index into :data:`FAULT_KINDS`); 0 for a translation.
        level: the architecture's level number of the fault; -1 when there is none.
    """

    pa: U64Array
    page_size: U64Array
    fault: I8Array
    level: I8Array

    @classmethod
    def empty(cls, n: int) -> BatchResult:
        """Uninitialised arrays for ``n`` results, to pass as ``out=`` chunk after chunk."""
        return cls(np.empty(n, np.uint64), np.empty(n, np.uint64), np.empty(n, np.int8),
                   np.empty(n, np.int8))  # fmt: skip

    def head(self, n: int) -> BatchResult:
        """The first ``n`` results (views, not copies)."""
        return BatchResult(self.pa[:n], self.page_size[:n], self.fault[:n], self.level[:n])

    def check_out(self, n: int) -> None:
        """Raise ConfigError unless these arrays can take ``n`` results in place."""
        from pagewalk.errors import ConfigError

        want = (("pa", np.uint64), ("page_size", np.uint64), ("fault", np.int8), ("level", np.int8))
        for name, dtype in want:
            arr = getattr(self, name)
            if arr.shape != (n,) or arr.dtype != dtype or not arr.flags.c_contiguous:
                raise ConfigError(
                    f"out.{name} must be a contiguous {np.dtype(dtype).name} array of {n} "
                    f"elements (got {arr.dtype.name}{list(arr.shape)})"
                )
            if not arr.flags.writeable:
                raise ConfigError(f"out.{name} is read-only")

    def kinds(self) -> list[str | None]:
        """Fault kinds as strings (None for a translation)."""
        return [FAULT_KINDS[c] or None for c in self.fault.tolist()]


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
    """

    def __init__(
        self, mem: BatchReader, mode: PagingMode, roots: Sequence[int], *, impl: str = "auto"
    ) -> None:
        from pagewalk.errors import ConfigError

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

    def translate(self, vas: npt.ArrayLike, *, out: BatchResult | None = None) -> BatchResult:
        """Translate every address in ``vas`` (into ``out`` if given; it is returned)."""
        if self._compiled is not None:
            return self._compiled.translate(vas, out=out)
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
        np.full(n, _CODE[mode.non_canonical_kind], dtype=np.int8),
        np.full(n, -1 if mode.non_canonical_level is None else mode.non_canonical_level, np.int8),
    )
    for half in mode.halves:
        sel = np.flatnonzero(_in_half(mode, half, va))
        if sel.size:
            _walk_half(mem, mode, half, roots[half.root], va, sel, out)
    return out


def _in_half(mode: PagingMode, half: Half, va: U64Array) -> npt.NDArray[np.bool_]:
    """Which addresses the half serves (vectorised ``mode.half_for``)."""
    probe = va
    if mode.tbi and mode.tbi[half.root]:
        low56 = va & np.uint64((1 << 56) - 1)
        probe = low56 | np.uint64(0xFF << 56) if half.root else low56
        upper = (va >> np.uint64(55)) & np.uint64(1)
        picked: npt.NDArray[np.bool_] = (
            (upper == np.uint64(half.root))
            & (probe >= np.uint64(half.va_start))
            & (probe <= np.uint64(half.va_end - 1))
        )
        return picked
    inside: npt.NDArray[np.bool_] = (probe >= np.uint64(half.va_start)) & (
        probe <= np.uint64(half.va_end - 1)
    )
    if mode.name == "aarch64":
        upper = (va >> np.uint64(55)) & np.uint64(1)
        inside &= upper == np.uint64(half.root)
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
        out.fault[sel] = _CODE[early[0]]
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
            out.fault[active[~inside]] = _CODE["bad-table"]
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
    valid = (raws & np.uint64(1)) != 0
    code[~valid] = _CODE[mode.not_present_kind]
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
        if entry.fault is not None:
            shape_code[rows] = _CODE.get(entry.fault, _CODE["reserved"])
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
