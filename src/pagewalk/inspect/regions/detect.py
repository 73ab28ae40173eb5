"""Which layout names a machine's regions: ``--layout auto|linux|NAME|none``.

``auto`` looks, in order, at the ELF core's VMCOREINFO note (Linux writes it, with OSRELEASE),
at the profile a ``pagewalk boot`` image names in ``IMAGE.json``, and at the tables: Linux's
kernel text mapping at ``-2 GiB`` (x86-64, RISC-V), its linear map and kernel text in
the TTBR1 half (AArch64), or its lowmem map of PA 0 at a PMD-aligned
``PAGE_OFFSET`` (i386). ``linux`` picks the Linux layout of the machine's architecture (a table
keyed by ``ArchFacts.family`` and the VA width: Intel SDM vol. 3A ch. 4, Arm ARM D8, RISC-V
privileged spec). Every choice says in its ``why`` lines what it found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pagewalk.errors import ConfigError, PagingError, hx
from pagewalk.formats.base import Perm
from pagewalk.inspect.regions import linux_other, linux_x86
from pagewalk.inspect.regions.linux_x86 import CPU_ENTRY_AREA
from pagewalk.inspect.regions.model import Layout
from pagewalk.inspect.regions.probe import first_kernel, linear_bits, vmcoreinfo
from pagewalk.inspect.regions.seeds import SEEDS, for_profile, seed_layout

if TYPE_CHECKING:
    from pagewalk.machine import Machine

#: every ``--layout`` value
CHOICES = ("auto", "linux", *SEEDS, "none")


def _x86(machine: Machine) -> Layout:
    bits = linear_bits(machine)
    if bits in linux_x86.X86_64:
        return linux_x86.x86_64(machine, bits)
    return linux_x86.i386(machine)


#: per family, the Linux layout builder
LINUX: dict[str, Callable[[Machine], Layout]] = {
    "x86": _x86,
    "arm": lambda m: linux_other.aarch64(m, vmcoreinfo(m)),
    "riscv": linux_other.riscv,
}


def linux(machine: Machine) -> Layout:
    """The Linux layout of the machine's architecture."""
    return LINUX[machine.mode.facts.family](machine)


def detect(machine: Machine, choice: str = "auto") -> Layout | None:
    """The layout ``choice`` names (None for ``none``, or ``auto`` finding nothing).

    Raises:
        ConfigError: an unknown choice.
    """
    choice = choice.lower()
    if choice == "none":
        return None
    if choice == "linux":
        return _said(linux(machine), "--layout linux")
    if choice in SEEDS:
        return seed_layout(choice, f"--layout {choice}")
    if choice != "auto":
        raise ConfigError(f"--layout {choice!r}: known layouts are {', '.join(CHOICES)}")
    info = vmcoreinfo(machine)
    if "OSRELEASE" in info:
        return _said(linux(machine), f"Linux {info['OSRELEASE']} (the core's VMCOREINFO)")
    profile = (machine.saved or {}).get("profile")
    seed = for_profile(profile) if isinstance(profile, str) else None
    if seed is not None:
        return seed_layout(seed, f"profile {profile} (IMAGE.json)")
    sign = _linux_signature(machine)
    if sign is not None:
        return _said(linux(machine), sign)
    return None


def _said(layout: Layout, how: str) -> Layout:
    layout.why.insert(0, f"layout {layout.name}: {how}")
    return layout


def _linux_signature(machine: Machine) -> str | None:
    """Why the tables look like Linux's (two of its marks), or None."""
    facts = machine.mode.facts
    bits = linear_bits(machine)
    if facts.family in ("x86", "riscv") and bits > 32:
        text = first_kernel(machine, 0xFFFFFFFF80000000, 0xFFFFFFFFC0000000)
        if text is None or not text.perm & Perm.EXEC:
            return None
        if facts.family == "x86":  # the cpu_entry_area is always mapped
            other = first_kernel(machine, CPU_ENTRY_AREA, CPU_ENTRY_AREA + (1 << 39))
            mark = "the cpu_entry_area"
        else:
            _, _, _, _, direct, kasan = linux_other.RISCV[bits]
            other = first_kernel(machine, direct, kasan)
            mark = "the direct map"
        if other is None:
            return None
        return f"the tables: kernel text at {hx(text.va)} (Linux's -2 GiB) and {mark}"
    if facts.family == "arm":
        return _arm64_signature(machine)
    if facts.family == "x86":
        low = first_kernel(machine, 0xC0000000, 0xC0400000)
        top = first_kernel(machine, 0xFF000000, 0xFFFFF000)
        if low is not None and low.va - low.pa == 0xC0000000 and top is not None:
            return (f"the tables: lowmem maps PA 0 at 0xc0000000 (Linux's PAGE_OFFSET) and "
                    f"the fixmap is mapped ({hx(top.va)})")  # fmt: skip
    return None


def _arm64_signature(machine: Machine) -> str | None:
    """arm64's marks: a non-executable linear map in the lower half of the TTBR1 range
    ``[PAGE_OFFSET, PAGE_END)``, executable supervisor code above ``PAGE_END`` (the kernel
    image in vmalloc) and a non-executable vmemmap at ``-2**(VA_BITS-6)``
    (``arch/arm64/include/asm/memory.h``)."""
    bits = linux_other.kernel_va_bits(machine)
    if bits not in (39, 48):
        return None
    page_offset, page_end = (1 << 64) - (1 << bits), (1 << 64) - (1 << (bits - 1))
    linear = first_kernel(machine, page_offset, page_end)
    if linear is None or linear.perm & Perm.EXEC:
        return None
    try:
        text = next(
            (m for m in machine.maps((page_end, 1 << 64))
             if m.perm & Perm.EXEC and not m.perm & Perm.USER),
            None,
        )  # fmt: skip
    except PagingError:
        return None
    vmemmap = (1 << 64) - (1 << (bits - 6))  # the struct pages of RAM: always mapped
    pages = first_kernel(machine, vmemmap, vmemmap + (1 << (bits - 7)))
    if text is None or pages is None or pages.perm & Perm.EXEC:
        return None
    return (
        f"the tables: a linear map at {hx(linear.va)} (Linux's PAGE_OFFSET for VA_BITS {bits}), "
        f"kernel text at {hx(text.va)} and the vmemmap at {hx(pages.va)}"
    )
