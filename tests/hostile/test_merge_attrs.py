"""mappings() merges neighbours only when every reported attribute is identical.

The documented rule (docs/cli.md, "maps"): neighbours merge when VA and PA are contiguous and the
page size, the effective permissions (read, write, execute, user, global) and the memory type
match; with ``raw_attrs`` the raw attribute bits must match too. So two pages contiguous in VA
and PA that differ in exactly one bit that changes a permission or the memory type must come
out as two ranges; a bit that changes neither (accessed, dirty, shareability, software bits, a
PAT bit that selects the same type) merges by default and splits with ``raw_attrs``; identical
pages merge. Each case runs inside one table and across a table boundary (where the enumerator
merges across tables), at the base page size and at a large page size, for x86 (32-bit, PAE,
4-level), AArch64 and RISC-V (Intel SDM vol. 3A tables 4-4 to 4-20 and §4.9; Arm ARM D8.3-D8.6;
RISC-V privileged spec, Sv32/Sv39 PTE format and Svpbmt). Bits in a parent table entry that
narrow the effective permission of one of the two leaf tables (x86 R/W, U/S and XD in a PDE; Arm
APTable and XNTable) must split as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pagewalk import AddressSpace, Perm, PhysicalMemory, make_mode
from pagewalk.alloc import SimpleFrameAllocator
from pagewalk.enumerate import Mapping, mappings
from pagewalk.formats.base import PagingMode
from pagewalk.walk import walk

MIB = 1 << 20
ALL = Perm.READ | Perm.WRITE | Perm.EXEC | Perm.USER


def bit(n: int) -> int:
    return 1 << n


@dataclass(frozen=True)
class Attr:
    """A change to the second page's entry.

    Attributes:
        reported: it changes the effective permission or the memory type (so it must split
            by default); otherwise only ``raw_attrs`` sees it.
        parent: made to the table entry above the second page's leaf, not to the leaf.
        small_only / large_only: only for base pages / only for large pages (PAT moves from
            bit 7 to bit 12).
    """

    name: str
    set_bits: int = 0
    clear_bits: int = 0
    reported: bool = True
    parent: bool = False
    small_only: bool = False
    large_only: bool = False


X86_COMMON = [
    Attr("rw", clear_bits=bit(1)),
    Attr("us", clear_bits=bit(2)),
    Attr("g", set_bits=bit(8)),
    Attr("pwt", set_bits=bit(3)),
    Attr("pcd", set_bits=bit(4)),
    Attr("pcd-pwt", set_bits=bit(3) | bit(4)),
    Attr("accessed", set_bits=bit(5), reported=False),
    Attr("dirty", set_bits=bit(6), reported=False),
    Attr("avl9", set_bits=bit(9), reported=False),
    Attr("avl11", set_bits=bit(11), reported=False),
    # IA32_PAT at reset repeats its first four types, so PAT=1 alone selects the same type
    Attr("pat-same-type", set_bits=bit(7), reported=False, small_only=True),
    Attr("pat-large-same-type", set_bits=bit(12), reported=False, large_only=True),
    Attr("pde-rw", clear_bits=bit(1), parent=True),
    Attr("pde-us", clear_bits=bit(2), parent=True),
    Attr("pde-accessed", set_bits=bit(5), reported=False, parent=True),
]
X86_PAE = [*X86_COMMON, Attr("xd", set_bits=bit(63)), Attr("pde-xd", set_bits=bit(63), parent=True)]
X86_WIDE = [*X86_PAE, Attr("ignored-bit52", set_bits=bit(52), reported=False)]
ARM = [
    Attr("ap2-read-only", set_bits=bit(7)),
    Attr("ap1-kernel-only", clear_bits=bit(6)),
    Attr("ng-global", clear_bits=bit(11)),
    Attr("uxn", set_bits=bit(54)),
    Attr("attrindx-device", set_bits=bit(2)),
    Attr("attrindx-nc", set_bits=bit(2) | bit(3)),
    Attr("sh", clear_bits=bit(8), reported=False),
    Attr("dbm", set_bits=bit(51), reported=False),
    Attr("contiguous", set_bits=bit(52), reported=False),
    Attr("sw-bit55", set_bits=bit(55), reported=False),
    Attr("aptable-no-write", set_bits=bit(62), parent=True),
    Attr("aptable-no-el0", set_bits=bit(61), parent=True),
    Attr("uxntable", set_bits=bit(60), parent=True),
    Attr("table-sw-bit55", set_bits=bit(55), reported=False, parent=True),
]
RISCV = [
    Attr("w", clear_bits=bit(2)),
    Attr("x", clear_bits=bit(3)),
    Attr("u", clear_bits=bit(4)),
    Attr("g", set_bits=bit(5)),
    Attr("accessed", clear_bits=bit(6), reported=False),
    Attr("dirty", clear_bits=bit(7), reported=False),
    Attr("rsw", set_bits=bit(8), reported=False),
]
RISCV_PBMT = [*RISCV, Attr("pbmt-nc", set_bits=bit(61)), Attr("pbmt-io", set_bits=bit(62))]

MODES: dict[str, tuple[PagingMode, list[Attr]]] = {
    "x86": (make_mode("x86"), X86_COMMON),
    "pae": (make_mode("pae"), X86_PAE),
    "x86_64": (make_mode("x86_64"), X86_WIDE),
    "la57": (make_mode("la57"), X86_WIDE),
    "aarch64": (make_mode("aarch64"), ARM),
    "sv32": (make_mode("sv32"), RISCV),
    "sv39": (make_mode("sv39"), RISCV),
    "sv48-pbmt": (make_mode("sv48", svpbmt=True), RISCV_PBMT),
}
SAME = Attr("identical", reported=False)


def attrs_for(name: str, size_name: str, where: str) -> list[Attr]:
    """The changes that make sense for this mode, page size and place."""
    mode, attrs = MODES[name]
    top = mode.halves[0].levels[0].leaf_size == mode_size(mode, size_name)  # no table above
    out = [SAME]
    for attr in attrs:
        if (attr.small_only and size_name == "large") or (attr.large_only and size_name == "base"):
            continue
        if attr.parent and (where == "inside" or top or (name == "pae" and size_name == "large")):
            continue  # the parent of a PAE 2 MiB page is a PDPTE: no R/W, U/S, XD or A there
        out.append(attr)
    return out


def mode_size(mode: PagingMode, size_name: str) -> int:
    """The base page size, or the smallest large page size."""
    return mode.page_size if size_name == "base" else mode.leaf_sizes()[-2]


PLACES = [
    (name, size_name, where)
    for name, (mode, _) in MODES.items()
    for size_name in ("base", "large")
    for where in ("inside", "across")
    if not (where == "across" and mode.halves[0].levels[0].leaf_size == mode_size(mode, size_name))
]


Built = tuple[PagingMode, PhysicalMemory, AddressSpace, int, int]


def build(name: str, attr: Attr, size_name: str, where: str) -> Built:
    """Two pages contiguous in VA and PA; the second one's entry (or its parent) changed."""
    mode = MODES[name][0]
    size = mode_size(mode, size_name)
    half = mode.halves[0]
    leaf_depth = next(i for i, lv in enumerate(half.levels) if lv.leaf_size == size)
    base = 0 if half.va_end <= 1 << 32 else 1 << 36
    if where == "inside":
        va = base + size
    else:  # the last page under one table entry of the level above, and the first of the next
        va = base + (1 << half.levels[leaf_depth - 1].shift) - size
    pa = 16 * size if size > MIB else 40 * MIB
    mem = PhysicalMemory(64 * MIB)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(48 * MIB, 16 * MIB))
    space.map_range(va, pa, 2 * size, ALL, page_sizes=(size,)).ignore()
    steps = space.walk(va + size).steps
    step = steps[leaf_depth - 1] if attr.parent else steps[leaf_depth]
    new = (step.raw | attr.set_bits) & ~attr.clear_bits
    assert attr is SAME or new != step.raw, f"{attr.name} changes nothing in {step.raw:#x}"
    mem.write_entry(step.entry_pa, mode.entry_size, new)
    for v in (va, va + size):
        assert walk(mem, mode, space.roots, v).fault is None, f"{attr.name} made {v:#x} fault"
    return mode, mem, space, va, size


def describe(attr: Attr, runs: list[Mapping]) -> str:
    got = "; ".join(f"{m.va:#x}+{m.size:#x} {m.perm!r} {m.memtype} {m.attrs}" for m in runs)
    return f"{attr.name}: {got}"


@pytest.mark.parametrize(("name", "size_name", "where"), PLACES)
def test_only_identical_attributes_merge(name: str, size_name: str, where: str) -> None:
    for attr in attrs_for(name, size_name, where):
        mode, mem, space, va, size = build(name, attr, size_name, where)
        runs = list(mappings(mem, mode, space.roots))
        raw_runs = list(mappings(mem, mode, space.roots, raw_attrs=True))
        for got in (runs, raw_runs):
            assert got[0].va == va and sum(m.size for m in got) == 2 * size, describe(attr, got)
            assert all(m.pa - got[0].pa == m.va - va for m in got), describe(attr, got)
        if attr is SAME:
            assert len(runs) == 1 and len(raw_runs) == 1, describe(attr, runs)
            continue
        if attr.parent:  # the raw leaf bits are equal: only a changed permission may split
            assert len(raw_runs) == len(runs), describe(attr, raw_runs)
        elif not attr.reported:
            assert len(raw_runs) == 2, f"raw bits differ, yet merged: {describe(attr, raw_runs)}"
        if attr.reported:
            assert len(runs) == 2, f"pages with different attributes merged: {describe(attr, runs)}"
            first, second = runs
            assert (first.perm, first.memtype) != (second.perm, second.memtype), describe(
                attr, runs
            )
        else:
            assert len(runs) == 1, f"no reported attribute differs: {describe(attr, runs)}"
