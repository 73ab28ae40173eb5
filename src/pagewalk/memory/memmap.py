"""A firmware memory map: typed physical regions, checked, with usable RAM in whole frames.

One model serves every source a kernel boots from: the BIOS E820 table (ACPI spec 6.5 §15,
"System Address Map Interfaces", whose ``Address Range Types`` and extended attributes are the
``type`` and ``acpi`` fields here), the Multiboot 2 memory-map tag (Multiboot 2 spec §3.6.8, type
1 available, 3 ACPI reclaimable, 4 NVS, 5 bad RAM), the UEFI ``EFI_MEMORY_DESCRIPTOR`` list
(UEFI spec 2.10 §7.2, ``GetMemoryMap``) and Redox's ``MemoryArea {base_addr, length, _type, acpi}``
(seeds/redox-pagination.rst). Overlapping regions (the same range given twice, whatever its
types), empty regions and regions past 2**64 are errors that name the region; unaligned edges are
reported, and usable memory is rounded inward to 4 KiB frames. The readers in
:mod:`pagewalk.memory.memmap_readers` turn each source into this one model.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pagewalk.errors import MemoryMapError, hx

FRAME_SIZE = 4096
_ADDR_LIMIT = 1 << 64


def shown(value: object) -> str:
    """A value as messages show it: numbers in hex, anything else by repr, cut short."""
    text = hx(value) if isinstance(value, int) and not isinstance(value, bool) else repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


class RegionType(enum.Enum):
    """What a region of the physical address space holds."""

    USABLE = "usable"
    RESERVED = "reserved"
    ACPI_RECLAIMABLE = "acpi-reclaimable"
    ACPI_NVS = "acpi-nvs"
    BAD = "bad"
    KERNEL = "kernel"

    @classmethod
    def parse(cls, value: str | int) -> RegionType:
        """Read a type name (``usable``, ``ACPI data``...) or an E820 / Multiboot 2 number.

        Raises:
            MemoryMapError: if the name is unknown.
        """
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise MemoryMapError(f"region type {shown(value)} is not a name or a number")
        if isinstance(value, int):
            # E820 and Multiboot 2 share numbers; 2 and anything unknown are reserved.
            return _E820_TYPES.get(value, cls.RESERVED)
        key = value.strip().lower().replace("_", "-").replace(" ", "-")
        found = TYPE_NAMES.get(key)
        if found is None:
            names = ", ".join(t.value for t in cls)
            raise MemoryMapError(f"unknown region type {shown(value)} (use one of: {names})")
        return found


_E820_TYPES = {
    1: RegionType.USABLE,
    2: RegionType.RESERVED,
    3: RegionType.ACPI_RECLAIMABLE,
    4: RegionType.ACPI_NVS,
    5: RegionType.BAD,
}

TYPE_NAMES = {t.value: t for t in RegionType} | {
    "available": RegionType.USABLE,
    "free": RegionType.USABLE,
    "ram": RegionType.USABLE,
    "acpi": RegionType.ACPI_RECLAIMABLE,
    "acpi-data": RegionType.ACPI_RECLAIMABLE,
    "acpi-reclaim": RegionType.ACPI_RECLAIMABLE,
    "unusable": RegionType.BAD,
    "bad-ram": RegionType.BAD,
    "kernel-image": RegionType.KERNEL,
}


@dataclass(frozen=True, order=True)
class MemoryRegion:
    """One region ``[base, base + length)`` of a firmware map.

    Attributes:
        base: first byte's physical address.
        length: size in bytes.
        type: what the region holds.
        acpi: the ACPI 3.0 extended attributes (E820) or Redox's ``acpi`` field, kept as given.
        source_type: the firmware's own type code or name, for display.
    """

    base: int
    length: int
    type: RegionType = RegionType.USABLE
    acpi: int = 0
    source_type: str = ""

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.base + self.length

    def __str__(self) -> str:
        last = hx(self.end - 1) if self.length > 0 else "(empty)"
        return f"{self.type.value} region {hx(self.base)}-{last}"

    def usable_frames(self) -> tuple[int, int] | None:
        """``(base, size)`` rounded inward to whole frames, or None if no whole frame is left."""
        lo = -(-self.base // FRAME_SIZE) * FRAME_SIZE
        hi = self.end // FRAME_SIZE * FRAME_SIZE
        return (lo, hi - lo) if hi > lo else None


class MemoryMap:
    """A checked list of regions, sorted by base.

    Args:
        regions: the regions in any order.
        strict: also reject regions whose edges are not 4 KiB aligned.

    Raises:
        MemoryMapError: for a zero or negative length, an address past 2**64, two regions that
            overlap, or (with ``strict``) an unaligned edge. The message names the region.
    """

    def __init__(self, regions: Iterable[MemoryRegion], *, strict: bool = False) -> None:
        # by address only: two regions over the same range (of different types) are an overlap
        spans = sorted(regions, key=lambda r: (r.base, r.end))
        for region in spans:
            if region.length <= 0:
                raise MemoryMapError(
                    f"{region.type.value} region at {hx(region.base)} has length "
                    f"{shown(region.length)}"
                )
            if region.base < 0 or region.end > _ADDR_LIMIT:
                raise MemoryMapError(f"{region} lies outside the 64-bit physical address space")
        for a, b in itertools.pairwise(spans):
            if b.base < a.end:
                raise MemoryMapError(f"{a} overlaps {b}")
        self.regions: tuple[MemoryRegion, ...] = tuple(spans)
        if strict and (problems := self.unaligned()):
            raise MemoryMapError(problems[0])

    def __iter__(self) -> Iterator[MemoryRegion]:
        return iter(self.regions)

    def __len__(self) -> int:
        return len(self.regions)

    def __repr__(self) -> str:
        return f"MemoryMap({len(self.regions)} regions, {hx(self.usable_bytes())} usable)"

    def unaligned(self) -> list[str]:
        """One sentence for each region whose base or end is not on a 4 KiB boundary."""
        out = []
        for region in self.regions:
            edges = [
                name
                for name, addr in (("base", region.base), ("end", region.end))
                if addr % FRAME_SIZE
            ]
            if edges:
                what = " and ".join(edges)
                fate = (
                    "rounded inward to whole frames"
                    if region.type is RegionType.USABLE
                    else "not frame-aligned"
                )
                out.append(f"{region}: {what} not 4 KiB aligned ({fate})")
        return out

    def usable(self) -> list[tuple[int, int]]:
        """Usable RAM as ``(base, size)`` runs of whole frames, neighbours merged."""
        runs: list[tuple[int, int]] = []
        for region in self.regions:
            if region.type is not RegionType.USABLE:
                continue
            frames = region.usable_frames()
            if frames is None:
                continue
            base, size = frames
            if runs and runs[-1][0] + runs[-1][1] == base:
                runs[-1] = (runs[-1][0], runs[-1][1] + size)
            else:
                runs.append((base, size))
        return runs

    def usable_bytes(self) -> int:
        """Bytes of usable RAM in whole frames."""
        return sum(size for _, size in self.usable())

    def top(self) -> int:
        """One past the highest byte of any region (0 for an empty map)."""
        return max((r.end for r in self.regions), default=0)

    def totals(self) -> dict[RegionType, int]:
        """Bytes per region type, as the firmware gave them (before rounding)."""
        sums = dict.fromkeys(RegionType, 0)
        for region in self.regions:
            sums[region.type] += region.length
        return sums

    def carve(self, base: int, length: int, kind: RegionType) -> MemoryMap:
        """A new map in which ``[base, base + length)`` of usable RAM becomes ``kind``.

        This is how a loader marks the kernel image (``RegionType.KERNEL``) in the map.

        Raises:
            MemoryMapError: if part of the range is not usable RAM.
        """
        end = base + length
        pieces: list[MemoryRegion] = []
        covered = 0
        for region in self.regions:
            lo, hi = max(region.base, base), min(region.end, end)
            if hi <= lo:
                pieces.append(region)
                continue
            if region.type is not RegionType.USABLE:
                raise MemoryMapError(
                    f"cannot mark {hx(base)}-{hx(end - 1)} as {kind.value}: it overlaps {region}"
                )
            covered += hi - lo
            for a, b, t in (
                (region.base, lo, region.type),
                (lo, hi, kind),
                (hi, region.end, region.type),
            ):
                if b > a:
                    pieces.append(MemoryRegion(a, b - a, t, region.acpi, region.source_type))
        if covered != length:
            raise MemoryMapError(
                f"cannot mark {hx(base)}-{hx(end - 1)} as {kind.value}: "
                "part of it is not in the map"
            )
        return MemoryMap(pieces)

    def to_json(self) -> dict[str, Any]:
        """The map, its totals and its warnings as plain JSON data."""
        return {
            "regions": [
                {
                    "base": hx(r.base),
                    "end": hx(r.end),
                    "length": r.length,
                    "type": r.type.value,
                    "acpi": r.acpi,
                    "source_type": r.source_type,
                }
                for r in self.regions
            ],
            "totals": {t.value: n for t, n in self.totals().items()},
            "usable_bytes": self.usable_bytes(),
            "usable_frames": self.usable_bytes() // FRAME_SIZE,
            "warnings": self.unaligned(),
        }
