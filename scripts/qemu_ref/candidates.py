"""Choosing the VAs to ask ``gva2gpa`` about at a stop: runs of mappings by region, their
edges, registers, kernel symbols, the direct map and non-canonical holes.

One idea: the questions are picked from QEMU's own listing and the kernel's symbols, not from
pagewalk. The regions follow Intel SDM vol. 3A ch. 4 (4.5: canonical 48- and 57-bit halves;
4.3 and 4.4: 4 MiB and 2 MiB pages), Arm ARM D8 (TTBR0/TTBR1 ranges) and the RISC-V
privileged spec (Sv39/48/57 sign-extended VAs).
"""

from __future__ import annotations

import random
from typing import Any

from .parse import MemRange, TlbEntry


def _canonical(va: int, bits: int) -> bool:
    top = va >> (bits - 1)
    return top in (0, (1 << (65 - bits)) - 1)


def x86_candidates(
    tlb: list[TlbEntry],
    regs: dict[str, int],
    vmci: dict[str, int],
    la57: bool,
    layout: dict[str, int],
) -> list[tuple[int, str]]:
    bits = 57 if la57 else 48
    user_top = 1 << (bits - 1)
    # The direct map is the kernel-half delta VA-PA that maps the most bytes.
    deltas: dict[int, int] = {}
    for e in tlb:
        if e.va >= user_top and e.va < 0xFFFFFFFF80000000:
            size = 0x200000 if e.large else 0x1000
            deltas[e.va - e.pa] = deltas.get(e.va - e.pa, 0) + size
    direct = max(deltas, key=deltas.__getitem__) if deltas else None

    def label(e: TlbEntry) -> str:
        if e.va < user_top:
            return "user"
        if e.va >= 0xFFFFFFFF80000000:
            return "kernel-image" if e.va < 0xFFFFFFFFC0000000 else "modules-or-fixmap"
        if e.va >= 0xFFFFFE0000000000:
            return "cpu-entry-area"
        below = [(b, n) for n, b in layout.items() if b <= e.va]
        if below:
            return max(below)[1].replace("_base", "").replace("page_offset", "direct-map")
        if direct is not None and e.va - e.pa == direct:
            return "direct-map"
        return "vmalloc-or-vmemmap"

    # Runs of entries contiguous in VA and PA with the same flags and size.
    runs: list[list[TlbEntry]] = []
    for e in tlb:
        if runs:
            last = runs[-1][-1]
            step = 0x200000 if last.large else 0x1000
            if (
                e.va == last.va + step
                and e.pa == last.pa + step
                and e.flags == last.flags
                and e.large == last.large
            ):
                runs[-1].append(e)
                continue
        runs.append([e])

    by_label: dict[str, list[list[TlbEntry]]] = {}
    for r in runs:
        by_label.setdefault(label(r[0]), []).append(r)

    picks: list[tuple[int, str]] = []
    rng = random.Random(1234)
    for lab, lruns in sorted(by_label.items()):
        chosen = (
            lruns if len(lruns) <= 12 else [*lruns[:4], *rng.sample(lruns[4:-4], 4), *lruns[-4:]]
        )
        for r in chosen:
            for e in {id(x): x for x in (r[0], r[len(r) // 2], r[-1])}.values():
                picks.append((e.va, lab))
                picks.append((e.va + 0xABC, lab))
                if e.large:
                    picks.append((e.va + 0x1FF123, lab + " (inside large page)"))
            step = 0x200000 if r[-1].large else 0x1000
            picks.append((r[-1].va + step, lab + " (just past a run)"))
            picks.append((r[0].va - 0x1000, lab + " (just before a run)"))

    for key, lab in (
        ("RIP", "RIP"),
        ("RSP", "RSP"),
        ("GS_BASE", "GS base"),
        ("TR_BASE", "TR base"),
        ("GDT_BASE", "GDT base"),
        ("IDT_BASE", "IDT base"),
        ("CR2", "CR2"),
    ):
        if key in regs:
            picks.append((regs[key], lab))
    for key, val in sorted(vmci.items()):
        if key.startswith("SYMBOL("):
            picks.append((val, key if "kallsyms" in key else f"vmcoreinfo {key}"))
    direct = layout.get("page_offset_base", direct)
    if direct is not None:
        picks.append((direct, "direct map base (PA 0)"))
        picks.append((direct + 0x7FFF000, "direct map, last page of 128 MiB"))
        picks.append((direct + 0x10000000, "direct map, beyond RAM"))
    picks += [
        (0x0, "null page"),
        (0x1000, "low user page"),
        (user_top - 0x1000, "top of user half"),
        (user_top, "first non-canonical"),
        (0xDEAD000000000000, "non-canonical"),
        (0xFFFFFFFFFFFFF000, "last page"),
    ]
    return _dedupe(picks, lambda va: va < (1 << 64) and va >= 0)


def arm_candidates(
    regs: dict[str, int], sysregs: dict[str, int], vmci: dict[str, int], user_maps: list[int]
) -> list[tuple[int, str]]:
    picks: list[tuple[int, str]] = []
    for key, val in sorted(regs.items()):
        if key in ("PC", "SP") or (key.startswith("X") and (val >> 48) in (0, 0xFFFF) and val):
            picks.append((val, key))
            picks.append(((val & ~0xFFF) + 0xABC, key + " (same page)"))
    for key in ("VBAR", "VBAR_EL1", "SP_EL0", "SP_EL1", "ELR_EL1", "FAR_EL1", "TPIDR_EL1"):
        if sysregs.get(key):
            picks.append((sysregs[key], key))
    for key, val in sorted(vmci.items()):
        if key.startswith("SYMBOL("):
            picks.append((val, key if "kallsyms" in key else f"vmcoreinfo {key}"))
    phys_offset = vmci.get("NUMBER(PHYS_OFFSET)")
    va_bits = vmci.get("NUMBER(VA_BITS)", 48)
    if phys_offset is not None:
        page_offset = (-(1 << va_bits)) & ((1 << 64) - 1)
        for mib in range(0, 136, 4):  # RAM is 128 MiB at PA 0x40000000 on -machine virt
            pa = 0x40000000 + mib * 0x100000 + 0x123
            va = ((pa - phys_offset) | page_offset) & ((1 << 64) - 1)
            picks.append((va, f"linear map, PA {pa:#x}"))
    for va in user_maps:
        picks.append((va, "user mapping from /proc/PID/maps"))
        picks.append((va + 0x1ABC, "user mapping from /proc/PID/maps (+0x1abc)"))
    picks += [
        (0x0, "null page"),
        (0x1000, "low user page"),
        (0x0000FFFFFFFFF000, "top of 48-bit TTBR0 range"),
        (0x0001000000000000, "between TTBR0 and TTBR1 ranges"),
        (0x8000000000000000, "between TTBR0 and TTBR1 ranges"),
        (0xFFFF000000000000, "bottom of TTBR1 range"),
        (0xFFFFFFFFFFFFF000, "last page"),
    ]
    return _dedupe(picks, lambda va: 0 <= va < (1 << 64))


def _run_picks(runs: dict[str, list[tuple[int, int, int]]]) -> list[tuple[int, str]]:
    """VAs to ask about for runs (start, end, large-page size or 0) grouped by label: first,
    middle and last page (also at +0xABC), a point near the end of a large page, and the
    pages just past and just before the run; at most 12 runs per label (first 4, 4 at
    random, last 4)."""
    picks: list[tuple[int, str]] = []
    rng = random.Random(1234)
    for lab, lruns in sorted(runs.items()):
        chosen = (
            lruns if len(lruns) <= 12 else [*lruns[:4], *rng.sample(lruns[4:-4], 4), *lruns[-4:]]
        )
        for start, end, large in chosen:
            mid = start + ((end - start) // 2 & ~0xFFF)
            for va in dict.fromkeys((start, mid, end - 0x1000)):
                picks.append((va, lab))
                picks.append((va + 0xABC, lab))
            if large:
                picks.append((start + large - 0xEDD, lab + " (inside large page)"))
            picks.append((end, lab + " (just past a run)"))
            picks.append((start - 0x1000, lab + " (just before a run)"))
    return picks


def _symbol_picks(vmci: dict[str, int]) -> list[tuple[int, str]]:
    return [
        (val, key if "kallsyms" in key else f"vmcoreinfo {key}")
        for key, val in sorted(vmci.items())
        if key.startswith("SYMBOL(")
    ]


I386_PAGE_OFFSET = 0xC0000000  # CONFIG_VMSPLIT_3G in both Debian i386 kernels


I386_PAE_PA_MASK = (1 << 52) - 1


def i386_candidates(
    tlb: list[TlbEntry], regs: dict[str, int], vmci: dict[str, int], large: int
) -> list[tuple[int, str]]:
    """As x86_candidates, for a 32-bit guest (large pages are 4 MiB without PAE, 2 MiB with)."""

    def label(e: TlbEntry) -> str:
        if e.va < I386_PAGE_OFFSET:
            return "user"
        if e.va - e.pa == I386_PAGE_OFFSET:
            return "lowmem (direct map, kernel image)"
        if e.va >= 0xFF000000:
            return "fixmap-or-cpu-entry-area"
        return "vmalloc-or-pkmap"

    seq: list[list[TlbEntry]] = []  # entries contiguous in VA and PA with the same flags
    for e in tlb:
        if seq:
            last = seq[-1][-1]
            step = large if last.large else 0x1000
            if e.va == last.va + step and e.pa == last.pa + step and e.flags == last.flags:
                seq[-1].append(e)
                continue
        seq.append([e])
    runs: dict[str, list[tuple[int, int, int]]] = {}
    for r in seq:
        size = large if r[0].large else 0x1000
        runs.setdefault(label(r[0]), []).append(
            (r[0].va, r[-1].va + size, size if size > 0x1000 else 0)
        )
    picks = _run_picks(runs)
    for key, lab in (
        ("EIP", "EIP"),
        ("ESP", "ESP"),
        ("GS_BASE", "GS base"),
        ("FS_BASE", "FS base"),
        ("TR_BASE", "TR base"),
        ("GDT_BASE", "GDT base"),
        ("IDT_BASE", "IDT base"),
        ("CR2", "CR2"),
    ):
        if key in regs:
            picks.append((regs[key], lab))
    picks += _symbol_picks(vmci)
    picks += [
        (I386_PAGE_OFFSET, "direct map base (PA 0)"),
        (I386_PAGE_OFFSET + 0x7FFF000, "direct map, last page of 128 MiB"),
        (I386_PAGE_OFFSET + 0x8000000, "direct map, just beyond RAM"),
        (0x0, "null page"),
        (0x1000, "low user page"),
        (I386_PAGE_OFFSET - 0x1000, "top of user half"),
        (0xFFFFF000, "last page"),
    ]
    return _dedupe(picks, lambda va: 0 <= va < (1 << 32))


def riscv_regions(vmci: dict[str, int]) -> list[tuple[int, int, str]]:
    """Kernel VA regions from riscv VMCOREINFO numbers (read from guest RAM)."""
    n = {k[7:-1]: v for k, v in vmci.items() if k.startswith("NUMBER(")}
    out = []
    for lo, hi, lab in (
        ("VMEMMAP_START", "VMEMMAP_END", "vmemmap"),
        ("VMALLOC_START", "VMALLOC_END", "vmalloc"),
        ("MODULES_VADDR", "MODULES_END", "modules"),
    ):
        if lo in n and hi in n:
            out.append((n[lo], n[hi], lab))
    if "KERNEL_LINK_ADDR" in n:
        out.append((n["KERNEL_LINK_ADDR"], 1 << 64, "kernel-image"))
    return out


def riscv_candidates(
    ranges: list[MemRange],
    regs: dict[str, int],
    vmci: dict[str, int],
    va_bits: int,
    user_maps: list[int],
) -> list[tuple[int, str]]:
    half = 1 << (va_bits - 1)
    regions = riscv_regions(vmci)
    page_offset = vmci.get("NUMBER(PAGE_OFFSET)")
    ram_base = vmci.get("NUMBER(phys_ram_base)", 0x80000000)

    def label(r: MemRange) -> str:
        if r.va < half:
            return "user"
        if page_offset is not None and r.va - r.pa == page_offset - ram_base:
            return "linear-map"
        for lo, hi, lab in regions:
            if lo <= r.va < hi:
                return lab
        return "other-kernel (fixmap, PCI I/O)"

    runs: dict[str, list[tuple[int, int, int]]] = {}
    for r in ranges:
        big = 0x200000 if r.size >= 0x200000 and not (r.va | r.pa) & 0x1FFFFF else 0
        runs.setdefault(label(r), []).append((r.va, r.va + r.size, big))
    picks = _run_picks(runs)
    for key in ("pc", "sp", "gp", "tp", "ra", "stvec", "sepc", "sscratch", "stval", "mepc"):
        if regs.get(key):
            picks.append((regs[key], key))
    picks += _symbol_picks(vmci)
    if page_offset is not None:
        for mib in range(0, 136, 4):  # RAM is 128 MiB at phys_ram_base on -machine virt
            pa = ram_base + mib * 0x100000 + 0x123
            picks.append((page_offset + pa - ram_base, f"linear map, PA {pa:#x}"))
    for va in user_maps:
        picks.append((va, "user mapping from /proc/PID/maps"))
        picks.append((va + 0x1ABC, "user mapping from /proc/PID/maps (+0x1abc)"))
    picks += [
        (0x0, "null page"),
        (0x1000, "low user page"),
        (half - 0x1000, "top of user half"),
        (half, "first non-canonical"),
        (-half, "bottom of kernel half"),
        (1 << 47, "bit 47 (non-canonical below Sv57)"),
        (1 << 38, "bit 38 (non-canonical in Sv39)"),
        (0xDEAD000000000000, "non-canonical"),
        (0xFFFFFFFFFFFFF000, "last page"),
    ]
    return _dedupe(picks, lambda va: 0 <= va < (1 << 64))


def _dedupe(picks: list[tuple[int, str]], ok: Any) -> list[tuple[int, str]]:
    seen: set[int] = set()
    out = []
    for va, lab in picks:
        va &= (1 << 64) - 1
        if va in seen or not ok(va):
            continue
        seen.add(va)
        out.append((va, lab))
    return out
