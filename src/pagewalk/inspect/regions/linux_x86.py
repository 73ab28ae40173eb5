"""Linux's x86 virtual memory layouts, with the KASLR bases found in the page tables.

x86-64 follows the kernel's ``Documentation/arch/x86/x86_64/mm.rst`` (4- and 5-level paging,
Intel SDM vol. 3A §4.5): user space, the guard hole, the LDT remap, then the direct map of all
physical memory, vmalloc/ioremap and the vmemmap (``struct page`` array), whose bases
``CONFIG_RANDOMIZE_MEMORY`` moves in 1 GiB steps, in that order, inside the window that ends at
the cpu_entry_area (``arch/x86/mm/kaslr.c``); then the KASAN shadow, cpu_entry_area, the %esp
fixup stacks, EFI, the kernel text mapping, modules, the fixmap and the vsyscall page. The bases
are found from the tables: the direct map is the first mapping of the window, 1 GiB aligned in
``VA - PA``, mapping the lowest PAs; vmalloc starts at the first mapping beyond the physical
memory's span in the direct map; the vmemmap at the first mapping past vmalloc's fixed size.

i386 (``arch/x86/include/asm/pgtable_32_areas.h``, 2-level and PAE paging): lowmem (the direct
map at ``PAGE_OFFSET``, found as the kernel mapping of PA 0), vmalloc, the pkmap (kmap)
window, the LDT remap and the cpu_entry_area and fixmap at the top, each a PMD below the next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pagewalk.errors import hx
from pagewalk.inspect.regions.model import Layout, Region
from pagewalk.inspect.regions.probe import (
    GIB,
    TIB,
    TOP,
    first,
    first_kernel,
    number,
    round_up,
    vmcoreinfo,
)

if TYPE_CHECKING:
    from pagewalk.machine import Machine

#: by VA bits (4-level, 5-level): the fixed layout (mm.rst) and the regions KASLR moves
X86_64 = {
    48: {
        "user": 1 << 47, "guard": 0xFFFF800000000000, "ldt": 0xFFFF880000000000,
        "direct": 0xFFFF888000000000, "direct_size": 64 * TIB,
        "vmalloc": 0xFFFFC90000000000, "vmalloc_size": 32 * TIB,
        "vmemmap": 0xFFFFEA0000000000, "vmemmap_size": TIB,
        "kasan": 0xFFFFEC0000000000,
    },
    57: {
        "user": 1 << 56, "guard": 0xFF00000000000000, "ldt": 0xFF10000000000000,
        "direct": 0xFF11000000000000, "direct_size": 32 << 50,
        "vmalloc": 0xFFA0000000000000, "vmalloc_size": 12800 * TIB,
        "vmemmap": 0xFFD4000000000000, "vmemmap_size": 1 << 49,
        "kasan": 0xFFDF000000000000,
    },
}  # fmt: skip
CPU_ENTRY_AREA = 0xFFFFFE0000000000
KASAN_END = 0xFFFFFC0000000000
ESPFIX = 0xFFFFFF0000000000
EFI = 0xFFFFFFEF00000000
TEXT = 0xFFFFFFFF80000000
MODULES_END = 0xFFFFFFFFFF000000
VSYSCALL = 0xFFFFFFFFFF600000
#: Linux's x86 kernel entry point: ``__START_KERNEL_map + LOAD_PHYSICAL_ADDR`` before KASLR
START_KERNEL = 0xFFFFFFFF81000000


def x86_64(machine: Machine, va_bits: int) -> Layout:
    """The x86-64 layout for 4-level (``va_bits`` 48) or 5-level (57) paging."""
    c = X86_64[va_bits]
    why: list[str] = []
    found = bases(machine, va_bits)
    for key in ("direct", "vmalloc", "vmemmap"):
        at, how = found[key]
        why.append(f"{key} base {hx(at)} ({how})")
    direct, vmalloc, vmemmap = (found[k][0] for k in ("direct", "vmalloc", "vmemmap"))
    info = vmcoreinfo(machine)
    image = number(info, "KERNEL_IMAGE_SIZE") or GIB
    offset = number(info, "KERNELOFFSET")
    if offset is not None:
        why.append(f"kernel text at {hx(START_KERNEL + offset)} (vmcoreinfo KERNELOFFSET)")
    regions = [
        Region("user", 0, c["user"]),
        Region("guard hole", c["guard"], c["ldt"]),
        Region("LDT remap", c["ldt"], c["direct"]),
    ]
    if vmemmap < c["kasan"]:  # a KASAN kernel keeps the randomised regions below its shadow
        regions.append(Region("KASAN shadow", c["kasan"], KASAN_END))
    regions += [
        Region("direct map", direct, min(direct + c["direct_size"], vmalloc)),
        Region("vmalloc", vmalloc, vmalloc + c["vmalloc_size"]),
        Region("vmemmap", vmemmap, vmemmap + c["vmemmap_size"]),
        Region("cpu_entry_area", CPU_ENTRY_AREA, CPU_ENTRY_AREA + TIB // 2),
        Region("ESPfix", ESPFIX, ESPFIX + TIB // 2),
        Region("EFI", EFI, TEXT & ~(4 * GIB - 1)),
        Region("kernel text", TEXT, TEXT + image),
        Region("modules", TEXT + image, MODULES_END),
        Region("fixmap", MODULES_END, VSYSCALL),
        Region("vsyscall", VSYSCALL, VSYSCALL + 0x1000),
    ]
    levels = "5-level" if va_bits == 57 else "4-level"
    return Layout(f"linux-x86_64 ({levels})", regions, why)


def bases(machine: Machine, va_bits: int) -> dict[str, tuple[int, str]]:
    """The direct map, vmalloc and vmemmap bases, each with how it was found."""
    c = X86_64[va_bits]
    out: dict[str, tuple[int, str]] = {}
    lead = first(machine, c["direct"], CPU_ENTRY_AREA)
    if lead is not None and (lead.va - lead.pa) % GIB == 0 and lead.pa < GIB:
        out["direct"] = (lead.va - lead.pa, f"the tables: {hx(lead.va)} maps PA {hx(lead.pa)}")
    else:
        out["direct"] = (c["direct"], "the default: no 1 GiB-aligned map of low PAs found")
    span = round_up(max(machine.mem.end, 1), TIB)
    after = first(machine, out["direct"][0] + span, CPU_ENTRY_AREA)
    if after is not None:
        out["vmalloc"] = (after.va & ~(GIB - 1), f"the tables: first mapping {hx(after.va)}")
    else:
        out["vmalloc"] = (c["vmalloc"], "the default: nothing mapped past the direct map")
    past = first(machine, out["vmalloc"][0] + c["vmalloc_size"], CPU_ENTRY_AREA)
    if past is not None:
        out["vmemmap"] = (past.va & ~(GIB - 1), f"the tables: first mapping {hx(past.va)}")
    else:
        out["vmemmap"] = (c["vmemmap"], "the default: nothing mapped past vmalloc")
    return out


def i386(machine: Machine) -> Layout:
    """The i386 layout (2-level or PAE paging)."""
    why: list[str] = []
    pmd = 1 << machine.mode.halves[0].levels[-2].shift
    lead = first_kernel(machine, 1 << 30, 1 << 32)
    page_offset = 0xC0000000
    if lead is not None and lead.pa < pmd and (lead.va - lead.pa) % pmd == 0:
        page_offset = lead.va - lead.pa
        why.append(f"PAGE_OFFSET {hx(page_offset)} (the tables: {hx(lead.va)} maps PA "
                   f"{hx(lead.pa)})")  # fmt: skip
    else:
        why.append(f"PAGE_OFFSET {hx(page_offset)} (the default: no kernel map of PA 0 found)")
    high = page_offset
    for m in machine.maps((page_offset, 1 << 32)):
        if m.va - m.pa != page_offset:
            break
        high = m.end
    why.append(f"lowmem ends at {hx(high)} (the last mapping at VA = PA + PAGE_OFFSET)")
    top = first(machine, 0xFF000000, 1 << 32)
    cea = (top.va if top is not None else 0xFF800000) & ~(pmd - 1)
    ldt = (cea - 0x1000) & ~(pmd - 1)
    pkmap = (ldt - 0x1000) & ~(pmd - 1)
    why.append(f"cpu_entry_area at {hx(cea)} (the first mapping from 0xff000000), so the pkmap "
               f"at {hx(pkmap)}")  # fmt: skip
    regions = [
        Region("user", 0, page_offset),
        Region("lowmem", page_offset, high),
        Region("vmalloc", high, pkmap),
        Region("pkmap", pkmap, pkmap + pmd),
        Region("LDT remap", pkmap + pmd, cea),
        Region("cpu_entry_area/fixmap", cea, 0xFFFFF000),
    ]
    return Layout("linux-i386", regions, why)


__all__ = ["TOP", "X86_64", "bases", "i386", "x86_64"]
