"""PowerNex (x86-64), following seeds/powernex-paging.md.

The document specifies:

- **Early tables**: LOW ``0x0-0x400000`` mapped to ``0x0-0x400000`` (for protected mode) and HIGH
  ``0xFFFFFFFF80000000-0xFFFFFFFF80400000`` mapped to ``0x0-0x400000``; LOW is dropped after the
  switch to the final tables.
- **FrameAllocator**: a bitmap placed at ``KERNEL_END``, sized ``((maxMemoryKiB / 0x1000) / 64 + 1)
  * 8`` bytes, with free memory starting right after it (:class:`BitmapFrameAllocator`).
- **Paging**: ``this(const ref Paging)`` (copy), ``InitKernelPaging()``, ``~this()`` (free the
  tables), ``Install()``, ``Map(virt, phys, pageMode, tablesMode)``, ``Unmap(virt)`` and
  ``MapFreeMemory(virt, pageMode, tablesMode)``, which maps lazily: the frame is allocated and
  zeroed on first access by the page-fault handler.
- **Table!(Level)** with ``Get(idx)`` and ``GetOrCreate(idx, mode)``, and **TablePtr** with the
  ``Data`` and ``Mode`` properties.

Gaps filled here (the document is silent): KERNEL_END is 4 MiB (the end of the early-mapped
image); the image is 1 MiB text, 512 KiB rodata and 1.5 MiB data from PA 1 MiB, mapped W^X at
HIGH; the direct map of all RAM sits at ``0xFFFF800000000000`` and the 1 MiB kernel heap at
``0xFFFFFFFFA0000000``. The bitmap's formula is applied to a byte count (see
:func:`pagewalk.alloc.powernex_bitmap_bytes` for why). Intel SDM vol. 3A §4.5 (4-level paging).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pagewalk.alloc import BitmapFrameAllocator
from pagewalk.alloc.base import FrameAllocator
from pagewalk.errors import PagingError, hx
from pagewalk.formats import EntryKind, Perm
from pagewalk.formats.base import Level
from pagewalk.kernel.profile import MIB, RW, RX, KernelView, KMap, Profile, UserLayout, image_maps
from pagewalk.space import AddressSpace

if TYPE_CHECKING:
    from pagewalk.kernel.mm import Kernel
    from pagewalk.kernel.process import Process

KERNEL_PHYS = 0x100000
KERNEL_END = 0x400000
HIGH = 0xFFFFFFFF80000000
DIRECT_MAP = 0xFFFF800000000000
HEAP = 0xFFFFFFFFA0000000
HEAP_SIZE = 1 * MIB


class PowerNexProfile(Profile):
    """PowerNex's boot, bitmap allocator and lazy MapFreeMemory."""

    name = "powernex"
    mode = "x86_64"
    seed = "seeds/powernex-paging.md"
    demand_paging = True
    cow = True
    keep_early = False
    user_layout = UserLayout(0x400000, 1 * MIB, 0x7FFFFFFFF000, 64 * 1024, 0x10000000, 0x20000000)

    def make_allocator(self, kernel: KernelView) -> FrameAllocator:
        return BitmapFrameAllocator(kernel.memmap.usable(), KERNEL_END, memory=kernel.mem)

    def early_mappings(self, kernel: KernelView) -> list[KMap]:
        rwx = RW | Perm.EXEC
        return [
            KMap("LOW", 0x0, 0x0, KERNEL_END, rwx),
            KMap("HIGH", HIGH, 0x0, KERNEL_END, rwx),
        ]

    def kernel_mappings(self, kernel: KernelView) -> list[KMap]:
        sections = [
            ("text", 1 * MIB, RX),
            ("rodata", MIB // 2, Perm.READ),
            ("data+bss", KERNEL_END - KERNEL_PHYS - 3 * MIB // 2, RW),
        ]
        maps = image_maps(HIGH + KERNEL_PHYS, KERNEL_PHYS, sections)
        for region in kernel.mem.regions:
            maps.append(
                KMap(
                    "direct map",
                    DIRECT_MAP + region.base,
                    region.base,
                    region.size,
                    RW | Perm.GLOBAL,
                )
            )
        maps.append(
            KMap("heap", HEAP, self.heap_frames(kernel, HEAP_SIZE), HEAP_SIZE, RW | Perm.GLOBAL)
        )
        return maps


class MapMode(enum.IntFlag):
    """PowerNex's MapMode: the entry flags a mapping asks for."""

    PRESENT = 1
    WRITABLE = 2
    USER = 4
    NO_EXECUTE = 8
    GLOBAL = 16

    @classmethod
    def default_user(cls) -> MapMode:
        """``MapMode.DefaultUser``."""
        return cls.PRESENT | cls.WRITABLE | cls.USER | cls.NO_EXECUTE

    @classmethod
    def default_kernel(cls) -> MapMode:
        """``MapMode.DefaultKernel``."""
        return cls.PRESENT | cls.WRITABLE | cls.NO_EXECUTE

    def perm(self) -> Perm:
        """The portable permission this mode asks for."""
        perm = Perm.READ
        perm |= Perm.WRITE if self & MapMode.WRITABLE else Perm.NONE
        perm |= Perm.USER if self & MapMode.USER else Perm.NONE
        perm |= Perm.GLOBAL if self & MapMode.GLOBAL else Perm.NONE
        perm |= Perm.NONE if self & MapMode.NO_EXECUTE else Perm.EXEC
        return perm


#: ``MapMode.DefaultUser`` without NX: what table entries get by default
DEFAULT_TABLES = MapMode.PRESENT | MapMode.WRITABLE | MapMode.USER


@dataclass
class TablePtr:
    """``TablePtr!(Type)``: one entry, with ``data`` (the child table or frame) and ``mode``."""

    kernel: Kernel
    level: Level
    raw: int

    @property
    def data(self) -> Table | int:
        """The child ``Table`` for a table entry, or the frame's PA for a page."""
        entry = self.kernel.mode.decode(self.raw, self.level)
        if entry.kind is EntryKind.TABLE:
            return Table(self.kernel, self.level.depth - 1, entry.address)
        return entry.address

    @property
    def mode(self) -> MapMode:
        """The entry's flags as a MapMode."""
        out = MapMode(0)
        for bit, flag in (
            (1, MapMode.PRESENT),
            (2, MapMode.WRITABLE),
            (4, MapMode.USER),
            (256, MapMode.GLOBAL),
        ):
            if self.raw & bit:
                out |= flag
        return out | (MapMode.NO_EXECUTE if self.raw >> 63 else MapMode(0))


@dataclass
class Table:
    """``Table!(Level)``: 512 entries at ``pa``; ``depth`` 3 is the PML4 (Table!4)."""

    kernel: Kernel
    depth: int
    pa: int

    @property
    def level(self) -> Level:
        """The paging level of this table."""
        half = self.kernel.mode.halves[0]
        return half.levels[len(half.levels) - 1 - self.depth]

    def get(self, idx: int) -> TablePtr | None:
        """``Get(idx)``: the entry, or None when it is not present."""
        raw = self.kernel.mem.read_entry(self.pa + self._check(idx) * 8, 8)
        return TablePtr(self.kernel, self.level, raw) if raw & 1 else None

    def get_or_create(self, idx: int, mode: MapMode) -> TablePtr:
        """``GetOrCreate(idx, mode)``: the entry, making a zeroed child table if absent."""
        found = self.get(idx)
        if found is not None:
            return found
        if self.depth == 0:
            raise PagingError("a page table (Table!1) has no child tables to create")
        child = self.kernel.frames.allocate()
        self.kernel.mem.zero(child, 4096)
        raw = self.kernel.mode.encode_table(child, self.level, mode.perm())
        self.kernel.mem.write_entry(self.pa + idx * 8, 8, raw)
        return TablePtr(self.kernel, self.level, raw)

    @staticmethod
    def _check(idx: int) -> int:
        if not 0 <= idx < 512:
            raise PagingError(f"table index {idx} is outside 0..511")
        return idx


class Paging:
    """PowerNex's ``Paging`` class over an :class:`AddressSpace` of the running kernel.

    Args:
        kernel: the booted kernel.
        copy: another Paging to copy (``this(const ref Paging)``): the kernel half is shared,
            the user half copied.
        process: wrap this process's tables (MapFreeMemory needs a process, because its
            page-fault handler serves the lazy frames).
    """

    def __init__(
        self, kernel: Kernel, copy: Paging | None = None, *, process: Process | None = None
    ) -> None:
        self.kernel = kernel
        self.process = process
        if process is not None:
            self.space = process.space
        elif copy is not None:
            self.space = copy.space.clone(share_kernel=True, user=True)
        else:
            self.space = AddressSpace(kernel.mode, kernel.mem, kernel.frames)

    @property
    def root(self) -> Table:
        """``Table!4 * root``."""
        return Table(self.kernel, 3, self.space.roots[0])

    def init_kernel_paging(self) -> None:
        """``InitKernelPaging()``: map the kernel's final mappings into this space."""
        for m in self.kernel.kernel_maps:
            self.kernel.flush(self.space.map_range(m.va, m.pa, m.size, m.perm, m.memtype))

    def install(self) -> None:
        """``Install()``: load CR3 with this space's PML4."""
        self.space.install(self.kernel.cpu)

    def map(
        self, virt: int, phys: int, page_mode: MapMode, tables_mode: MapMode = DEFAULT_TABLES
    ) -> int:
        """``Map(virt, phys, pageMode, tablesMode)``; returns ``virt``."""
        self.kernel.flush(self.space.map(virt, phys, 4096, page_mode.perm()))
        del tables_mode  # the parent-flag policy widens parents to what the leaf needs
        return virt

    def unmap(self, virt: int) -> None:
        """``Unmap(virt)``."""
        self.kernel.flush(self.space.unmap(virt))

    def map_free_memory(
        self, virt: int, page_mode: MapMode, tables_mode: MapMode = DEFAULT_TABLES
    ) -> int:
        """``MapFreeMemory``: reserve ``virt`` now; the frame comes on first access."""
        if virt % 4096:
            raise PagingError(f"MapFreeMemory needs a page-aligned VA, not {hx(virt)}")
        if self.process is None:
            raise PagingError("MapFreeMemory needs a process's Paging: its fault handler serves it")
        del tables_mode
        return self.kernel.mmap(self.process, 4096, page_mode.perm(), va=virt, lazy=True)

    def free(self) -> None:
        """``~this()``: free the page tables."""
        self.kernel.flush(self.space.destroy())
