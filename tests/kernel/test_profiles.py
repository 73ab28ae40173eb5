"""Each profile follows its seed document: addresses, formulas, names and behaviours."""

from __future__ import annotations

import pytest

from pagewalk.alloc import BitmapFrameAllocator, ByteMapFrameAllocator, PageState, RecycleAllocator
from pagewalk.errors import MappingError
from pagewalk.formats import Perm
from pagewalk.kernel import Kernel, get_profile
from pagewalk.kernel.profiles import atos, comus, powernex, redox, sel4
from pagewalk.walk import walk

MIB = 1 << 20


def test_powernex_early_tables_low_and_high_then_low_dropped() -> None:
    kernel = Kernel(get_profile("powernex"))
    early = get_profile("powernex").early_mappings(kernel)
    assert [(m.name, m.va, m.pa, m.size) for m in early] == [
        ("LOW", 0x0, 0x0, 0x400000),
        ("HIGH", 0xFFFFFFFF80000000, 0x0, 0x400000),
    ]
    kernel.boot()
    assert kernel.early_space is not None and kernel.early_space.destroyed
    cr3 = kernel.cpu.registers["cr3"]
    assert walk(kernel.mem, kernel.mode, (cr3,), 0x1000).fault is not None  # LOW is gone
    assert walk(kernel.mem, kernel.mode, (cr3,), 0xFFFFFFFF80100000).pa == 0x100000


def test_powernex_bitmap_at_kernel_end_with_the_formula() -> None:
    kernel = Kernel(get_profile("powernex")).boot()
    frames = kernel.frames
    assert isinstance(frames, BitmapFrameAllocator)
    assert frames.bitmap_pa == powernex.KERNEL_END
    top = max(base + size for base, size in kernel.memmap.usable())  # the highest usable byte
    max_kib = -(-top // 1024)
    assert frames.bitmap_bytes == ((max_kib * 1024 // 0x1000) // 64 + 1) * 8
    assert frames.free_start == powernex.KERNEL_END + frames.bitmap_bytes
    # The bitmap lives in simulated RAM at KERNEL_END: frame 0 (reserved) reads as used.
    assert kernel.mem.read_u64(powernex.KERNEL_END) & 1 == 1


def test_powernex_paging_api() -> None:
    kernel = Kernel(get_profile("powernex")).boot()
    proc = kernel.spawn("p")
    paging = powernex.Paging(kernel, process=proc)
    frame = kernel.frames.allocate()
    mode = powernex.MapMode.default_user()
    assert paging.map(0x50000000, frame, mode) == 0x50000000
    ptr = paging.root.get(0)
    assert ptr is not None and isinstance(ptr.data, powernex.Table)
    assert ptr.mode & powernex.MapMode.USER
    assert paging.root.get(300) is None
    created = paging.root.get_or_create(300, powernex.DEFAULT_TABLES)
    assert created.mode & powernex.MapMode.PRESENT
    paging.unmap(0x50000000)
    assert proc.space.translate(0x50000000) is None
    lazy = paging.map_free_memory(0x60000000, mode)
    assert proc.space.translate(lazy) is None
    assert kernel.read(proc, lazy, 4) == bytes(4)  # the fault handler mapped a zeroed frame
    copy = powernex.Paging(kernel, copy=paging)
    assert copy.space.translate(lazy) == proc.space.translate(lazy)
    copy.free()


def test_redox_memory_map_and_allocator() -> None:
    kernel = Kernel(get_profile("redox")).boot()
    profile = kernel.profile
    assert isinstance(profile, redox.RedoxProfile)
    areas = profile.memory_areas
    assert len(areas) == 512
    assert all(a.base_addr == 0x500 and a.length == 0 for a in areas[len(kernel.memmap) :])
    assert isinstance(kernel.frames, RecycleAllocator)
    proc = kernel.spawn("p")
    mapper = redox.Mapper(kernel, proc.space)
    mapper.map(0x70000000, Perm.READ | Perm.WRITE | Perm.USER).ignore()
    frame = mapper.translate_page(0x70000000)
    assert frame is not None and frame % 4096 == 0
    raw = proc.space.walk(0x70000000).steps[-1].raw
    assert raw & redox.ENTRY_ADDRESS_MASK == frame  # bits 12..51
    mapper.unmap(0x70000000).ignore()
    assert mapper.translate_page(0x70000000) is None


def test_comus_layout_allocators_and_functions() -> None:
    kernel = Kernel(get_profile("comus")).boot()
    assert isinstance(kernel.frames, BitmapFrameAllocator)
    assert kernel.kernel_space is not None
    assert kernel.kernel_space.translate(1 * MIB) == 1 * MIB
    assert kernel.kernel_space.translate(129 * MIB - 1) == 129 * MIB - 1
    assert kernel.kernel_space.translate(129 * MIB) is None
    proc = kernel.spawn("p")
    assert proc.vmas[0].start == comus.KERNEL_END
    assert proc.vmas[2].end == comus.USER_STACK_TOP
    cm = comus.ComusMemory(kernel, seed=7)
    va = cm.mem_map_pages_at(proc, 0x50000000, 2, Perm.READ | Perm.WRITE)
    kernel.write(proc, va + 0x1000, b"comus")
    with pytest.raises(Exception, match="in use"):
        cm.virtaddr_take(proc.space, 0x50001000, 1, user=True)
    acpi = kernel.memmap.regions[-1].base
    mapped = cm.mem_map_addr(acpi + 0x10, 0x100)
    assert kernel.kernel_space.translate(mapped) == acpi + 0x10
    fixed = cm.mem_map_addr(acpi, 0x1000, va=0xFFFF800012345000)
    assert fixed == 0xFFFF800012345000
    assert kernel.kernel_space.translate(comus.PAGING_WINDOW) == kernel.kernel_space.roots[0]
    assert cm.window_uses >= 2


def test_sel4_kernel_window_caps_and_asids() -> None:
    kernel = Kernel(get_profile("sel4-aarch64")).boot()
    assert kernel.kernel_space is not None
    ttbr1 = kernel.kernel_space.roots[1]
    ram = kernel.mem.regions[0]
    top = walk(kernel.mem, kernel.mode, kernel.kernel_space.roots, sel4.RAM_WINDOW + ram.base)
    assert top.pa == ram.base and top.page_size == 2 * MIB  # largest block that fits 128 MiB
    a, b = kernel.spawn("a"), kernel.spawn("b")
    assert a.space.roots[1] == b.space.roots[1] == ttbr1  # TTBR1 shared
    assert a.space.roots[0] != b.space.roots[0] and a.asid != b.asid
    mmu = sel4.Sel4Mmu(kernel)
    cap = mmu.new_frame()
    mmu.frame_map(cap, a.space, 0x7000000, Perm.READ | Perm.WRITE).ignore()
    with pytest.raises(MappingError, match="copy the cap"):
        mmu.frame_map(cap, b.space, 0x7000000, Perm.READ)
    twin = mmu.copy_cap(cap)
    mmu.frame_map(twin, b.space, 0x7000000, Perm.READ).ignore()
    assert mmu.virt2phys(b.space, 0x7000123) == cap.get_address() + 0x123
    leaf = mmu.leaf_entry_pa(a.space, 0x7000000)
    assert leaf is not None and kernel.mem.read_u64(leaf) & ~0xFFF & ((1 << 48) - 1) == cap.pa
    mmu.frame_remap(cap, Perm.READ).ignore()
    assert not a.space.walk(0x7000000).perm & Perm.WRITE
    table = mmu.page_table_map(a.space, 0x9000000)
    assert walk(kernel.mem, kernel.mode, a.space.roots, 0x9000000).steps[-1].level.number == 3
    mmu.page_table_unmap(table).ignore()
    mmu.cache_maintenance("clean", cap)
    mmu.cache_maintenance("invalidate", a.space)
    assert mmu.cache_ops == {"clean frame": 1, "invalidate page directory": 1}
    mmu.frame_unmap(cap).ignore()
    assert a.space.translate(0x7000000) is None


def test_atos_regions_zones_and_copied_directories() -> None:
    kernel = Kernel(get_profile("atos")).boot()
    assert kernel.kernel_space is not None
    for name, lo, hi, _perm, _mt in atos.REGIONS:
        assert kernel.kernel_space.translate(lo) == lo, name
        assert kernel.kernel_space.translate(hi - 1) == hi - 1, name
    assert kernel.kernel_space.translate(0x08550000) is None  # the gap before the stack
    assert kernel.kernel_space.walk(0x08580000).leaf is not None
    a, b = kernel.spawn("a", b"A" * 5000), kernel.spawn("b", b"B" * 100)
    assert a.vmas[0].start == b.vmas[0].start == atos.USER_BASE
    pa = a.space.translate(atos.USER_BASE)
    assert pa is not None and atos.USER_BASE <= pa < atos.USER_END
    assert isinstance(kernel.frames, ByteMapFrameAllocator)
    assert kernel.frames.state(pa) == PageState.USER
    assert a.space.translate(0x00100000) == 0x00100000  # kernel mappings copied in
    assert a.space.roots[0] != kernel.kernel_space.roots[0]
    lib = atos.load_library(kernel, [a, b], b"\x55" * 100, va=atos.LIB_BASE + 0x100000)
    assert atos.LIB_BASE <= lib < atos.LIB_END
    assert kernel.read(a, atos.LIB_BASE + 0x100000, 1) == b"\x55"
    assert kernel.read(b, atos.LIB_BASE + 0x100000, 1) == b"\x55"
    # The boot library sits in the library zone and is shared by both processes.
    shared = a.space.translate(atos.LIB_BASE)
    assert shared == b.space.translate(atos.LIB_BASE) and shared is not None
    assert kernel.frames.state(shared) == PageState.LIBRARY
    assert kernel.read(b, atos.USER_BASE, 1) == b"B"  # not a's program


def test_aarch64_kernel_breaks_before_it_makes() -> None:
    """The seL4-style kernel gives its spaces its flush as the break-before-make step, so a
    remap of a live page and a split of its live kernel window (2 MiB blocks) pass the MMU's
    checker; an x86 kernel's spaces have no such step."""
    kernel = Kernel(get_profile("sel4-aarch64")).boot()
    proc = kernel.spawn("a")
    assert kernel.kernel_space is not None and kernel.mmu.bbm is not None
    assert proc.space.bbm == kernel.flush and kernel.kernel_space.bbm == kernel.flush
    heap = proc.vmas[1].start
    kernel.write(proc, heap, b"live")  # the TLB now holds the heap page
    old = proc.space.translate(heap)
    new = kernel.frames.allocate()
    kernel.flush(proc.space.remap(heap, new))
    ram = kernel.mem.regions[0]
    window = sel4.RAM_WINDOW + ram.base
    kernel.mmu.access(window)  # a live 2 MiB block of the kernel window
    kernel.flush(kernel.kernel_space.protect_range(window, 0x1000, Perm.READ))
    assert kernel.mmu.bbm.violations == []
    assert proc.space.translate(heap) == new != old
    assert kernel.mmu.access(window + 0x1234) == ram.base + 0x1234
    assert Kernel(get_profile("redox")).boot().spawn("b").space.bbm is None
