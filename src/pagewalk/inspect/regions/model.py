"""Named regions of a virtual address space, and the lookup of each VA's region in bulk.

One idea: a *layout* is a sorted list of disjoint ``[start, end)`` intervals with names (the
direct map, vmalloc, the kernel image...), built by painting: later regions win where they
overlap earlier ones, so a layout states the fixed map first and lays what it found in the
tables (a randomised base, the kernel image inside vmalloc) over it. Looking a column of VAs up
is one ``numpy.searchsorted``. Addresses are canonical VAs as Intel SDM vol. 3A §3.3.7.1, Arm
ARM D8.2 (TTBR0/TTBR1 halves) and the RISC-V privileged spec (Sv39/48/57) define them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pagewalk.errors import hx

_TOP = 1 << 64


@dataclass(frozen=True)
class Region:
    """``name`` covers VAs ``[start, end)`` (``end`` may be 2**64)."""

    name: str
    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.name} {hx(self.start)}-{hx(self.end - 1)}"


@dataclass(eq=False)
class Layout:
    """A named layout: its regions (disjoint, sorted) and how its bases were found (hashed by
    identity, so the writers can cache its texts)."""

    name: str
    regions: list[Region]
    why: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.regions = paint(self.regions)
        self._starts = np.array([r.start for r in self.regions], dtype=np.uint64)
        self._ends = np.array([r.end - 1 for r in self.regions], dtype=np.uint64)
        self.names = [r.name for r in self.regions]

    def region(self, va: int | None) -> Region | None:
        """The region holding ``va``, or None."""
        if va is None:
            return None
        for r in self.regions:
            if r.start <= va < r.end:
                return r
        return None

    def name_of(self, va: int | None) -> str | None:
        """The name of the region holding ``va``, or None."""
        found = self.region(va)
        return None if found is None else found.name

    def index(self, vas: npt.NDArray[np.uint64]) -> npt.NDArray[np.intp]:
        """Each VA's region, as an index into :attr:`names`; ``len(names)`` for none."""
        i = np.searchsorted(self._starts, vas, side="right").astype(np.intp) - 1
        safe = np.maximum(i, 0)
        inside = (i >= 0) & (vas <= self._ends[safe]) if len(self.regions) else i < -1
        return np.where(inside, safe, len(self.regions))


def paint(regions: list[Region]) -> list[Region]:
    """Disjoint sorted regions: where two overlap, the later one wins; empty ones go;
    neighbours of one name join."""
    cuts = sorted({p for r in regions if r.start < r.end for p in (r.start, r.end)})
    out: list[Region] = []
    for lo, hi in itertools.pairwise(cuts):
        owner = None
        for r in regions:
            if r.start <= lo and hi <= r.end:
                owner = r.name
        if owner is None:
            continue
        if out and out[-1].name == owner and out[-1].end == lo:
            out[-1] = Region(owner, out[-1].start, hi)
        else:
            out.append(Region(owner, lo, min(hi, _TOP)))
    return out
