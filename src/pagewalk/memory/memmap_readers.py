"""Readers that turn every firmware memory-map source into one :class:`MemoryMap`.

Sources: JSON and TOML documents, Linux's ``BIOS-e820:`` boot-log lines (ACPI spec 6.5 §15,
"System Address Map Interfaces"), Multiboot 2 memory-map tags (Multiboot 2 spec §3.6.8) and Redox's
``MemoryArea`` lists (seeds/redox-pagination.rst), and UEFI ``EFI_MEMORY_DESCRIPTOR`` lists (UEFI
spec 2.10 §7.2). The format is told by the file's suffix or guessed from its content. The file
must be a regular file of at most 16 MiB; every malformed input (bad syntax, nesting too deep,
wrong types, numbers wider than 64 bits) is a MemoryMapError naming the file and the entry.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pagewalk.errors import ConfigError, MemoryMapError, hx
from pagewalk.memory.files import read_regular_file
from pagewalk.memory.memmap import FRAME_SIZE, MemoryMap, MemoryRegion, RegionType, shown
from pagewalk.memory.physical import parse_size

# ----------------------------------------------------------------------------------- readers
#: UEFI spec 2.10 table 7.10, EFI_MEMORY_TYPE; loader and boot-services memory is free once
#: ExitBootServices has been called, so it counts as usable.
UEFI_TYPES: tuple[tuple[str, RegionType], ...] = (
    ("EfiReservedMemoryType", RegionType.RESERVED),
    ("EfiLoaderCode", RegionType.USABLE),
    ("EfiLoaderData", RegionType.USABLE),
    ("EfiBootServicesCode", RegionType.USABLE),
    ("EfiBootServicesData", RegionType.USABLE),
    ("EfiRuntimeServicesCode", RegionType.RESERVED),
    ("EfiRuntimeServicesData", RegionType.RESERVED),
    ("EfiConventionalMemory", RegionType.USABLE),
    ("EfiUnusableMemory", RegionType.BAD),
    ("EfiACPIReclaimMemory", RegionType.ACPI_RECLAIMABLE),
    ("EfiACPIMemoryNVS", RegionType.ACPI_NVS),
    ("EfiMemoryMappedIO", RegionType.RESERVED),
    ("EfiMemoryMappedIOPortSpace", RegionType.RESERVED),
    ("EfiPalCode", RegionType.RESERVED),
    ("EfiPersistentMemory", RegionType.RESERVED),
)
_UEFI_BY_NAME = {name.lower(): (i, t) for i, (name, t) in enumerate(UEFI_TYPES)}
_E820_LINE = re.compile(
    r"BIOS-e820:\s*(?:\[mem\s+(?P<lo>0x[0-9a-fA-F]+)-(?P<hi>0x[0-9a-fA-F]+)\]\s*(?P<t1>.+)"
    r"|(?P<old_lo>[0-9a-fA-F]+)\s*-\s*(?P<old_end>[0-9a-fA-F]+)\s*\((?P<t2>[^)]+)\))"
)
FORMS = ("auto", "json", "toml", "e820", "multiboot2", "uefi")


def _number(value: object, what: str) -> int:
    found: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        found = value
    elif isinstance(value, str):
        with contextlib.suppress(ConfigError, ValueError, OverflowError):  # "1e999k" overflows
            found = parse_size(value)
    if found is None:
        raise MemoryMapError(f"{what}: {shown(value)} is not an address or size")
    if found.bit_length() > 64:
        raise MemoryMapError(f"{what}: {shown(found)} does not fit in 64 bits")
    return found


def _e820_type(text: str) -> tuple[RegionType, str]:
    label = text.strip()
    match = re.fullmatch(r"(?:\w+\s*)?\(?type\s+(\d+)\)?", label)
    if match:
        digits = match.group(1)
        if len(digits) > 10 or int(digits) >= 1 << 32:
            raise MemoryMapError(f"E820 type {shown(digits)} is not a 32-bit number")
        return RegionType.parse(int(digits)), label
    try:
        return RegionType.parse(label), label
    except MemoryMapError:
        return RegionType.RESERVED, label


def from_e820_log(text: str) -> MemoryMap:
    """Read the ``BIOS-e820:`` lines of a Linux boot log (``dmesg``); other lines are skipped.

    Both forms are read: ``BIOS-e820: [mem 0x0-0x9fbff] usable`` (inclusive end, Linux 3.x on)
    and ``BIOS-e820: 0000000000000000 - 000000000009fc00 (usable)`` (exclusive end, 2.6).

    Raises:
        MemoryMapError: for a ``BIOS-e820:`` line that cannot be read (with its line number),
            for a log without such lines, and for a map that fails the checks.
    """
    regions = []
    for number, line in enumerate(text.splitlines(), 1):
        if "BIOS-e820:" not in line:
            continue
        m = _E820_LINE.search(line)
        if m is None:
            raise MemoryMapError(f"line {number}: cannot read E820 entry {line.strip()!r}")
        if m["lo"] is not None:
            base, end, label = int(m["lo"], 16), int(m["hi"], 16) + 1, m["t1"]
        else:
            base, end, label = int(m["old_lo"], 16), int(m["old_end"], 16), m["t2"]
        try:
            kind, source = _e820_type(label)
        except MemoryMapError as exc:
            raise MemoryMapError(f"line {number}: {exc}") from None
        regions.append(MemoryRegion(base, end - base, kind, 0, source))
    if not regions:
        raise MemoryMapError("no 'BIOS-e820:' lines found")
    return MemoryMap(regions)


def _entry(item: Any, index: int, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise MemoryMapError(f"entry {index}: expected a table of {', '.join(keys)}")
    return {str(k).lower(): v for k, v in item.items()}


def from_multiboot2(entries: Iterable[Any]) -> MemoryMap:
    """Read Multiboot 2 memory-map entries or Redox ``MemoryArea`` records.

    Each entry has ``base_addr``, ``length``, ``type`` (or Redox's ``_type``) and optionally
    ``acpi`` (Redox) or ``reserved`` (Multiboot 2).
    """
    regions = []
    for i, raw in enumerate(entries):
        item = _entry(raw, i, ("base_addr", "length", "type"))
        where = f"entry {i}"
        base = _number(item.get("base_addr", item.get("base")), f"{where} base_addr")
        length = _number(item.get("length"), f"{where} length")
        code = item.get("type", item.get("_type"))
        if code is None:
            raise MemoryMapError(f"{where} at {hx(base)}: no type")
        acpi = _number(item.get("acpi", 0), f"{where} acpi")
        regions.append(MemoryRegion(base, length, RegionType.parse(code), acpi, str(code)))
    return MemoryMap(regions)


def from_uefi(descriptors: Iterable[Any]) -> MemoryMap:
    """Read UEFI memory descriptors: ``type``, ``physical_start``, ``number_of_pages``.

    ``type`` is a number or an ``EFI_MEMORY_TYPE`` name; pages are 4 KiB (UEFI spec §7.2).
    """
    regions = []
    for i, raw in enumerate(descriptors):
        item = _entry(raw, i, ("type", "physical_start", "number_of_pages"))
        where = f"descriptor {i}"
        base = _number(item.get("physical_start", item.get("physicalstart")), f"{where} start")
        pages = _number(item.get("number_of_pages", item.get("numberofpages")), f"{where} pages")
        code = item.get("type")
        if isinstance(code, int) and 0 <= code < len(UEFI_TYPES):
            name, kind = UEFI_TYPES[code]
        elif isinstance(code, str) and code.lower() in _UEFI_BY_NAME:
            name, kind = code, _UEFI_BY_NAME[code.lower()][1]
        else:
            raise MemoryMapError(f"{where} at {hx(base)}: unknown EFI memory type {code!r}")
        attribute = _number(item.get("attribute", 0), f"{where} attribute")
        regions.append(MemoryRegion(base, pages * FRAME_SIZE, kind, attribute, name))
    return MemoryMap(regions)


def from_regions(entries: Iterable[Any]) -> MemoryMap:
    """Read pagewalk's own form: ``base``, then ``length``/``size`` or ``end``, then ``type``."""
    regions = []
    for i, raw in enumerate(entries):
        item = _entry(raw, i, ("base", "length", "type"))
        base = _number(item.get("base"), f"region {i} base")
        if "end" in item:
            length = _number(item["end"], f"region {i} end") - base
        else:
            length = _number(item.get("length", item.get("size")), f"region {i} length")
        code = item.get("type", "usable")
        acpi = _number(item.get("acpi", 0), f"region {i} acpi")
        regions.append(MemoryRegion(base, length, RegionType.parse(code), acpi, str(code)))
    return MemoryMap(regions)


def from_document(doc: Any) -> MemoryMap:
    """Read a parsed JSON or TOML document in any of the list forms.

    A table with ``regions`` (or ``region``, as TOML's ``[[region]]`` writes it),
    ``multiboot2`` / ``memory_areas``, or ``uefi`` / ``descriptors``; or a bare list whose
    first entry's keys tell the form.
    """
    readers = (
        (("regions", "region"), from_regions),
        (("multiboot2", "memory_areas", "mmap"), from_multiboot2),
        (("uefi", "descriptors"), from_uefi),
    )
    if isinstance(doc, dict):
        for keys, reader in readers:
            for key in keys:
                if key in doc:
                    if not isinstance(doc[key], list):
                        raise MemoryMapError(f"{key!r} must be a list of regions")
                    return reader(doc[key])
        raise MemoryMapError("no 'regions', 'multiboot2' or 'uefi' list in the document")
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        first = {str(k).lower() for k in doc[0]}
        if "base_addr" in first:
            return from_multiboot2(doc)
        if first & {"physical_start", "physicalstart"}:
            return from_uefi(doc)
        return from_regions(doc)
    raise MemoryMapError("a memory map document must be a table or a non-empty list")


def parse_memory_map(text: str, *, form: str = "auto", strict: bool = False) -> MemoryMap:
    """Read a memory map from text in any supported form (see :data:`FORMS`).

    Raises:
        MemoryMapError: if the text is in no supported form or its map fails the checks.
    """
    if form not in FORMS:
        raise MemoryMapError(f"unknown memory map form {form!r} (use one of: {', '.join(FORMS)})")
    if form == "e820" or (form == "auto" and "BIOS-e820:" in text):
        found = from_e820_log(text)
    else:
        doc = _parse_document(text, form)
        if form == "multiboot2":
            found = from_multiboot2(_as_list(doc, ("multiboot2", "memory_areas", "mmap")))
        elif form == "uefi":
            found = from_uefi(_as_list(doc, ("uefi", "descriptors")))
        else:
            found = from_document(doc)
    return MemoryMap(found.regions, strict=True) if strict else found


def _as_list(doc: Any, keys: tuple[str, ...]) -> list[Any]:
    if isinstance(doc, dict):
        doc = next((doc[k] for k in keys if k in doc), None)
    if not isinstance(doc, list):
        raise MemoryMapError(f"expected a list of entries (or a table with {keys[0]!r})")
    return doc


def _first(exc: Exception) -> str:
    """The first clause of an exception's message (Python's advice after it is not for users)."""
    return str(exc).split(";")[0]


def _parse_document(text: str, form: str) -> Any:
    too_deep = "the document nests lists or tables too deeply"
    if form in ("auto", "json", "multiboot2", "uefi"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            if form == "json":
                raise MemoryMapError(f"bad JSON at line {exc.lineno}: {exc.msg}") from None
        except ValueError as exc:  # a number literal too long to convert
            raise MemoryMapError(f"bad JSON: a number too long ({_first(exc)})") from None
        except RecursionError:
            raise MemoryMapError(too_deep) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        if form == "toml":
            raise MemoryMapError(f"bad TOML: {exc}") from None
    except ValueError as exc:
        raise MemoryMapError(f"bad TOML: a number too long ({_first(exc)})") from None
    except RecursionError:
        raise MemoryMapError(too_deep) from None
    raise MemoryMapError("not a memory map: neither JSON, TOML nor 'BIOS-e820:' log lines")


def load_memory_map(
    path: str | os.PathLike[str], *, form: str = "auto", strict: bool = False
) -> MemoryMap:
    """Read a memory map file; ``.json`` and ``.toml`` suffixes pick the form under ``auto``.

    Raises:
        MemoryMapError: if the file is not a regular file, cannot be read, is larger than
            16 MiB or holds no valid map (the message names the file).
    """
    target = Path(path)
    data = read_regular_file(target, "memory map", error=MemoryMapError)
    text = data.decode("utf-8", errors="replace")
    if form == "auto" and target.suffix.lower() in (".json", ".toml"):
        form = target.suffix.lower()[1:]
    try:
        return parse_memory_map(text, form=form, strict=strict)
    except MemoryMapError as exc:
        raise MemoryMapError(f"{target}: {exc}") from None
