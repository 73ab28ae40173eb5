"""Region naming on the QEMU Linux captures, checked against what the kernel itself says.

Truth comes from the kernel, not from the tables the layout is found in: the VMCOREINFO numbers
(AArch64's VMALLOC_START..., RISC-V's text in RAM, KERNELOFFSET), and kernel data read through
its symbols: x86-64's ``mem_section`` (a direct-map pointer, whose first ``section_mem_map``
encodes ``vmemmap_base``) and ``vmap_area_list`` (every vmalloc area, sorted), i386's the same
list. Every mapping of every capture must land in a named region.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.inspect.qemu_captures import capture

import pagewalk
from pagewalk.inspect.regions import Layout, detect, linux
from pagewalk.inspect.regions.linux_other import aarch64
from pagewalk.machine import Machine
from pagewalk.memory.elfcore import parse_vmcoreinfo

pytestmark = pytest.mark.qemu
GIB = 1 << 30
BINARY = {
    "x86_64": "qemu-system-x86_64", "x86_64-la57": "qemu-system-x86_64",
    "aarch64": "qemu-system-aarch64", "i386": "qemu-system-i386",
    "i386-pae": "qemu-system-i386", "i386-pae-pti": "qemu-system-i386",
    "riscv64-sv39": "qemu-system-riscv64", "riscv64-sv48": "qemu-system-riscv64",
    "riscv64-sv57": "qemu-system-riscv64",
}  # fmt: skip


def _open(profile: str) -> tuple[Machine, Path]:
    where = capture(profile, "", BINARY[profile])
    return pagewalk.open(where / "vmcore.elf"), where


def _info(where: Path) -> dict[str, str]:
    for name in ("vmcoreinfo.txt", "vmcoreinfo_ram.txt"):
        if (where / name).exists():
            return parse_vmcoreinfo((where / name).read_bytes())
    return {}


def _read(m: Machine, va: int, width: int) -> int:
    pa, _, fault = m.translate(va)
    assert fault is None and pa is not None, hex(va)
    return int.from_bytes(m.mem.read(pa, width), "little")


def _span(layout: Layout, name: str) -> tuple[int, int]:
    (r,) = [r for r in layout.regions if r.name == name]
    return r.start, r.end


def _vmap_areas(m: Machine, info: dict[str, str], width: int) -> list[int]:
    head = int(info["SYMBOL(vmap_area_list)"], 16)
    link = int(info["OFFSET(vmap_area.list)"])
    start = int(info["OFFSET(vmap_area.va_start)"])
    out, node = [], _read(m, head, width)
    while node != head and len(out) < 100000:
        out.append(_read(m, node - link + start, width))
        node = _read(m, node, width)
    return out


@pytest.mark.parametrize("profile", sorted(BINARY))
def test_every_mapping_is_named(profile: str) -> None:
    m, _ = _open(profile)
    layout = detect(m)
    assert layout is not None and layout.name.startswith("linux")
    assert layout.why and "layout linux" in layout.why[0]
    unnamed = [hex(r.va) for r in m.maps() if layout.name_of(r.va) is None]
    assert not unnamed


@pytest.mark.parametrize("profile", ["x86_64", "x86_64-la57"])
def test_x86_64_kaslr_bases_equal_the_kernel_s(profile: str) -> None:
    m, where = _open(profile)
    info = _info(where)
    layout = detect(m)
    assert layout is not None
    # the direct map: mem_section is a kmalloc'd pointer, so VA - PA is page_offset_base
    sections = int(info["SYMBOL(mem_section)"], 16)
    pa, _, _ = m.translate(sections)
    assert pa is not None
    assert _span(layout, "direct map")[0] == sections - pa
    # vmemmap: the first mem_section's section_mem_map encodes vmemmap_base (flags below 64)
    first_section = _read(m, sections, 8)
    assert _span(layout, "vmemmap")[0] == _read(m, first_section, 8) & ~0xFFF
    # vmalloc: every vmap_area lies inside, the lowest in its first GiB
    lo, hi = _span(layout, "vmalloc")
    areas = [a for a in _vmap_areas(m, info, 8) if a < 0xFFFFFFFF80000000]  # not modules
    assert areas and lo <= min(areas) < lo + GIB and max(areas) < hi
    stext = int(info["SYMBOL(_stext)"], 16)
    assert layout.name_of(stext) == "kernel text"
    assert stext == 0xFFFFFFFF81000000 + int(info["KERNELOFFSET"], 16)


def test_aarch64_from_the_tables_alone_equals_vmcoreinfo() -> None:
    m, where = _open("aarch64")
    info = _info(where)
    guessed = aarch64(m, {})  # VA_BITS from TTBR1, the image from the tables
    num = {k[7:-1]: int(v, 16) for k, v in info.items() if k.startswith("NUMBER(")
           and v.startswith("0x")}  # fmt: skip
    assert _span(guessed, "modules") == (num["MODULES_VADDR"], num["MODULES_END"])
    assert _span(guessed, "vmemmap") == (num["VMEMMAP_START"], num["VMEMMAP_END"])
    assert guessed.region(num["VMALLOC_START"]).name == "vmalloc"  # type: ignore[union-attr]
    assert guessed.region(num["VMALLOC_END"] - 1).name == "vmalloc"  # type: ignore[union-attr]
    text = num["MODULES_END"] + int(info["KERNELOFFSET"], 16)
    assert _span(guessed, "kernel image")[0] == text
    assert guessed.name_of(int(info["SYMBOL(_stext)"], 16)) == "kernel image"
    linear = next(iter(m.maps(_span(guessed, "linear map"))))
    page_offset = (1 << 64) - (1 << 48)
    assert linear.va - linear.pa == (page_offset - num["PHYS_OFFSET"]) % (1 << 64)


@pytest.mark.parametrize("profile", ["riscv64-sv39", "riscv64-sv48", "riscv64-sv57"])
def test_riscv_equals_vmcoreinfo_in_ram(profile: str) -> None:
    m, where = _open(profile)
    info = _info(where)
    num = {k[7:-1]: int(v, 0) for k, v in info.items() if k.startswith("NUMBER(")}
    layout = linux(m)
    assert _span(layout, "vmalloc") == (num["VMALLOC_START"], num["VMALLOC_END"])
    assert _span(layout, "vmemmap") == (num["VMEMMAP_START"], num["VMEMMAP_END"])
    assert _span(layout, "direct map")[0] == num["PAGE_OFFSET"]
    assert layout.name_of(num["MODULES_VADDR"]) == "modules"
    assert _span(layout, "kernel image")[0] == num["KERNEL_LINK_ADDR"]


@pytest.mark.parametrize("profile", ["i386", "i386-pae", "i386-pae-pti"])
def test_i386_lowmem_and_vmalloc(profile: str) -> None:
    m, where = _open(profile)
    info = _info(where)
    layout = detect(m)
    assert layout is not None
    for sym in ("_stext", "swapper_pg_dir", "init_uts_ns"):
        assert layout.name_of(int(info[f"SYMBOL({sym})"], 16)) == "lowmem", sym
    lo, hi = _span(layout, "vmalloc")
    areas = _vmap_areas(m, info, 4)
    assert areas and all(lo <= a < hi for a in areas)
