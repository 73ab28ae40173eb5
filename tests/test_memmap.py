"""Firmware memory maps: every reader, the checks, and rounding usable RAM to frames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pagewalk.errors import MemoryMapError
from pagewalk.memory.memmap import (
    MemoryMap,
    MemoryRegion,
    RegionType,
)
from pagewalk.memory.memmap_readers import (
    from_document,
    load_memory_map,
    parse_memory_map,
)

QEMU_LOG = """\
[    0.000000] BIOS-provided physical RAM map:
[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
[    0.000000] BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved
[    0.000000] BIOS-e820: [mem 0x00000000000f0000-0x00000000000fffff] reserved
[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x0000000007fdffff] usable
[    0.000000] BIOS-e820: [mem 0x0000000007fe0000-0x0000000007ffffff] ACPI data
[    0.000000] BIOS-e820: [mem 0x00000000feffc000-0x00000000feffffff] ACPI NVS
[    0.000000] BIOS-e820: [mem 0x0000000100000000-0x000000017fffffff] persistent (type 7)
[    0.000000] e820: update [mem 0x00000000-0x00000fff] usable ==> reserved
"""

OLD_LOG = """\
 BIOS-e820: 0000000000000000 - 000000000009f000 (usable)
 BIOS-e820: 0000000000100000 - 0000000020000000 (usable)
 BIOS-e820: 00000000fec00000 - 00000000fec01000 (reserved)
"""


def test_e820_log_lines() -> None:
    memmap = parse_memory_map(QEMU_LOG)
    types = [r.type for r in memmap]
    assert types == [
        RegionType.USABLE,
        RegionType.RESERVED,
        RegionType.RESERVED,
        RegionType.USABLE,
        RegionType.ACPI_RECLAIMABLE,
        RegionType.ACPI_NVS,
        RegionType.RESERVED,
    ]
    assert memmap.regions[0].length == 0x9FC00
    # usable RAM rounded inward: 0x0-0x9efff and 0x100000-0x7fdffff
    assert memmap.usable() == [(0, 0x9F000), (0x100000, 0x7EE0000)]
    assert memmap.totals()[RegionType.ACPI_NVS] == 0x4000
    assert memmap.top() == 0x180000000
    assert any("0x9fbff: end not 4 KiB aligned" in w for w in memmap.unaligned())


def test_old_e820_lines_have_exclusive_ends() -> None:
    memmap = parse_memory_map(OLD_LOG, form="e820")
    assert (memmap.regions[0].base, memmap.regions[0].length) == (0, 0x9F000)
    assert memmap.usable_bytes() == 0x9F000 + 0x1FF00000


def test_bad_e820_line_names_its_line() -> None:
    with pytest.raises(MemoryMapError, match="line 2: cannot read E820"):
        parse_memory_map("boot\nBIOS-e820: garbage\n")


def test_json_regions_and_toml_regions_agree() -> None:
    doc = {
        "regions": [
            {"base": "0x0", "length": "640K", "type": "usable"},
            {"base": 0x100000, "end": "0x200000", "type": "kernel"},
            {"base": "0x200000", "size": "14M", "type": "available"},
            {"base": "0xf0000", "length": "0x10000", "type": 2},
        ]
    }
    toml = """
[[region]]
base = 0x0
length = "640K"
type = "usable"
[[region]]
base = 0x100000
end = 0x200000
type = "kernel"
[[region]]
base = 0x200000
size = "14M"
type = "available"
[[region]]
base = 0xf0000
length = 0x10000
type = 2
"""
    a = parse_memory_map(json.dumps(doc))
    b = parse_memory_map(toml)
    assert [(r.base, r.length, r.type) for r in a] == [(r.base, r.length, r.type) for r in b]
    assert a.totals()[RegionType.KERNEL] == 0x100000
    assert a.usable() == [(0, 0xA0000), (0x200000, 0xE00000)]


def test_multiboot2_and_redox_memory_areas() -> None:
    areas = [
        {"base_addr": 0x500, "length": 0x9FB00, "_type": 1, "acpi": 1},
        {"base_addr": "0x100000", "length": "0x1000000", "type": 1, "acpi": 1},
        {"base_addr": 0x1100000, "length": 0x1000, "type": 5},
    ]
    memmap = from_document(areas)
    assert memmap.regions[0].acpi == 1
    assert memmap.regions[2].type is RegionType.BAD
    assert memmap.usable()[0] == (0x1000, 0x9F000)
    assert parse_memory_map(json.dumps({"multiboot2": areas}), form="multiboot2") is not None


def test_uefi_descriptors() -> None:
    descriptors = [
        {"type": "EfiConventionalMemory", "physical_start": 0, "number_of_pages": 160},
        {"type": 3, "physical_start": "0x100000", "number_of_pages": 256},
        {"type": "EfiACPIMemoryNVS", "physical_start": "0x200000", "number_of_pages": 1},
        {"type": 11, "physical_start": "0xfec00000", "number_of_pages": 1, "attribute": 1},
    ]
    memmap = parse_memory_map(json.dumps({"uefi": descriptors}))
    assert [r.type for r in memmap] == [
        RegionType.USABLE,
        RegionType.USABLE,  # boot-services code is free after ExitBootServices
        RegionType.ACPI_NVS,
        RegionType.RESERVED,
    ]
    assert memmap.regions[3].source_type == "EfiMemoryMappedIO"
    with pytest.raises(MemoryMapError, match="descriptor 0 at 0x0: unknown EFI memory type 99"):
        parse_memory_map(json.dumps([{"type": 99, "physical_start": 0, "number_of_pages": 1}]))


@pytest.mark.parametrize(
    ("regions", "message"),
    [
        ([MemoryRegion(0x1000, 0)], "usable region at 0x1000 has length 0"),
        (
            [MemoryRegion(0, 0x2000), MemoryRegion(0x1000, 0x1000, RegionType.RESERVED)],
            "usable region 0x0-0x1fff overlaps reserved region 0x1000-0x1fff",
        ),
        ([MemoryRegion((1 << 64) - 0x1000, 0x2000)], "outside the 64-bit"),
    ],
)
def test_checks_name_the_bad_region(regions: list[MemoryRegion], message: str) -> None:
    with pytest.raises(MemoryMapError, match=message):
        MemoryMap(regions)


def test_strict_rejects_unaligned_edges() -> None:
    with pytest.raises(MemoryMapError, match="0x9fbff: end not 4 KiB aligned"):
        parse_memory_map(QEMU_LOG, strict=True)


def test_usable_sliver_smaller_than_a_frame_vanishes() -> None:
    memmap = MemoryMap([MemoryRegion(0x1800, 0x1000), MemoryRegion(0x3000, 0x1000)])
    assert memmap.usable() == [(0x3000, 0x1000)]


def test_carve_marks_the_kernel_image() -> None:
    memmap = MemoryMap([MemoryRegion(0, 0x1000000)]).carve(0x100000, 0x80000, RegionType.KERNEL)
    assert [(r.base, r.type) for r in memmap] == [
        (0, RegionType.USABLE),
        (0x100000, RegionType.KERNEL),
        (0x180000, RegionType.USABLE),
    ]
    with pytest.raises(MemoryMapError, match="overlaps kernel region"):
        memmap.carve(0x100000, 0x1000, RegionType.RESERVED)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "neither JSON, TOML"),
        ('{"regions": [{"base": "zz", "length": 1}]}', r"region 0 base: 'zz'"),
        ('{"regions": [{"base": 0, "length": 4096, "type": "ram?"}]}', "unknown region type"),
        ('{"other": []}', "no 'regions'"),
        ("[]", "non-empty list"),
    ],
)
def test_bad_documents(text: str, message: str) -> None:
    with pytest.raises(MemoryMapError, match=message):
        parse_memory_map(text)


def test_load_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "map.json"
    bad.write_text("[1, 2]")
    with pytest.raises(MemoryMapError, match=r"map\.json: .*non-empty list|map\.json: entry 0"):
        load_memory_map(bad)
    with pytest.raises(MemoryMapError, match="cannot read"):
        load_memory_map(tmp_path / "missing.toml")
    with pytest.raises(MemoryMapError, match="unknown memory map form"):
        parse_memory_map("", form="yaml")
