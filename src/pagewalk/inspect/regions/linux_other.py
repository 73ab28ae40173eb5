"""Linux's AArch64 and RISC-V virtual memory layouts.

AArch64 (``arch/arm64/include/asm/memory.h``, 4 KiB granules, VA_BITS 39 or 48; Arm ARM D8.2
for the TTBR0/TTBR1 halves): the linear map fills the lower half of the kernel's range
``[PAGE_OFFSET, PAGE_END)``; then modules (128 MiB), vmalloc up to 256 MiB below the vmemmap,
the fixmap, the PCI I/O window (16 MiB, 8 MiB below the vmemmap) and the vmemmap. The kernel
image sits in vmalloc at ``KIMAGE_VADDR`` (= ``MODULES_END``) plus the KASLR offset. The
VMCOREINFO note gives all of these (``NUMBER(VMALLOC_START)``, ``KERNELOFFSET``...); without
it they follow from VA_BITS (from the TTBR1 half) and the kernel image is the first executable
kernel mapping in vmalloc. The linear map's offset (randomised by ``memstart_addr``) is read from
its first mapping.

RISC-V (``Documentation/arch/riscv/vm-layout.rst``, Sv39/48/57, RISC-V privileged spec §10.3-6):
fixmap, PCI I/O, vmemmap, vmalloc, the direct map, KASAN, then modules and the kernel in the top
2 GiB each way; fixed addresses (no memory randomisation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pagewalk.errors import hx
from pagewalk.formats.base import Perm
from pagewalk.inspect.regions.model import Layout, Region
from pagewalk.inspect.regions.probe import GIB, TOP, first, linear_bits, number

if TYPE_CHECKING:
    from pagewalk.enumerate_runs import Mapping
    from pagewalk.machine import Machine

MIB = 1 << 20
#: by VA bits: fixmap, PCI I/O, vmemmap, vmalloc, direct map, KASAN shadow starts
RISCV = {
    39: (0xFFFFFFC4FEA00000, 0xFFFFFFC4FF000000, 0xFFFFFFC500000000, 0xFFFFFFC600000000,
         0xFFFFFFD600000000, 0xFFFFFFF700000000),
    48: (0xFFFF8D7FFEA00000, 0xFFFF8D7FFF000000, 0xFFFF8D8000000000, 0xFFFF8F8000000000,
         0xFFFFAF8000000000, 0xFFFFEF8000000000),
    57: (0xFF1BFFFFFEA00000, 0xFF1BFFFFFF000000, 0xFF1C000000000000, 0xFF20000000000000,
         0xFF60000000000000, 0xFFDF000000000000),
}  # fmt: skip
RISCV_MODULES = 0xFFFFFFFF00000000
RISCV_KERNEL = 0xFFFFFFFF80000000


def kernel_va_bits(machine: Machine) -> int:
    """The width of the kernel half (TTBR1's VA_BITS): ``2**64 - 2**bits`` is its start."""
    return (TOP - machine.mode.halves[-1].va_start).bit_length() - 1


def aarch64(machine: Machine, info: dict[str, str]) -> Layout:
    """The arm64 layout; ``info`` is the VMCOREINFO (may be empty)."""
    why: list[str] = []
    bits = number(info, "VA_BITS") or kernel_va_bits(machine)
    page_offset, page_end = TOP - (1 << bits), TOP - (1 << (bits - 1))
    vmemmap = number(info, "VMEMMAP_START") or TOP - (1 << (bits - 6))
    vmemmap_end = number(info, "VMEMMAP_END") or vmemmap + (1 << (bits - 7))
    modules = number(info, "MODULES_VADDR") or page_end
    modules_end = number(info, "MODULES_END") or modules + 128 * MIB
    vmalloc = number(info, "VMALLOC_START") or modules_end
    vmalloc_end = number(info, "VMALLOC_END") or vmemmap - 256 * MIB
    source = "VMCOREINFO numbers" if "NUMBER(VA_BITS)" in info else "the TTBR1 half, memory.h"
    why.append(f"VA_BITS {bits}: {source}")
    linear = first(machine, page_offset, page_end)
    if linear is not None:
        why.append(f"linear map: PA {hx(linear.pa)} at {hx(linear.va)} (the tables)")
    image = _kernel_image(machine, info, modules_end, vmalloc, vmalloc_end, why)
    regions = [
        Region("user", 0, machine.mode.halves[0].va_end),
        Region("linear map", page_offset, page_end),
        Region("modules", modules, modules_end),
        Region("vmalloc", vmalloc, vmalloc_end),
        Region("fixmap", vmalloc_end, vmemmap - 24 * MIB),
        Region("PCI I/O", vmemmap - 24 * MIB, vmemmap - 8 * MIB),
        Region("vmemmap", vmemmap, vmemmap_end),
    ]
    if image is not None:
        regions.append(Region("kernel image", *image))
    return Layout(f"linux-aarch64 (VA_BITS {bits})", regions, why)


def _kernel_image(
    machine: Machine, info: dict[str, str], kimage: int, lo: int, hi: int, why: list[str]
) -> tuple[int, int] | None:
    """Where the kernel image is mapped: from KERNELOFFSET, else the cluster of mappings with
    one VA - PA offset (``kimage_voffset``, gaps under 2 MiB) around the largest executable
    kernel range in vmalloc (its text); the image starts 2 MiB aligned."""
    offset = number(info, "KERNELOFFSET")
    if offset is not None:  # read only from the image on, and only as far as it goes
        start = kimage + offset
        why.append(f"kernel image at {hx(start)} (KIMAGE_VADDR + vmcoreinfo KERNELOFFSET)")
        last: Mapping | None = None
        for m in machine.maps((start, hi)):
            if last is not None and not _joins(last, m, last.va - last.pa):
                break
            last = m
        return None if last is None else (start, last.end)
    runs = list(machine.maps((lo, hi)))
    text = [i for i, m in enumerate(runs) if m.perm & Perm.EXEC and not m.perm & Perm.USER]
    if not text:
        return None
    at = max(text, key=lambda i: runs[i].size)
    delta = runs[at].va - runs[at].pa
    lo_i, hi_i = at, at
    while lo_i > 0 and _joins(runs[lo_i - 1], runs[lo_i], delta):
        lo_i -= 1
    while hi_i + 1 < len(runs) and _joins(runs[hi_i], runs[hi_i + 1], delta):
        hi_i += 1
    start = runs[lo_i].va & ~(2 * MIB - 1)
    why.append(f"kernel image at {hx(start)} (the mappings at one VA - PA offset around the "
               f"largest executable kernel range, {hx(runs[at].va)})")  # fmt: skip
    return start, runs[hi_i].end


def _joins(a: Mapping, b: Mapping, delta: int) -> bool:
    return a.va - a.pa == b.va - b.pa == delta and b.va - a.end < 2 * MIB


def riscv(machine: Machine) -> Layout:
    """The RISC-V layout of Sv39, Sv48 or Sv57."""
    bits = linear_bits(machine)
    fixmap, pci, vmemmap, vmalloc, direct, kasan = RISCV[bits]
    why = [f"Sv{bits}: fixed layout (vm-layout.rst)"]
    lead = first(machine, direct, kasan)
    if lead is not None:
        why.append(f"direct map: PA {hx(lead.pa)} at {hx(lead.va)} (the tables)")
    regions = [
        Region("user", 0, machine.mode.halves[0].va_end),
        Region("fixmap", fixmap, pci),
        Region("PCI I/O", pci, vmemmap),
        Region("vmemmap", vmemmap, vmalloc),
        Region("vmalloc", vmalloc, direct),
        Region("direct map", direct, kasan - GIB if bits == 39 else kasan),
        Region("KASAN shadow", kasan, RISCV_MODULES),
        Region("modules", RISCV_MODULES, RISCV_KERNEL),
        Region("kernel image", RISCV_KERNEL, TOP),
    ]
    return Layout(f"linux-riscv (Sv{bits})", regions, why)
