"""The writers as they were before issue 14, one Python object per run: the oracle that the bulk
writers (:mod:`pagewalk.cli.writers`, :mod:`pagewalk.inspect.qemu`) must match byte for byte.

Verbatim copies of ``Mapping.to_json`` + ``json.dumps`` (``maps --json``), ``info_mem`` and
``info_tlb`` of QEMU's x86 and RISC-V monitors (Intel SDM vol. 3A tables 4-14 to 4-20; RISC-V
privileged spec), and Linux's ``ptdump`` text, as of commit e878783.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from pagewalk.enumerate_runs import Mapping
from pagewalk.errors import ConfigError
from pagewalk.formats.base import GiB, MemType, MiB, PagingMode, Perm

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


def _qemu_canonical(mode: PagingMode, addr: int) -> int:
    """QEMU's ``addr_canonical``: sign-extend from the linear address's top bit (47 or 56 with
    LA57, 38/47/56 for Sv39/48/57); unchanged when it is as wide as the printed VA (32-bit)."""
    bits = _linear_bits(mode)
    if bits < mode.facts.va_bits and addr >> (bits - 1) & 1:
        addr |= _M64 & ~((1 << bits) - 1)
    return addr & _M64


def to_json(m: Mapping) -> dict[str, Any]:
    memtype = m.memtype.value if isinstance(m.memtype, MemType) else m.memtype
    return {
        "va": m.va,
        "size": m.size,
        "pa": m.pa,
        "page_size": m.page_size,
        "writable": bool(m.perm & Perm.WRITE),
        "user": bool(m.perm & Perm.USER),
        "executable": bool(m.perm & Perm.EXEC),
        "global": bool(m.perm & Perm.GLOBAL),
        "memtype": memtype,
    }


def json_list(rows: Iterable[Mapping]) -> str:
    """What ``maps --json`` printed: ``write_json_list(m.to_json() for m in rows)``."""
    items = [json.dumps(to_json(m)) for m in rows]
    return ("[" + ", ".join(items) + "]" if items else "[]") + "\n"


def info_mem(rows: Iterable[Mapping], mode: PagingMode) -> Iterator[str]:
    """``info mem`` lines for the mappings (from :func:`~pagewalk.enumerate.mappings`;
    for RISC-V enumerated with ``raw_attrs=True``)."""
    _check(mode, "info mem")
    yield from _INFO_MEM[mode.facts.family](rows, mode)


def _x86_info_mem(rows: Iterable[Mapping], mode: PagingMode) -> Iterator[str]:
    linear = (1 << _linear_bits(mode)) - 1
    start: int | None = None
    end = 0
    prot = (False, False)
    for m in rows:
        lo = m.va & linear
        key = (bool(m.perm & Perm.USER), bool(m.perm & Perm.WRITE))
        if start is not None and lo == end and key == prot:
            end = lo + m.size
            continue
        if start is not None:
            yield _mem_line(mode, start, end, prot)
        start, end, prot = lo, lo + m.size, key
    if start is not None:
        yield _mem_line(mode, start, end, prot)


def _mem_line(mode: PagingMode, start: int, end: int, prot: tuple[bool, bool]) -> str:
    lo, hi, size = (_qemu_canonical(mode, a) for a in (start, end, end - start))
    u, w = prot
    return f"{lo:016x}-{hi:016x} {size:016x} {'u' if u else '-'}r{'w' if w else '-'}"


def _riscv_info_mem(rows: Iterable[Mapping], mode: PagingMode) -> Iterator[str]:
    """QEMU's riscv ``info mem``: runs of leaves of one table, adjacent in VA and PA, whose
    low PTE bytes are equal (so ``a`` and ``d`` split runs too)."""
    width = mode.facts.va_bits
    linear = (1 << _linear_bits(mode)) - 1
    #: the VA span of the table holding leaves of each size
    spans = {lv.leaf_size: lv.leaf_size * lv.entries for lv in mode.halves[0].levels}
    yield _RV_HEADER[width]
    yield _RV_RULE[width]
    run: list[int] | None = None  # va, pa, size, attr, page size, table number
    for m in rows:
        if m.attrs is None:
            raise ValueError("riscv info mem needs mappings enumerated with raw_attrs=True")
        attr, span = m.attrs & 0xFF, spans[m.page_size]
        va, pa, left = m.va & linear, m.pa, m.size
        while left:
            n = min(left, span - va % span)
            table = va // span
            if (
                run is not None
                and (run[3], run[4], run[5]) == (attr, m.page_size, table)
                and (run[0] + run[2], run[1] + run[2]) == (va, pa)
            ):
                run[2] += n
            else:
                if run is not None:
                    yield _rv_line(mode, run)
                run = [va, pa, n, attr, m.page_size, table]
            va, pa, left = va + n, pa + n, left - n
    if run is not None:
        yield _rv_line(mode, run)


def _rv_line(mode: PagingMode, run: list[int]) -> str:
    va, pa, size, attr = run[:4]
    flags = "".join(ch if attr >> bit & 1 else "-" for bit, ch in _RV_FLAGS)
    digits = mode.facts.va_bits // 4
    return f"{_qemu_canonical(mode, va):0{digits}x} {pa:016x} {size:0{digits}x} {flags}"


_INFO_MEM = {"x86": _x86_info_mem, "riscv": _riscv_info_mem}


def info_tlb(rows: Iterable[Mapping], mode: PagingMode) -> Iterator[str]:
    """``info tlb`` lines; ``rows`` must come from an enumeration with ``raw_attrs=True``."""
    _check(mode, "info tlb")
    for m in rows:
        if m.attrs is None:
            raise ValueError("info tlb needs mappings enumerated with raw_attrs=True")
        large = m.page_size > 4096
        mask = _pa_mask(mode, m.page_size)
        attrs = m.attrs if large else m.attrs & ~(1 << 7)
        flags = "".join(ch if attrs >> bit & 1 else "-" for bit, ch in _FLAGS)
        for off in range(0, m.size, m.page_size):
            raw = _raw(mode, m.pa + off, m.page_size) | attrs
            va = _qemu_canonical(mode, m.va + off)
            yield f"{va:016x}: {raw & mask:016x} {flags}"


def _raw(mode: PagingMode, pa: int, size: int) -> int:
    """The address field of a leaf mapping ``pa`` (PSE-36 bits for 4-byte 4-MByte PDEs)."""
    if mode.entry_size == 4 and size > 4096:
        return (pa & 0xFFC00000) | (((pa >> 32) & 0xFF) << 13)
    return pa


def _pa_mask(mode: PagingMode, size: int) -> int:
    """QEMU's mask of the raw leaf: 32-bit paging and PAE (32-bit VAs, 4- or 8-byte entries)
    mask only the page offset, IA-32e mode keeps bits 49..12 (or 21, 30) of the address."""
    large = size > 4096
    if mode.facts.va_bits == 32 and mode.entry_size == 4:
        return 0xFFE00000 if large else 0xFFFFF000
    if mode.facts.va_bits == 32:
        return _M64 & ~0xFFFFF if large else _M64 & ~0xFFF
    return {GiB: 0x3FFFFC0000000, 2 * MiB: 0x3FFFFFFE00000}.get(size, 0x3FFFFFFFFF000)


def size_text(size: int) -> str:
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.1f}{unit}"
    return str(size)


def memtype_text(memtype: MemType | str | None) -> str:
    if memtype is None:
        return ""
    return memtype.value if isinstance(memtype, MemType) else memtype


def ptdump_lines(rows: Iterable[Mapping], mode: PagingMode) -> Iterable[str]:
    """Linux ``kernel_page_tables``-style lines: range, size, attribute words, level name."""
    names = {4096: "pte", 2 << 20: "pmd", 1 << 30: "pud", 4 << 20: "pmd", 512 << 20: "pmd"}
    width = 16 if mode.entry_size == 8 else 8
    upper = mode.halves[-1].va_start if len(mode.halves) > 1 else None
    section = None
    for m in rows:
        now = "Kernel Space" if upper is not None and m.va >= upper else "User Space"
        if upper is not None and now != section:
            section = now
            yield f"---[ {now} ]---"
        size = _ptdump_size(m.size)
        words = [
            "USR" if m.perm & Perm.USER else "   ",
            "RW" if m.perm & Perm.WRITE else "ro",
            "GLB" if m.perm & Perm.GLOBAL else "   ",
            "x " if m.perm & Perm.EXEC else "NX",
            memtype_text(m.memtype).upper()[:6].ljust(6),
        ]
        level = names.get(m.page_size, size_text(m.page_size))
        yield f"0x{m.va:0{width}x}-0x{m.end:0{width}x} {size:>10}  {' '.join(words)} {level}"


def _ptdump_size(size: int) -> str:
    value, unit = size >> 10, "K"
    for nxt in ("M", "G", "T"):
        if value % 1024:
            break
        value, unit = value // 1024, nxt
    return f"{value}{unit}"


# ------------------------------------------------------------- with a layout (issue 15)
def region_of(regions: list[tuple[str, int, int]], va: int) -> str | None:
    """The name of the (start, end) interval holding ``va``: a plain scan."""
    return next((name for name, lo, hi in regions if lo <= va < hi), None)


def json_list_regions(rows: Iterable[Mapping], regions: list[tuple[str, int, int]]) -> str:
    """``maps --json`` with a layout: each object as before, then ``"region"``."""
    items = [json.dumps({**to_json(m), "region": region_of(regions, m.va)}) for m in rows]
    return ("[" + ", ".join(items) + "]" if items else "[]") + "\n"
