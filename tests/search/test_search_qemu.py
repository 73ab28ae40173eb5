"""``search`` on the QEMU Linux captures: "Linux version" (the kernel's ``linux_banner``) is
found at the same PA through the kernel's own mapping and through the direct/linear map, and
every hit equals the page-by-page oracle of :mod:`tests.search.test_search`."""

from __future__ import annotations

import pytest
from tests.inspect.qemu_captures import capture
from tests.search.test_search import oracle

import pagewalk
from pagewalk.search import Pattern, search

pytestmark = pytest.mark.qemu

#: profile -> (QEMU binary, where the kernel image is mapped: VAs at or above this)
PROFILES = {
    "x86_64": ("qemu-system-x86_64", 0xFFFFFFFF80000000),
    "x86_64-la57": ("qemu-system-x86_64", 0xFFFFFFFF80000000),
    "aarch64": ("qemu-system-aarch64", 0xFFFF800000000000),
    "riscv64-sv39": ("qemu-system-riscv64", 0xFFFFFFFF80000000),
    "riscv64-sv48": ("qemu-system-riscv64", 0xFFFFFFFF80000000),
    "riscv64-sv57": ("qemu-system-riscv64", 0xFFFFFFFF80000000),
}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_banner_through_both_mappings(profile: str) -> None:
    binary, text_start = PROFILES[profile]
    machine = pagewalk.open(capture(profile, "", binary) / "vmcore.elf")
    pattern = Pattern.string("Linux version ")
    hits = [(h.va, h.pa, h.perm.letters()) for h in search(machine, pattern)]
    assert hits == oracle(machine, pattern)
    by_pa: dict[int, list[int]] = {}
    for va, pa, _ in hits:
        by_pa.setdefault(pa, []).append(va)
    both = [vas for vas in by_pa.values() if min(vas) < text_start <= max(vas)]
    assert both, f"no PA seen through both the kernel image and the linear map: {hits}"


@pytest.mark.parametrize("profile", ["i386", "i386-pae", "i386-pae-pti"])
def test_i386_lowmem_and_pointers(profile: str) -> None:
    machine = pagewalk.open(capture(profile, "", "qemu-system-i386") / "vmcore.elf")
    for pattern in (Pattern.string("Linux version "), Pattern.pointer(0xC1000000, 0xC1001000, 4)):
        assert [(h.va, h.pa) for h in search(machine, pattern)] == [
            (va, pa) for va, pa, _ in oracle(machine, pattern)
        ]
