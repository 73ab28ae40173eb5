"""The layouts of the seed kernels pagewalk boots (``shared/seeds/``, ``pagewalk.kernel.profiles``).

Each is the profile's own constants, so a region is named where the profile puts it: PowerNex
(the direct map at ``0xFFFF800000000000``, the kernel at ``-2 GiB``, its heap), Redox (the
physical map, the kernel and its heap at ``KERNEL_OFFSET``), Comus (the identity-mapped kernel,
its VA pool, the paging window page), seL4-style AArch64 (the RAM window, the kernel image;
Arm ARM D8.2 halves) and atOS-RT (its identity-mapped kernel regions and the user program and
library zones; Intel SDM vol. 3A §4.3 32-bit paging).
"""

from __future__ import annotations

from collections.abc import Callable

from pagewalk.inspect.regions.model import Layout, Region

_GIB = 1 << 30
_TOP = 1 << 64


def powernex() -> list[Region]:
    from pagewalk.kernel.profiles import powernex as p

    return [
        Region("user", 0, 1 << 47),
        Region("direct map", p.DIRECT_MAP, p.DIRECT_MAP + (1 << 39)),
        Region("kernel image", p.HIGH, p.HIGH + p.KERNEL_END),
        Region("kernel heap", p.HEAP, p.HEAP + p.HEAP_SIZE),
    ]


def redox() -> list[Region]:
    from pagewalk.kernel.profiles import redox as p

    return [
        Region("identity", 0, p.KERNEL_END),
        Region("user", p.KERNEL_END, 1 << 47),
        Region("physmap", p.PHYS_OFFSET, p.PHYS_OFFSET + (1 << 39)),
        Region("kernel image", p.KERNEL_OFFSET, p.KERNEL_OFFSET + _GIB),
        Region("kernel heap", p.KERNEL_OFFSET + _GIB, p.KERNEL_OFFSET + 2 * _GIB),
    ]


def comus() -> list[Region]:
    from pagewalk.kernel.profiles import comus as p

    return [
        Region("kernel identity", p.KERNEL_START, p.KERNEL_END),
        Region("user", p.KERNEL_END, p.USER_STACK_TOP + 0x1000),
        Region("kernel VA pool", *p.KERNEL_VA_POOL),
        Region("paging window", p.PAGING_WINDOW, _TOP),
    ]


def sel4() -> list[Region]:
    from pagewalk.kernel.profiles import sel4 as p

    return [
        Region("user", 0, 1 << 48),
        Region("RAM window", p.RAM_WINDOW, p.RAM_WINDOW + (1 << 39)),
        Region("kernel image", p.KERNEL_VIRT, _TOP),
    ]


def atos() -> list[Region]:
    from pagewalk.kernel.profiles import atos as p

    regions = [Region(name, start, end) for name, start, end, _, _ in p.REGIONS]
    return [
        *regions,
        Region("user programs", p.USER_BASE, p.USER_END),
        Region("user libraries", p.LIB_BASE, p.LIB_END),
    ]


#: layout name -> (profile names that select it, its regions)
SEEDS: dict[str, tuple[tuple[str, ...], Callable[[], list[Region]]]] = {
    "powernex": (("powernex",), powernex),
    "redox": (("redox",), redox),
    "comus": (("comus",), comus),
    "sel4": (("sel4-aarch64", "sel4"), sel4),
    "atos": (("atos", "atos-rt"), atos),
}


def seed_layout(name: str, why: str) -> Layout:
    """The seed layout ``name`` (a key of :data:`SEEDS`)."""
    return Layout(name, SEEDS[name][1](), [why])


def for_profile(profile: str) -> str | None:
    """The seed layout of a ``boot`` profile name, or None."""
    key = profile.lower().replace("_", "-")
    return next((name for name, (names, _) in SEEDS.items() if key in names), None)
