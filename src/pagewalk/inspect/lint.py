"""Lint page tables: risky permissions, malformed entries and malformed trees, each pinned down.

Every finding has a severity and names the exact entry (level, entry PA, raw value) or range:

- permissions (over every level, as the mode computes them: Intel SDM vol. 3A §4.6, Arm ARM
  D8.4): writable and executable mappings; user-accessible pages in the kernel half; user-writable
  frames also mapped for the kernel outside its linear map (the largest supervisor mapping with
  one VA-PA offset, which aliases all RAM by design);
- entries: reserved bits set or a leaf where none may stand (the codec's reason), huge pages
  whose PA is not aligned to their size, leaves that point outside RAM (info: often MMIO);
  PAE PDPTEs with bits 2:1 or 8:5 set (``pdpte-reserved-bits``, a warning: reserved by Intel
  SDM vol. 3A table 4-8, a real CPU's MOV CR3 would #GP, but QEMU's walker sets Accessed there,
  so walks accept them unless the mode is strict);
- trees (from :mod:`pagewalk.inspect.tables`): recursive slots, cycles, one frame at two levels,
  tables outside RAM, tables partly outside RAM (an error: a walk through the missing entries
  faults), and tables shared by several entries (info).

With a layout (:mod:`pagewalk.inspect.regions`), each finding names the region of its VA
(``W+X in vmalloc``). Cost is proportional to the distinct tables: entries are checked once
per (table, level), and permissions over mappings enumerated with each shared subtree listed
once (``mappings(distinct=True)``), so a dump whose every entry points to one table is linted
as fast as its bytes allow, and each aliasing is reported once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pagewalk.enumerate import mappings
from pagewalk.enumerate_runs import Mapping, PartialTable, TableReader
from pagewalk.errors import PagingError, hx
from pagewalk.formats.base import EntryKind, PagingMode, Perm
from pagewalk.formats.x86 import QEMU_PDPTE_NOTE
from pagewalk.inspect.reverse import ReverseMap
from pagewalk.inspect.tables import Tables, Visit

if TYPE_CHECKING:
    from pagewalk.inspect.regions import Layout

SEVERITIES = ("error", "warning", "info")
_EVENT_SEVERITY = {"recursive": "info", "cycle": "error", "two-levels": "warning"}
#: faults of well-formed entries (Arm's AF=0 leaves, used to track access); any other fault
#: of a valid entry means a malformed one (reserved bits, a block where none may stand...)
_WARNING_FAULTS = ("access-flag",)
#: per family, why a mode accepts bits the manual reserves (see ``PagingMode.lenient_bits``)
_LENIENT_NOTE = {"x86": QEMU_PDPTE_NOTE}
#: the finding's code (a stable JSON contract: the PAE PDPTE is the only lenient entry today)
_LENIENT_CODE = "pdpte-reserved-bits"


@dataclass(frozen=True)
class Finding:
    """One lint finding."""

    severity: str
    code: str
    message: str
    va: int | None = None
    level: str | None = None
    entry_pa: int | None = None
    raw: int | None = None
    region: str | None = None

    def to_json(self, with_region: bool = False) -> dict[str, Any]:
        """The finding as JSON (numbers as integers); ``with_region`` adds ``"region"`` (the
        layout's name for its VA, null when none), as ``lint`` does when it has a layout."""
        out = {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "va": self.va,
            "level": self.level,
            "entry_pa": self.entry_pa,
            "raw": self.raw,
        }
        if with_region:
            out["region"] = self.region
        return out


def lint(
    mem: TableReader, mode: PagingMode, roots: Sequence[int], layout: Layout | None = None
) -> list[Finding]:
    """All findings, errors first, then by VA; with a layout, each names the region of its VA
    (and the permission findings say it: "W+X in vmalloc")."""
    found = list(_entries(mem, mode, roots))
    rows = list(mappings(mem, mode, roots, distinct=True))
    found += _perms(rows, mode, layout)
    if layout is not None:
        found = [replace(f, region=layout.name_of(f.va)) for f in found]
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(found, key=lambda f: (order[f.severity], f.va or 0, f.code))


def _entries(mem: TableReader, mode: PagingMode, roots: Sequence[int]) -> Iterator[Finding]:
    tables = Tables(mem, mode, roots)
    for visit in tables.visit():
        part = tables.partial.get((visit.pa, visit.level.number))
        if part is not None:
            yield _partial_finding(mode, visit, part)
        yield from _table_findings(mem, mode, visit)
    for ev in tables.events:
        sev = "error" if ev.kind == "outside-ram" else _EVENT_SEVERITY[ev.kind]
        yield Finding(sev, ev.kind, ev.detail, ev.va, ev.level.name, ev.entry_pa, ev.raw)
    for pa, level, n in tables.shared():
        msg = (
            f"{level.name} at {hx(pa)} is referenced by {n} entries (a shared subtree: maps "
            "lists its ranges under each of them, lint checks them once)"
        )
        yield Finding("info", "shared-table", msg, None, level.name)


def _partial_finding(mode: PagingMode, visit: Visit, part: PartialTable) -> Finding:
    first = part.missing[0][0]
    va = mode.canonical(visit.base + (first << visit.level.shift))
    entry_pa = part.pa + first * mode.entry_size
    return Finding("error", "partial-table", part.message(), va, visit.level.name, entry_pa)


def _table_findings(mem: TableReader, mode: PagingMode, visit: Visit) -> Iterator[Finding]:
    """Reserved bits (one decode per distinct attribute pattern), misaligned and stray leaves."""
    level, raws = visit.level, visit.raws
    idx = np.flatnonzero(raws & np.uint64(mode.present_mask))
    if not idx.size:
        return
    valid = raws[idx]
    yield from _lenient_findings(mode, visit, idx, valid)
    leaf = mode.np_is_leaf(valid, level)
    for is_leaf in (True, False):
        sel = leaf == is_leaf
        if not sel.any():
            continue
        keys = valid[sel] & np.uint64(~mode.address_mask(level, is_leaf) & ((1 << 64) - 1))
        _, first = np.unique(keys, return_index=True)
        for j in first.tolist():
            i = int(idx[sel][j])
            yield from _entry_finding(mode, visit, i, int(valid[sel][j]))
    if leaf.any() and level.leaf_size:
        yield from _stray_leaves(mem, mode, visit, idx[leaf], valid[leaf])


def _lenient_findings(mode: PagingMode, visit: Visit, idx: Any, raws: Any) -> Iterator[Finding]:
    """Bits the manual reserves that the (non-strict) mode accepts, as QEMU's walker does."""
    if not mode.lenient_bits(-1 & ((1 << 64) - 1), visit.level):
        return
    note = _LENIENT_NOTE.get(mode.facts.family, "the mode accepts them")
    for i, raw in zip(idx.tolist(), raws.tolist(), strict=True):
        bits = mode.lenient_bits(raw, visit.level)
        if not bits:
            continue
        which = ", ".join(str(b) for b in range(64) if bits >> b & 1)
        msg = (
            f"{visit.level.name}E {i} has reserved bit(s) {which} set: {note}; walks accept "
            "them as QEMU does (--strict faults)"
        )
        va = mode.canonical(visit.base + (i << visit.level.shift))
        entry_pa = visit.pa + i * mode.entry_size
        yield Finding("warning", _LENIENT_CODE, msg, va, visit.level.name, entry_pa, raw)


def _entry_finding(mode: PagingMode, visit: Visit, i: int, raw: int) -> Iterator[Finding]:
    entry = mode.decode(raw, visit.level)
    if entry.fault is None:
        return
    va = mode.canonical(visit.base + (i << visit.level.shift))
    sev = "warning" if entry.fault in _WARNING_FAULTS else "error"
    yield Finding(
        sev,
        entry.fault,
        f"{visit.level.name} entry {i}: {entry.reason} (first of its kind in this table)",
        va,
        visit.level.name,
        visit.pa + i * mode.entry_size,
        raw,
    )


def _stray_leaves(
    mem: TableReader, mode: PagingMode, visit: Visit, idx: Any, leaves: Any
) -> Iterator[Finding]:
    """Misaligned huge pages and leaves outside RAM, found with whole-table numpy tests (a
    64 GiB direct map has 16 M leaves: only the flagged ones reach Python)."""
    level = visit.level
    addrs = mode.np_address(leaves, level, True)
    size = level.leaf_size

    def where(j: int) -> tuple[int, str, int, int]:
        i = int(idx[j])
        va = mode.canonical(visit.base + (i << level.shift))
        return va, level.name, visit.pa + i * mode.entry_size, int(leaves[j])

    if size > mode.page_size:
        misaligned = (addrs & np.uint64(size - 1)) != 0
        for j in np.flatnonzero(misaligned).tolist():
            a, i = int(addrs[j]), int(idx[j])
            msg = f"{level.name} entry {i}: huge page PA {a:#x} is not aligned to {size:#x}"
            yield Finding("error", "misaligned", msg, *where(j))
        aligned = np.flatnonzero(~misaligned)
        for j in aligned[~mem.is_ram_array(addrs[aligned], 1)].tolist():
            a, i = int(addrs[j]), int(idx[j])
            msg = f"{level.name} entry {i}: huge page at PA {a:#x} is outside RAM (MMIO?)"
            yield Finding("info", "leaf-outside-ram", msg, *where(j))
        return
    outside = ~mem.is_ram_array(addrs, 1)
    if outside.any():
        n = int(outside.sum())
        j = int(np.argmax(outside))
        msg = f"{n} page(s) of this {level.name} map PAs outside RAM (first {int(addrs[j]):#x})"
        yield Finding("info", "leaf-outside-ram", msg, *where(j))


def _perms(
    rows: Sequence[Mapping], mode: PagingMode, layout: Layout | None = None
) -> Iterator[Finding]:
    kernel_half = mode.halves[-1].va_start if len(mode.halves) > 1 else None
    if mode.facts.stage == 2:  # guest-physical RAM: RWX and "user" (every access) are the norm
        return
    for m in rows:
        region = layout.name_of(m.va) if layout is not None else None
        where = f" in {region}" if region else ""
        if m.perm & Perm.WRITE and m.perm & Perm.EXEC:
            who = "user" if m.perm & Perm.USER else "kernel"
            msg = f"{who} mapping {m.va:#x}+{m.size:#x} is writable and executable (W+X{where})"
            yield Finding("warning" if who == "user" else "error", "w+x", msg, m.va)
        if kernel_half is not None and m.va >= kernel_half and m.perm & Perm.USER:
            msg = f"kernel-half mapping {m.va:#x}+{m.size:#x}{where} is user-accessible"
            yield Finding("error", "user-kernel-half", msg, m.va)
    yield from _shared(rows)


def _shared(rows: Sequence[Mapping]) -> Iterator[Finding]:
    """User-writable frames that the kernel also maps, outside its linear map."""
    kernel = [m for m in rows if not m.perm & Perm.USER]
    if not kernel:
        return
    by_delta: dict[int, int] = {}
    for m in kernel:
        by_delta[m.va - m.pa] = by_delta.get(m.va - m.pa, 0) + m.size
    linear = max(by_delta, key=lambda d: by_delta[d])
    rev = ReverseMap(m for m in kernel if m.va - m.pa != linear)
    for m in rows:
        if m.perm & Perm.USER and m.perm & Perm.WRITE:
            hits = rev.overlapping(m.pa, m.pa + m.size)
            if hits:
                k = hits[0]
                msg = (
                    f"user-writable {m.va:#x}+{m.size:#x} shares frames with kernel mapping "
                    f"{k.va:#x}+{k.size:#x} ({len(hits)} kernel range(s))"
                )
                yield Finding("warning", "user-writable-shared", msg, m.va)


@dataclass(frozen=True)
class RootProblem:
    """What is wrong with a root: ``unusable`` when it faults or every present entry of its
    table faults (nothing can be translated); else its table has no present entry, or some of
    its entries fault (what they would map is missing)."""

    unusable: bool
    message: str


def root_problem(mem: TableReader, mode: PagingMode, roots: Sequence[int]) -> RootProblem | None:
    """Whether the (single) root register of ``mode`` is unusable, empty or partly faulting.

    Only the root table is read. Modes with several roots (AArch64's TTBR0/TTBR1, either of
    which may be unset) are not judged; nor is a root table outside RAM (enumeration says so).
    """
    if len(mode.root_names) != 1:
        return None
    root, name = roots[0], mode.root_names[0]
    present, faults = 0, []
    for half in mode.halves:
        fault = mode.root_fault(root, half)
        if fault is not None:
            return RootProblem(True, f"{name} {hx(root)}: {fault[1]}: nothing can be translated")
        level = half.levels[0]
        mask = (1 << level.bits) - 1
        lo = half.va_start >> level.shift & mask
        hi = (half.va_end - 1) >> level.shift & mask
        try:
            raws = mem.read_table(root + lo * mode.entry_size, hi - lo + 1, mode.entry_size)
        except PagingError:
            return None
        for i, raw in enumerate(raws.tolist(), start=lo):
            entry = mode.decode(raw, level)
            if entry.kind is EntryKind.INVALID and entry.fault == mode.not_present_kind:
                continue
            present += 1
            if entry.fault is not None:
                faults.append(f"{level.name}E {i} ({hx(raw)}): {entry.reason}")
    table = f"the root {mode.halves[0].levels[0].name} at {hx(root)}"
    if not present:
        return RootProblem(
            False,
            f"{name} {hx(root)}: {table} has no present entry, so nothing is mapped "
            "(if that is unexpected, try `pagewalk find-roots`)",
        )
    if len(faults) == present:
        return RootProblem(
            True,
            f"{name} {hx(root)}: every present entry of {table} faults, so nothing can be "
            f"translated; first: {faults[0]}",
        )
    if faults:
        return RootProblem(
            False,
            f"{name} {hx(root)}: {len(faults)} of the {present} present entries of {table} "
            f"fault, so nothing under them is mapped; first: {faults[0]}",
        )
    return None


def summary(findings: Iterable[Finding]) -> dict[str, int]:
    """How many findings of each severity."""
    out = dict.fromkeys(SEVERITIES, 0)
    for f in findings:
        out[f.severity] += 1
    return out
