"""Small address spaces with every leaf size, both halves, holes and a fault, saved as images."""

from __future__ import annotations

from pathlib import Path

from pagewalk import AddressSpace, PhysicalMemory, make_mode
from pagewalk.alloc.simple import SimpleFrameAllocator
from pagewalk.formats import Perm
from pagewalk.image import save

_TABLES = 0x100000
_TABLE_BYTES = 16 << 20


def build_image(path: Path, name: str) -> Path:
    """Map 4K runs (user and kernel), a huge page of each larger size, in each half; save."""
    mode = make_mode(name)
    mem = PhysicalMemory(_TABLES + _TABLE_BYTES)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(_TABLES, _TABLE_BYTES))
    perms = [Perm.parse(p) for p in ("rwu", "rxu", "rg", "rw", "rxg")]
    for h, half in enumerate(mode.halves):
        base = half.va_start if h else 0x400000
        page = mode.page_size
        for k in range(6):  # scattered 4K pages: runs split by PA and permission, with holes
            va = base + k * 3 * page
            space.map(va, 0x4000000 + (h * 64 + k * 7) * page, page, perms[k % 5]).ignore()
        for n, size in enumerate(s for s in mode.leaf_sizes() if page < s <= 1 << 30):
            va = -(-(base + 64 * page) // size) * size + (n + 1) * 2 * (1 << 30)
            va = va if va + size <= half.va_end else -(-(base + 64 * page) // size) * size + size
            space.map(va, size * (3 + n), size, perms[(n + h) % 5]).ignore()
    save(path, mem, mode, space.roots)
    return path
