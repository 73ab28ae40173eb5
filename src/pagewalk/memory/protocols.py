"""What each layer needs from physical memory: one ladder of protocols, narrowest first.

Walkers, the MMU, the batch and compiled walkers and the inspectors each ask for the least they
use, so a test double or a new backend implements only that. Every protocol is structural (a
class need not inherit from it), and each rung adds to the one below:

* :class:`EntryReader`: one page-table entry (the scalar walker, :mod:`pagewalk.walk`);
* :class:`EntryMemory`: that and :class:`EntryWriter` (the MMU sets A/D bits);
* :class:`BatchReader`: vectorised RAM checks and gathers (:mod:`pagewalk.batch`);
* :class:`TableReader`: whole tables and a scalar RAM check (enumeration, lint);
* :class:`Memory`: all of it plus :class:`BlockReader` and the RAM layout (the inspectors, CLI);
* :class:`Segmented`: the raw bytes and where each run of PA lies in them (the compiled walker).

Tables are bytes in physical memory, read as little-endian 4- or 8-byte entries as the hardware
reads them (Intel SDM vol. 3A §4.1, Arm ARM D8.2, RISC-V privileged spec "Sv32"/"Sv39").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from pagewalk.errors import hx


@dataclass(frozen=True, order=True)
class Region:
    """A run of RAM: ``[base, base + size)``."""

    base: int
    size: int

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.base + self.size

    def __str__(self) -> str:
        return f"{hx(self.base)}-{hx(self.end - 1)}"


@dataclass(frozen=True, order=True)
class Segment:
    """``size`` bytes of guest-physical memory at ``pa``, stored at file ``offset``."""

    pa: int
    size: int
    offset: int


U64Array = npt.NDArray[np.uint64]
BoolArray = npt.NDArray[np.bool_]


class EntryReader(Protocol):
    """One page-table entry: what the scalar walker needs."""

    def read_entry(self, pa: int, entry_size: int) -> int: ...


class EntryWriter(Protocol):
    """One page-table entry written back (accessed and dirty bits)."""

    def write_entry(self, pa: int, entry_size: int, value: int) -> None: ...


class EntryMemory(EntryReader, EntryWriter, Protocol):
    """Entry reads and writes: what the MMU needs."""


class BlockReader(Protocol):
    """Plain bytes: what readers of structures other than tables need (vmcoreinfo, notes)."""

    def read(self, pa: int, n: int) -> bytes: ...


class BatchReader(EntryReader, Protocol):
    """Vectorised RAM checks and gathers: what the batch walker needs."""

    def is_ram_array(self, pas: U64Array, n: int) -> BoolArray: ...

    def gather(self, pas: U64Array, entry_size: int) -> U64Array: ...


class TableReader(BatchReader, Protocol):
    """Whole tables and a scalar RAM check: what enumeration needs."""

    def read_table(self, pa: int, n_entries: int, entry_size: int) -> U64Array: ...

    def is_ram(self, pa: int, n: int = 1) -> bool: ...


class Memory(TableReader, BlockReader, Protocol):
    """Everything the inspectors and the CLI read, simulated or dumped, and the RAM layout."""

    regions: tuple[Region, ...]
    end: int


@dataclass(frozen=True)
class SegmentView:
    """The bytes of a memory and where each run of physical addresses lies in them.

    Attributes:
        buf: the bytes, read-only (kept alive by whoever holds the view).
        spans: ``(start, end, offset - start)`` per run, sorted: PA ``start <= pa < end`` is
            the byte ``buf[pa + delta]`` (the delta may be negative, or taken modulo 2**64).
    """

    buf: npt.NDArray[np.uint8]
    spans: tuple[tuple[int, int, int], ...]


@runtime_checkable
class Segmented(Protocol):
    """Memory the compiled walker can read directly: one byte buffer, segments of PA in it."""

    def segment_view(self) -> SegmentView: ...


__all__ = [
    "BatchReader",
    "BlockReader",
    "EntryMemory",
    "EntryReader",
    "EntryWriter",
    "Memory",
    "SegmentView",
    "Segmented",
    "TableReader",
]
