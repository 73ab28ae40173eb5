"""Random address spaces of every paging mode, for comparing writers old and new.

Each space mixes lone pages of every leaf size, runs of neighbouring pages (equal or different
permissions, contiguous PAs or not: what ``info mem`` and the enumerator merge or split), pages
at the very top of the address space (a range whose end is 2**64), every memory type the mode
takes, and leaves whose accessed/dirty bits differ (raw attributes that split ``info tlb`` and
RISC-V ``info mem`` runs), and runs across two tables. Built with
:class:`~pagewalk.space.AddressSpace` (Intel SDM vol. 3A ch. 4, Arm ARM D8, RISC-V privileged
spec).
"""

from __future__ import annotations

import random
from pathlib import Path

from pagewalk import AddressSpace, PhysicalMemory, make_mode
from pagewalk.alloc.simple import SimpleFrameAllocator
from pagewalk.errors import PagingError
from pagewalk.formats import MemType, PagingMode, Perm
from pagewalk.image import save
from pagewalk.walk import walk

MODES = ("x86", "pae", "x86_64", "la57", "aarch64", "sv32", "sv39", "sv48", "sv57")
#: per family, leaf bits a test may flip without changing the translation (accessed, dirty)
_SOFT_BITS = {"x86": (5, 6), "riscv": (6, 7), "arm": (10, 51)}
_PERMS = [Perm.parse(p) for p in ("r", "rw", "rx", "rwx", "ru", "rwu", "rxu", "rg", "rwg")]
_TABLES = 0x100000
_TABLE_BYTES = 64 << 20


def random_space(
    name: str, seed: int, n: int = 60
) -> tuple[PhysicalMemory, PagingMode, tuple[int, ...]]:
    """A random space of mode ``name``: memory, mode and roots."""
    rng = random.Random(seed)
    mode = make_mode(name)
    mem = PhysicalMemory(_TABLES + _TABLE_BYTES)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(_TABLES, _TABLE_BYTES))
    sizes = [s for s in mode.leaf_sizes() if s <= 1 << 30]
    pa_top = min(1 << mode.pa_bits, 1 << 40)
    bits = _SOFT_BITS[mode.facts.family]
    mapped: list[tuple[int, int]] = []  # VA, soft bits to set

    def put(va: int, pa: int, size: int, perm: Perm, memtype: MemType, soft: int) -> None:
        try:
            space.map(va, pa, size, perm, memtype).ignore()
            mapped.append((va, soft))
        except (PagingError, ValueError, KeyError):  # a memory type the mode cannot encode
            pass

    for _ in range(n):
        half = rng.choice(mode.halves)
        size = rng.choice(sizes)
        span = half.va_end - half.va_start
        va = half.va_start + rng.randrange(span // size) * size
        table = size * next(lv.entries for lv in half.levels if lv.leaf_size == size)
        if rng.random() < 0.1:
            va = half.va_end - size  # the top page of the half: a range ending at 2**64
        elif rng.random() < 0.2 and va - half.va_start >= table:
            va = va // table * table - 2 * size  # a run across two tables
        perm, memtype = rng.choice(_PERMS), rng.choice(list(MemType))
        pa = rng.randrange(pa_top // size) * size
        soft = sum(1 << b for b in bits if rng.random() < 0.5)
        for k in range(rng.choice((1, 1, 2, 3, 5))):  # a run of neighbours
            if va + k * size >= half.va_end:
                break
            if rng.random() < 0.3:
                perm = rng.choice(_PERMS)
            step = size if rng.random() < 0.7 else 2 * size
            if rng.random() < 0.2:
                soft = sum(1 << b for b in bits if rng.random() < 0.5)
            put(va + k * size, (pa + k * step) % pa_top, size, perm, memtype, soft)
    for va, soft in mapped:
        leaf = walk(mem, mode, space.roots, va).steps[-1]
        raw = leaf.raw | soft
        if mode.entry_size == 8:
            mem.write_u64(leaf.entry_pa, raw)
        else:
            mem.write_u32(leaf.entry_pa, raw & 0xFFFFFFFF)
    return mem, mode, space.roots


def random_image(path: Path, name: str, seed: int, n: int = 60) -> Path:
    """:func:`random_space` saved as an image with its register file."""
    mem, mode, roots = random_space(name, seed, n)
    save(path, mem, mode, roots)
    return path
