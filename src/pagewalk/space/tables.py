"""Reading and writing the entries of page tables in simulated physical memory, for one mode.

One idea: every edit a space makes is a read or a write of entries in a table frame, one at a
time or as a run; this module is that I/O, plus building runs of entries with one numpy
operation (leaves for consecutive PAs, table entries for evenly spaced tables) and retargeting
a table entry to another table with its flags kept. The entry layouts are the codec's (Intel
SDM vol. 3A tables 4-14 to 4-20; Arm ARM D8.3 descriptors; RISC-V privileged spec, Sv32-Sv57
PTEs); the table geometry is the mode's halves and levels (SDM 4.5, Arm ARM D8.2, RISC-V Svnn).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pagewalk.alloc.base import FRAME_SIZE
from pagewalk.errors import EntryFormatError, hx
from pagewalk.formats.base import Half, Level, PagingMode, Perm, U64Array
from pagewalk.memory.physical import PhysicalMemory


def root_ids(mode: PagingMode) -> list[int]:
    """The root registers of ``mode``, by number (x86 and RISC-V: one; AArch64: two)."""
    return sorted({h.root for h in mode.halves})


def root_half(mode: PagingMode, r: int) -> Half:
    """The half of the VA space that root register ``r`` serves."""
    return next(h for h in mode.halves if h.root == r)


def table_base(half: Half) -> int:
    """The VA of entry 0 of ``half``'s root table."""
    top = half.levels[0]
    return half.va_start & ~((1 << (top.shift + top.bits)) - 1)


class Tables:
    """Entry I/O on the tables of one mode in one physical memory."""

    def __init__(self, mode: PagingMode, mem: PhysicalMemory) -> None:
        self.mode = mode
        self.mem = mem
        #: bytes per entry (4 or 8)
        self.esize = mode.entry_size
        #: bytes a table frame takes: 4 KiB, or one Arm granule
        self.table_bytes = max(FRAME_SIZE, mode.page_size)

    def read(self, pa: int) -> int:
        return self.mem.read_entry(pa, self.esize)

    def write(self, pa: int, raw: int) -> None:
        self.mem.write_entry(pa, self.esize, raw)

    def slice(self, table: int, i0: int, n: int) -> U64Array:
        """Entries ``i0`` to ``i0 + n`` of ``table`` (a copy)."""
        return self.mem.read_table(table + i0 * self.esize, n, self.esize)

    def put(self, table: int, i0: int, raws: U64Array | list[int]) -> None:
        """Write ``raws`` over the entries of ``table`` from ``i0`` on."""
        self.mem.write_table(table + i0 * self.esize, raws, self.esize)

    def broken(self, level: Level, entry_pa: int, raw: int, reason: str) -> EntryFormatError:
        return EntryFormatError(
            f"{level.name} entry {hx(raw)} at PA {hx(entry_pa)} is broken: {reason}"
        )

    def retarget(self, raw: int, level: Level, old: int, new: int) -> int:
        """A table entry ``raw`` pointing to ``new`` instead of ``old``, flags kept."""
        zero = self.mode.encode_table(0, level, Perm.NONE)
        old_bits = self.mode.encode_table(old, level, Perm.NONE) ^ zero
        new_bits = self.mode.encode_table(new, level, Perm.NONE) ^ zero
        return raw ^ old_bits ^ new_bits

    @staticmethod
    def leaf_run(
        level: Level, pa0: int, n: int, make: Callable[[int], int]
    ) -> U64Array | list[int]:
        """``n`` leaves for ``pa0, pa0 + span, ...`` using one numpy op when linear."""
        span = level.leaf_size
        first = make(pa0)
        if n == 1:
            return [first]
        last = make(pa0 + (n - 1) * span)
        step = make(pa0 + span) - first
        if step > 0 and first + (n - 1) * step == last:
            return np.uint64(first) + np.arange(n, dtype=np.uint64) * np.uint64(step)
        return [make(pa0 + j * span) for j in range(n)]

    def table_run(self, level: Level, tables: list[int], perm: Perm) -> U64Array | list[int]:
        """Table entries pointing to ``tables``: one numpy operation when evenly spaced."""
        n = len(tables)
        first = self.mode.encode_table(tables[0], level, perm)
        if n > 2 and tables[-1] - tables[0] == (n - 1) * (tables[1] - tables[0]):
            step = self.mode.encode_table(tables[1], level, perm) - first
            if step > 0 and first + (n - 1) * step == self.mode.encode_table(
                tables[-1], level, perm
            ):
                return np.uint64(first) + np.arange(n, dtype=np.uint64) * np.uint64(step)
        return [self.mode.encode_table(t, level, perm) for t in tables]

    def child_tables(self, table: int, level: Level) -> list[int]:
        """The PAs that the valid non-leaf entries of ``table`` (at ``level``) point to."""
        raws = self.slice(table, 0, level.entries)
        valid = raws[(raws & np.uint64(self.mode.present_mask)) != 0]
        tables = valid[~self.mode.np_is_leaf(valid, level)]
        return [int(pa) for pa in self.mode.np_address(tables, level, False).tolist()]
