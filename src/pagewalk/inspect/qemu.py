"""The QEMU monitor's ``info mem`` and ``info tlb`` texts, line for line, from our enumeration.

The formats are those of QEMU's x86 monitor (``target/i386/monitor.c``), as printed by the
QEMU 7.2 in Debian 12 and checked against its captured output (tests/inspect/test_qemu_ref.py):

- ``info tlb``: one line per present leaf, ``VA: PA XGPDACTUW``: the VA sign-extended, the raw
  leaf masked the way QEMU masks it (bits 12..49 for 4K, 21..49 for 2M, 30..49 for 1G in
  IA-32e mode; ``~0xfff``/``~0xfffff`` in PAE mode, so XD shows in the PA column there; bits
  21..31 of a 4-MByte PDE), then the leaf's own flags: XD, G, PS (only on large pages), D, A,
  PCD, PWT, U/S, R/W (Intel SDM vol. 3A tables 4-14 to 4-20).
- ``info mem``: ranges of equal ``U/S`` and ``R/W`` (each ANDed over every level, §4.6) that
  are contiguous in VA, whatever their PAs; ``start-end size``, then ``u``/``-``, always ``r``,
  then ``w``/``-``.
  Ranges are merged in the linear (not sign-extended) numbering, as QEMU's loops count.
- RISC-V ``info mem`` (``target/riscv/monitor.c``; checked on Debian 13's riscv64 kernel in
  Sv39/48/57, tests/inspect/test_qemu_riscv.py): a header and a rule, then ``vaddr paddr size
  attr`` per run of leaves of one table adjacent in VA and PA with an equal low PTE byte
  (V R W X U G A D), printed as ``rwxugad``; the VA sign-extended from the mode's top bit.

Deliberate divergence: QEMU 7.2's LA57 ``info mem`` tests the PDPTE and PDE present bits with
the wrong sense and prints nothing useful for a 5-level guest; we print the correct ranges.
QEMU also lists entries with reserved bits set and tables outside RAM; we skip those (``lint``
reports them).

The texts are made from column batches (:class:`~pagewalk.columns.RunColumns`) in bulk, a batch
of lines per numpy pass (:mod:`pagewalk.textcols`): :func:`info_mem_text` and
:func:`info_tlb_text` yield UTF-8 chunks of whole lines. :func:`info_mem` and :func:`info_tlb`
take :class:`Mapping` rows and give the same lines one by one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from pagewalk.columns import RunColumns
from pagewalk.enumerate_runs import Mapping
from pagewalk.errors import ConfigError
from pagewalk.formats.base import GiB, MiB, PagingMode, Perm

# the text engine is plain numpy; it lives beside the CLI's writers
from pagewalk.textcols import SLICE, U64, Chunk, Index, Rows, text_table

_M64 = (1 << 64) - 1
#: per family, the monitor commands QEMU has for it (a presentational table: the formats differ)
_COMMANDS = {"x86": ("info mem", "info tlb"), "riscv": ("info mem",)}
_RV_FLAGS = ((1, "r"), (2, "w"), (3, "x"), (4, "u"), (5, "g"), (6, "a"), (7, "d"))
#: RISC-V header and rule, by the printed VA width (QEMU prints 32-bit VAs with 8 hex digits)
_RV_HEADER = {
    64: "vaddr            paddr            size             attr",
    32: "vaddr    paddr            size     attr",
}
_RV_RULE = {
    64: "---------------- ---------------- ---------------- -------",
    32: "-------- ---------------- -------- -------",
}
_FLAGS = ((63, "X"), (8, "G"), (7, "P"), (6, "D"), (5, "A"), (4, "C"), (3, "T"), (2, "U"), (1, "W"))


def _check(mode: PagingMode, command: str) -> None:
    if command not in _COMMANDS.get(mode.facts.family, ()):
        raise ConfigError(
            f"QEMU's info tlb exists only for x86, and info mem for x86 and RISC-V; mode "
            f"{mode.name} has no such text"
        )


def _linear_bits(mode: PagingMode) -> int:
    """The width of the linear address the tables translate (32, 39, 48, 57...)."""
    top = mode.halves[0].levels[0]
    return top.shift + top.bits


def qemu_canonical(mode: PagingMode, addr: int) -> int:
    """QEMU's ``addr_canonical``: sign-extend from the linear address's top bit (47 or 56 with
    LA57, 38/47/56 for Sv39/48/57); unchanged when it is as wide as the printed VA (32-bit)."""
    bits = _linear_bits(mode)
    if bits < mode.facts.va_bits and addr >> (bits - 1) & 1:
        addr |= _M64 & ~((1 << bits) - 1)
    return addr & _M64


def needs_raw_attrs(fmt: str, mode: PagingMode) -> bool:
    """Whether the ``fmt`` text needs mappings enumerated with ``raw_attrs=True``."""
    return fmt == "qemu-info-tlb" or (fmt == "qemu-info-mem" and mode.facts.family == "riscv")


def info_mem(rows: Iterable[Mapping], mode: PagingMode) -> Iterator[str]:
    """``info mem`` lines for the mappings (from :func:`~pagewalk.enumerate.mappings`;
    for RISC-V enumerated with ``raw_attrs=True``)."""
    yield from _lines(info_mem_text(_batches(rows), mode))


def info_tlb(rows: Iterable[Mapping], mode: PagingMode) -> Iterator[str]:
    """``info tlb`` lines; ``rows`` must come from an enumeration with ``raw_attrs=True``."""
    yield from _lines(info_tlb_text(_batches(rows), mode))


def _batches(rows: Iterable[Mapping]) -> Iterator[RunColumns]:
    it = iter(rows)
    while chunk := list(itertools.islice(it, SLICE)):
        raw = all(m.attrs is not None for m in chunk)
        yield RunColumns.from_rows(chunk, with_attrs=raw)


def _lines(chunks: Iterable[Chunk]) -> Iterator[str]:
    for chunk in chunks:
        yield from str(chunk, "utf-8").splitlines()


def _attrs(b: RunColumns, what: str) -> U64:
    if b.attrs is None:
        raise ValueError(f"{what} needs mappings enumerated with raw_attrs=True")
    return b.attrs


def _steps(counts: U64) -> Iterator[tuple[Index, U64]]:
    """``counts[i]`` steps for each row ``i``, at most :data:`SLICE` at a time: ``(row,
    step number within the row)`` per step."""
    ends = np.cumsum(counts, dtype=np.uint64)
    total = int(ends[-1]) if counts.size else 0
    for first in range(0, total, SLICE):
        steps = np.arange(first, min(first + SLICE, total), dtype=np.uint64)
        row = np.searchsorted(ends, steps, side="right")
        yield row, steps - (ends[row] - counts[row])


def _per_size(sizes: U64, value: Callable[[int], int]) -> U64:
    """``value(size)`` for each page size (computed once per distinct size)."""
    distinct, index = np.unique(sizes, return_inverse=True)
    return np.array([value(s) for s in distinct.tolist()], dtype=np.uint64)[index]


def _canonical(mode: PagingMode, addr: U64) -> U64:
    """:func:`qemu_canonical` of every address."""
    bits = _linear_bits(mode)
    if bits >= mode.facts.va_bits:
        return addr
    high = np.uint64(_M64 & ~((1 << bits) - 1))
    return addr | (((addr >> np.uint64(bits - 1)) & np.uint64(1)) * high)


def _flags(attrs: U64, table: tuple[tuple[int, str], ...]) -> npt.NDArray[np.uint8]:
    """One letter (or ``-``) per ``(bit, letter)`` of ``table``, per value."""
    out = np.empty((attrs.size, len(table)), dtype=np.uint8)
    for k, (bit, ch) in enumerate(table):
        out[:, k] = np.where((attrs >> np.uint64(bit)) & np.uint64(1), ord(ch), ord("-"))
    return out


def info_tlb_text(batches: Iterable[RunColumns], mode: PagingMode) -> Iterator[Chunk]:
    """``info tlb`` as chunks of lines, one per present leaf (batches with ``attrs``)."""
    _check(mode, "info tlb")
    four = np.uint64(0xFFC00000)
    for b in batches:
        large = b.page_size > np.uint64(4096)
        attrs = _attrs(b, "info tlb")
        attrs = np.where(large, attrs, attrs & np.uint64(_M64 ^ 1 << 7))
        flags = _flags(attrs, _FLAGS)
        mask = _per_size(b.page_size, lambda s: _pa_mask(mode, s))
        pse36 = large & (mode.entry_size == 4)
        for run, step in _steps(b.size // b.page_size):
            off = step * b.page_size[run]
            pa = b.pa[run] + off
            high = ((pa >> np.uint64(32)) & np.uint64(0xFF)) << np.uint64(13)
            raw = (np.where(pse36[run], (pa & four) | high, pa) | attrs[run]) & mask[run]
            rows = Rows(run.size).hex(_canonical(mode, b.va[run] + off), 16).text(": ")
            yield rows.hex(raw, 16).text(" ").pick(run, flags).text("\n").render()


def info_mem_text(batches: Iterable[RunColumns], mode: PagingMode) -> Iterator[Chunk]:
    """``info mem`` as chunks of lines (for RISC-V, batches with ``attrs``)."""
    _check(mode, "info mem")
    yield from _INFO_MEM[mode.facts.family](batches, mode)


Cols = tuple[npt.NDArray[Any], ...]


def _merge(held: Cols | None, keys: int, cols: Cols) -> tuple[Cols, Cols | None]:
    """Rows ``(key..., start, end, more...)`` merged into ranges: a row continues the one
    before when its ``keys`` columns are equal, it starts where that one ends, and each
    ``more`` column (a PA) has advanced by that one's size. ``held`` is the last range of the
    batch before (a row), which this batch may continue.

    Returns:
        The finished ranges (same columns, ``end`` of their last row), and the last range,
        held for the next batch.
    """
    if held is not None:
        cols = tuple(np.concatenate((h, c)) for h, c in zip(held, cols, strict=True))
    n = cols[0].size
    if not n:
        return cols, None
    start, end, more = cols[keys], cols[keys + 1], cols[keys + 2 :]
    cont = np.zeros(n, dtype=np.bool_)
    cont[1:] = start[1:] == end[:-1]
    for col in cols[:keys]:
        cont[1:] &= col[1:] == col[:-1]
    for col in more:
        cont[1:] &= col[1:] == col[:-1] + (end[:-1] - start[:-1])
    firsts = np.flatnonzero(~cont)
    lasts = np.append(firsts[1:] - 1, n - 1)
    out = tuple(c[lasts] if i == keys + 1 else c[firsts] for i, c in enumerate(cols))
    return tuple(c[:-1] for c in out), tuple(c[-1:] for c in out)


def _x86_info_mem(batches: Iterable[RunColumns], mode: PagingMode) -> Iterator[Chunk]:
    linear = np.uint64((1 << _linear_bits(mode)) - 1)
    prot = text_table(["-r-", "-rw", "ur-", "urw"])
    user, write = np.uint8(Perm.USER), np.uint8(Perm.WRITE)
    held: Cols | None = None
    for b in batches:
        key = ((b.perm & user) != 0) * 2 + ((b.perm & write) != 0)
        lo = b.va & linear
        done, held = _merge(held, 1, (key, lo, lo + b.size))
        yield _x86_mem_lines(mode, done, prot)
    if held is not None:
        yield _x86_mem_lines(mode, held, prot)


def _x86_mem_lines(mode: PagingMode, ranges: Cols, prot: npt.NDArray[np.uint8]) -> Chunk:
    key, start, end = ranges
    rows = Rows(key.size).hex(_canonical(mode, start), 16).text("-")
    rows.hex(_canonical(mode, end), 16).text(" ").hex(_canonical(mode, end - start), 16)
    return rows.text(" ").pick(key, prot).text("\n").render()


def _riscv_info_mem(batches: Iterable[RunColumns], mode: PagingMode) -> Iterator[Chunk]:
    """QEMU's riscv ``info mem``: runs of leaves of one table, adjacent in VA and PA, whose
    low PTE bytes are equal (so ``a`` and ``d`` split runs too)."""
    width = mode.facts.va_bits
    linear = np.uint64((1 << _linear_bits(mode)) - 1)
    #: the VA span of the table holding leaves of each size
    spans = {lv.leaf_size: lv.leaf_size * lv.entries for lv in mode.halves[0].levels}
    yield f"{_RV_HEADER[width]}\n{_RV_RULE[width]}\n".encode()
    one = np.uint64(1)
    held: Cols | None = None
    for b in batches:
        attrs = _attrs(b, "riscv info mem") & np.uint64(0xFF)
        span = _per_size(b.page_size, spans.__getitem__)
        va = b.va & linear
        first = va // span  # each run's first table, and how many tables it touches
        for run, step in _steps((va + b.size - one) // span - first + one):
            table = first[run] + step
            lo = np.maximum(va[run], table * span[run])
            hi = np.minimum(va[run] + b.size[run], (table + one) * span[run])
            cols = (attrs[run], b.page_size[run], table, lo, hi, b.pa[run] + (lo - va[run]))
            done, held = _merge(held, 3, cols)
            yield _rv_lines(mode, done)
    if held is not None:
        yield _rv_lines(mode, held)


def _rv_lines(mode: PagingMode, ranges: Cols) -> Chunk:
    attr, _, _, lo, hi, pa = ranges
    digits = mode.facts.va_bits // 4
    rows = Rows(lo.size).hex(_canonical(mode, lo), digits).text(" ").hex(pa, 16).text(" ")
    rows.hex(hi - lo, digits).text(" ").bytes_(_flags(attr, _RV_FLAGS))
    return rows.text("\n").render()


_INFO_MEM = {"x86": _x86_info_mem, "riscv": _riscv_info_mem}


def _pa_mask(mode: PagingMode, size: int) -> int:
    """QEMU's mask of the raw leaf: 32-bit paging and PAE (32-bit VAs, 4- or 8-byte entries)
    mask only the page offset, IA-32e mode keeps bits 49..12 (or 21, 30) of the address."""
    large = size > 4096
    if mode.facts.va_bits == 32 and mode.entry_size == 4:
        return 0xFFE00000 if large else 0xFFFFF000
    if mode.facts.va_bits == 32:
        return _M64 & ~0xFFFFF if large else _M64 & ~0xFFF
    return {GiB: 0x3FFFFC0000000, 2 * MiB: 0x3FFFFFFE00000}.get(size, 0x3FFFFFFFFF000)
