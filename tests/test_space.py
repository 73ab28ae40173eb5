"""Focused tests of AddressSpace: errors, parent flags, page choice, splits, clone, flushes.

One idea: each expectation is worked out by hand from the manuals (raw entries from Intel SDM
vol. 3A tables 4-14 to 4-20, Arm ARM D8.3 descriptors, the RISC-V Sv39 PTE layout; the number
of table levels per mode; which page sizes a range must use), never read back from pagewalk.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from pagewalk.alloc.simple import SimpleFrameAllocator
from pagewalk.errors import (
    AlreadyMappedError,
    EntryFormatError,
    HugePageConflictError,
    MisalignedAddressError,
    NonCanonicalAddressError,
    NotMappedError,
    OutOfMemoryError,
    PagingError,
    PhysicalAddressTooWideError,
)
from pagewalk.flush import Flush, strict_flushes
from pagewalk.formats import MODE_NAMES, MemType, Perm, make_mode
from pagewalk.memory.physical import PhysicalMemory
from pagewalk.space import AddressSpace

MIB = 1 << 20

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
RW = Perm.READ | Perm.WRITE
POOL = 0x10_0000
# x86 entry bits (SDM table 4-19/4-20) and Arm table-descriptor bits (Arm ARM D8.3.1).
X86_P, X86_RW, X86_US, X86_PWT, X86_PS, X86_G, X86_XD = 1, 2, 4, 8, 0x80, 0x100, 1 << 63
ARM_TABLE_ATTRS = 0xF << 59  # PXNTable, UXNTable, APTable[1:0]
#: table levels per mode (SDM §4.3-4.5, Arm ARM D8.2 with 4K granule and TnSZ=16, RISC-V Svnn)
LEVELS = {
    "x86": 2,
    "pae": 3,
    "x86_64": 4,
    "la57": 5,
    "aarch64": 4,
    "sv32": 2,
    "sv39": 3,
    "sv48": 4,
    "sv57": 5,
}


def new_space(
    name: str = "x86_64", frames: int = 256, mem_size: int = 8 * MIB
) -> tuple[AddressSpace, SimpleFrameAllocator, PhysicalMemory]:
    mem = PhysicalMemory(mem_size)
    alloc = SimpleFrameAllocator(POOL, frames * 4096)
    return AddressSpace(make_mode(name), mem, alloc), alloc, mem


def snapshot(space: AddressSpace) -> dict[int, bytes]:
    return {pa: space.mem.read(pa, space.table_bytes) for pa in sorted(space.owned)}


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail instead of hanging: a loop in the tables must not make an operation spin."""

    def bail(signum: int, frame: object) -> None:
        raise TimeoutError("operation did not terminate")

    old = signal.signal(signal.SIGALRM, bail)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------------------------ errors


def test_already_mapped_carries_existing_entry() -> None:
    space, _, _ = new_space()
    space.map(0x40_0000, 0x5000, perm=RW).ignore()
    before = snapshot(space)
    with pytest.raises(AlreadyMappedError) as info:
        space.map(0x40_0000, 0x9000, perm=RW)
    # PTE: PA 0x5000 | P | R/W | XD (no EXEC, EFER.NXE=1); PAT index 0 is WB.
    assert info.value.existing_entry == 0x8000_0000_0000_5003
    assert info.value.va == 0x40_0000 and info.value.level == 1
    assert "0x400000" in str(info.value) and "0x8000000000005003" in str(info.value)
    assert snapshot(space) == before


def test_small_page_inside_huge_page_is_a_huge_page_conflict() -> None:
    space, _, _ = new_space()
    space.map(0x20_0000, 0x20_0000, 2 * MIB, RW).ignore()
    with pytest.raises(HugePageConflictError) as info:
        space.map(0x20_1000, 0x7000, perm=RW)
    # PDE: PA 0x200000 | P | R/W | PS | XD.
    assert info.value.existing_entry == 0x8000_0000_0020_0083
    assert info.value.va == 0x20_1000 and info.value.level == 2
    assert "0x201000" in str(info.value)


def test_huge_page_over_a_table_is_a_huge_page_conflict() -> None:
    space, _, _ = new_space()
    space.map(0x20_3000, 0x7000, perm=RW).ignore()
    pt = space.walk(0x20_3000).steps[-1].entry_pa & ~0xFFF
    with pytest.raises(HugePageConflictError) as info:
        space.map(0x20_0000, 0x40_0000, 2 * MIB, RW)
    # The PDE points to the page table: PT PA | P | R/W (parent widened for the RW leaf).
    assert info.value.existing_entry == pt | X86_P | X86_RW
    assert info.value.va == 0x20_0000 and info.value.level == 2
    assert "0x200000" in str(info.value)


def test_not_mapped_names_the_address() -> None:
    space, _, _ = new_space()
    for call in (
        lambda: space.unmap(0x12_3000),
        lambda: space.protect(0x12_3000, RW),
        lambda: space.remap(0x12_3000, 0x5000),
    ):
        with pytest.raises(NotMappedError) as info:
            call()
        assert info.value.va == 0x12_3000 and "0x123000" in str(info.value)
    space.map(0x40_0000, 0x5000).ignore()
    with pytest.raises(NotMappedError) as hole:
        space.protect_range(0x40_0000, 0x2000, Perm.READ)
    assert hole.value.va == 0x40_1000 and "0x401000" in str(hole.value)


@pytest.mark.parametrize(
    ("va", "pa", "size", "text"),
    [
        (0x1001, 0x5000, 4 * KIB, "0x1001"),
        (0x20_1000, 0x20_0000, 2 * MIB, "0x201000"),
        (0x20_0000, 0x20_1000, 2 * MIB, "0x201000"),
        (0x20_0000, 0x20_0000, 8 * KIB, "0x2000"),
    ],
)
def test_misaligned_map(va: int, pa: int, size: int, text: str) -> None:
    space, alloc, _ = new_space()
    with pytest.raises(MisalignedAddressError, match=text):
        space.map(va, pa, size)
    assert alloc.usage().used == 1


def test_misaligned_unmap_protect_remap_inside_huge_page() -> None:
    space, _, _ = new_space()
    space.map(0x20_0000, 0x20_0000, 2 * MIB).ignore()
    with pytest.raises(MisalignedAddressError, match="0x201000"):
        space.unmap(0x20_1000)
    with pytest.raises(MisalignedAddressError, match="0x201000"):
        space.protect(0x20_1000, Perm.READ)
    with pytest.raises(MisalignedAddressError, match="0x201000"):
        space.remap(0x20_0000, 0x20_1000)


def test_non_canonical_and_too_wide() -> None:
    space, _, _ = new_space()
    with pytest.raises(NonCanonicalAddressError, match="0x800000000000"):
        space.map(0x8000_0000_0000, 0x5000)
    with pytest.raises(PhysicalAddressTooWideError, match="0x10000000000000"):
        space.map(0x1000, 1 << 52)


def test_out_of_frames_changes_nothing() -> None:
    space, alloc, _ = new_space(frames=3)  # root + 2: a first 4K page needs 3 more tables
    before = snapshot(space)
    with pytest.raises(OutOfMemoryError, match="needed 3 table frame"):
        space.map(0x40_0000, 0x5000)
    assert snapshot(space) == before and space.owned == set(before)
    assert alloc.usage().used == 1


def test_unencodable_permission_fails_before_any_split() -> None:
    space, alloc, _ = new_space("sv39")
    space.map_range(0, 0, 2 * MIB, RW).ignore()  # one 2 MiB leaf in VPN[1]
    before, used = snapshot(space), alloc.usage().used
    with pytest.raises(EntryFormatError):  # a RISC-V leaf needs one of R, W, X
        space.protect_range(0x1000, 0x1000, Perm.USER)
    with pytest.raises(EntryFormatError):
        space.map_range(4 * MIB, 0, 4 * MIB, Perm.USER)
    assert snapshot(space) == before and alloc.usage().used == used


def test_destroyed_space_refuses_work() -> None:
    space, alloc, _ = new_space()
    space.map(0x40_0000, 0x5000).ignore()
    flush = space.destroy()
    assert flush.everything and flush.tables_freed
    flush.ignore()
    assert alloc.usage().used == 0
    with pytest.raises(PagingError, match="destroyed"):
        space.map(0x40_0000, 0x5000)


# ------------------------------------------------------------------------------ parent flags


def test_x86_parents_widen_and_leaf_decides() -> None:
    space, _, _ = new_space()
    space.map(0x40_0000, 0x5000, perm=Perm.READ).ignore()
    kernel = space.walk(0x40_0000)
    for step in kernel.steps[:-1]:
        assert step.raw & (X86_RW | X86_US) == 0, step.level.name
    flush = space.map(0x40_1000, 0x6000, perm=RW | Perm.USER)
    user = space.walk(0x40_1000)
    for step in user.steps[:-1]:
        assert step.raw & (X86_RW | X86_US) == X86_RW | X86_US, step.level.name
    assert user.perm == RW | Perm.USER
    # The shared parents were widened, yet the kernel page's own leaf still decides.
    assert space.walk(0x40_0000).perm == Perm.READ
    assert not flush.new_only and flush.covers(0x40_0000)
    flush.ignore()


def test_pae_pdpte_has_no_rw_or_us() -> None:
    space, _, _ = new_space("pae")
    space.map(0x40_0000, 0x5000, perm=RW | Perm.USER).ignore()
    steps = space.walk(0x40_0000).steps
    pd = steps[1].entry_pa & ~0xFFF
    assert steps[0].raw == pd | X86_P  # PAE PDPTE bits 2:1 are reserved (SDM table 4-8)
    assert steps[1].raw & (X86_RW | X86_US) == X86_RW | X86_US


def test_aarch64_table_descriptors_leave_ap_and_xn_table_clear() -> None:
    space, _, _ = new_space("aarch64")
    space.map(0x40_0000, 0x5000, perm=RW | Perm.USER | Perm.EXEC).ignore()
    space.map(0xFFFF_0000_0040_0000, 0x6000, perm=RW | Perm.EXEC).ignore()
    for va in (0x40_0000, 0xFFFF_0000_0040_0000):
        result = space.walk(va)
        for step in result.steps[:-1]:
            assert step.raw & 3 == 3 and step.raw & ARM_TABLE_ATTRS == 0, step.level.name
    assert space.walk(0x40_0000).perm == RW | Perm.USER | Perm.EXEC


# ---------------------------------------------------------------------------- page choice


def page_sizes(space: AddressSpace, probes: list[int]) -> list[int | None]:
    return [space.walk(va).page_size for va in probes]


def test_map_range_uses_largest_page_that_fits() -> None:
    space, _, _ = new_space()
    flush = space.map_range(0x1F_F000, 0x1F_F000, 0x4020_1000 - 0x1F_F000)
    assert flush.new_only and flush.covers(0x1F_F000) and flush.covers(0x4020_0FFF)
    flush.ignore()
    probes = [0x1F_F000, 0x20_0000, 0x3FE0_0000, 0x4000_0000, 0x4020_0000]
    assert page_sizes(space, probes) == [4 * KIB, 2 * MIB, 2 * MIB, 2 * MIB, 4 * KIB]
    assert not space.walk(0x4020_1000).ok and not space.walk(0x1F_E000).ok
    # A range holding a whole aligned GiB maps it with one 1 GiB page.
    space.map_range(0x7FFF_F000, 0x7FFF_F000, 0xC020_1000 - 0x7FFF_F000).ignore()
    probes = [0x7FFF_F000, 0x8000_0000, 0xBFFF_F000, 0xC000_0000, 0xC020_0000]
    assert page_sizes(space, probes) == [4 * KIB, GIB, GIB, 2 * MIB, 4 * KIB]
    assert space.walk(0x9234_5678).pa == 0x9234_5678


def test_map_range_with_misaligned_pa_uses_small_pages() -> None:
    space, _, _ = new_space()
    space.map_range(0x20_0000, 0x20_1000, 4 * MIB).ignore()
    assert set(page_sizes(space, [0x20_0000, 0x30_0000, 0x5F_F000])) == {4 * KIB}
    assert space.walk(0x5F_F123).pa == 0x60_0123


# ---------------------------------------------------------------------------------- splits


@pytest.mark.parametrize("name", ["x86_64", "aarch64", "sv39"])
def test_partial_unmap_splits_1g_page_keeping_attributes(name: str) -> None:
    space, _, _ = new_space(name)
    perm = RW | Perm.USER | Perm.GLOBAL
    memtype = MemType.NORMAL if name == "sv39" else MemType.WRITE_THROUGH
    space.map(GIB, 2 * GIB, GIB, perm, memtype).ignore()
    leaf = space.walk(GIB).leaf
    assert leaf is not None
    hole = GIB + 2 * MIB + 0x3000
    flush = space.unmap(hole, 4 * KIB)
    assert flush.unmapped == [(hole, 2 * GIB + 2 * MIB + 0x3000, 4 * KIB)]
    assert flush.covers(hole)
    flush.ignore()
    assert not space.walk(hole).ok
    for va, size in ((GIB, 2 * MIB), (GIB + 2 * MIB, 4 * KIB), (hole + 0x1000, 4 * KIB)):
        result = space.walk(va)
        assert result.ok and result.page_size == size and result.pa == va + GIB
        assert result.perm == perm | (Perm.EXEC if name == "x86" else Perm.NONE)
        assert result.leaf is not None and result.leaf.memtype == leaf.memtype
    assert space.walk(2 * GIB - 1).pa == 3 * GIB - 1
    if name == "x86_64":
        big = space.walk(GIB + 4 * MIB).steps[-1].raw
        small = space.walk(hole + 0x1000).steps[-1].raw
        # 2 MiB PDE: PWT (PAT index 1 = WT), G, U/S, R/W, PS, XD kept; 4 KiB PTE: no PS.
        flags = X86_P | X86_RW | X86_US | X86_PWT | X86_G | X86_XD
        assert big == (2 * GIB + 4 * MIB) | flags | X86_PS
        assert small == (hole + 0x1000 + GIB) | flags
    assert len(space.owned) == LEVELS[name] + (1 if name == "aarch64" else 0)


@pytest.mark.parametrize("name", MODE_NAMES)
def test_empty_tables_are_freed(name: str) -> None:
    space, alloc, _ = new_space(name)
    roots = len(space.roots)
    va = 0x40_3000
    space.map(va, 0x5000).ignore()
    assert len(space.owned) == roots + LEVELS[name] - 1
    assert alloc.usage().used == len(space.owned)
    flush = space.unmap(va)
    assert flush.tables_freed and flush.unmapped == [(va, 0x5000, 4 * KIB)]
    flush.ignore()
    assert space.owned == set(space.roots) and alloc.usage().used == roots


def test_unmap_keeps_tables_with_other_pages() -> None:
    space, alloc, _ = new_space()
    space.map_range(0x40_0000, 0x5000, 0x2000).ignore()
    flush = space.unmap(0x40_0000)
    assert not flush.tables_freed
    flush.ignore()
    assert alloc.usage().used == 4 and space.walk(0x40_1000).pa == 0x6000


def test_unmap_of_arm_block_with_access_flag_clear() -> None:
    space, _, mem = new_space("aarch64")
    space.map(0x20_0000, 0x20_0000, 2 * MIB).ignore()
    step = space.walk(0x20_0000).steps[-1]
    mem.write_entry(step.entry_pa, 8, step.raw & ~(1 << 10))  # AF=0: software access tracking
    flush = space.unmap_range(0x20_0000, 0x1000)
    assert flush.unmapped == [(0x20_0000, 0x20_0000, 0x1000)]
    flush.ignore()
    rest = space.walk(0x20_1000)  # the split keeps AF=0, so the 4 KiB leaf still faults
    assert rest.leaf is not None and rest.leaf.size == 4 * KIB and rest.leaf.address == 0x20_1000
    assert rest.fault is not None and rest.fault.kind == "access-flag"


# ---------------------------------------------------------------------------------- clone


def test_clone_shares_kernel_half() -> None:
    space, alloc, _ = new_space()
    kva = 0xFFFF_8000_0040_0000
    space.map(0x40_0000, 0x5000, perm=RW | Perm.USER).ignore()
    space.map(kva, 0x6000).ignore()
    used = alloc.usage().used
    clone = space.clone(share_kernel=True)
    # Kernel tables (PDPT, PD, PT) are the same frames and not the clone's; user ones copied.
    kernel_src, kernel_dst = space.walk(kva).steps, clone.walk(kva).steps
    assert [s.entry_pa for s in kernel_src[1:]] == [s.entry_pa for s in kernel_dst[1:]]
    user_src, user_dst = space.walk(0x40_0000).steps, clone.walk(0x40_0000).steps
    assert all(a.entry_pa != b.entry_pa for a, b in zip(user_src, user_dst, strict=True))
    assert len(clone.owned) == 4 and alloc.usage().used == used + 4
    assert not clone.owned & {s.entry_pa & ~0xFFF for s in kernel_src}
    assert clone.translate(0x40_0000) == 0x5000 and clone.translate(kva) == 0x6000
    # A kernel mapping made through the clone is seen by the source: the tables are shared.
    clone.map(kva + 0x1000, 0x7000).ignore()
    assert space.translate(kva + 0x1000) == 0x7000
    clone.destroy().ignore()
    assert alloc.usage().used == used and space.translate(kva) == 0x6000


def test_clone_copies_kernel_half_when_asked() -> None:
    space, alloc, _ = new_space()
    kva = 0xFFFF_8000_0040_0000
    space.map(kva, 0x6000).ignore()
    used = alloc.usage().used
    clone = space.clone(share_kernel=False)
    src, dst = space.walk(kva).steps, clone.walk(kva).steps
    assert all(a.entry_pa != b.entry_pa for a, b in zip(src, dst, strict=True))
    assert len(clone.owned) == 4 and alloc.usage().used == used + 4
    clone.map(kva + 0x1000, 0x7000).ignore()
    assert space.translate(kva + 0x1000) is None
    clone.destroy().ignore()
    assert alloc.usage().used == used


def test_aarch64_clone_shares_ttbr1_root() -> None:
    space, _, _ = new_space("aarch64")
    space.map(0xFFFF_0000_0040_0000, 0x6000).ignore()
    shared = space.clone(share_kernel=True)
    copied = space.clone(share_kernel=False)
    assert shared.roots[1] == space.roots[1] and shared.roots[1] not in shared.owned
    assert copied.roots[1] != space.roots[1] and len(copied.owned) == 5
    assert copied.translate(0xFFFF_0000_0040_0000) == 0x6000
    shared.destroy().ignore()
    copied.destroy().ignore()


@pytest.mark.parametrize("mode", ["x86_64", "aarch64", "sv39"])
def test_destroying_a_space_that_lends_tables_is_refused(mode: str) -> None:
    # A clone shares the source's kernel tables; freeing them under it would leave the clone
    # pointing at frames the allocator hands out again (and a later clone of the clone would
    # copy garbage). The source must refuse, unchanged, until its clones are gone.
    space, alloc, _ = new_space(mode)
    kva = 0xFFFF_8000_0040_0000 if mode == "x86_64" else 0xFFFF_FFC0_0040_0000
    if mode == "aarch64":
        kva = 0xFFFF_0000_0040_0000
    space.map(kva, 0x6000).ignore()
    used = alloc.usage().used
    clone = space.clone(share_kernel=True)
    with pytest.raises(PagingError, match=r"shares .* with 1 live clone"):
        space.destroy()
    assert not space.destroyed and alloc.usage().used > used
    assert clone.translate(kva) == 0x6000 and space.translate(kva) == 0x6000
    grandchild = clone.clone(share_kernel=True)
    assert grandchild.translate(kva) == 0x6000
    grandchild.destroy().ignore()
    clone.destroy().ignore()
    assert alloc.usage().used == used
    space.destroy().ignore()
    assert alloc.usage().used == 0


def test_destroy_returns_every_table_frame() -> None:
    space, alloc, _ = new_space()
    space.map_range(0x1F_F000, 0x1F_F000, 0x4020_1000 - 0x1F_F000).ignore()
    space.map(0xFFFF_8000_0000_0000, 0x5000).ignore()
    assert alloc.usage().used == len(space.owned) == len(space.table_frames())
    space.destroy().ignore()
    assert alloc.usage().used == 0


# ---------------------------------------------------------------------------------- flushes


def test_flush_ranges_cover_what_changed() -> None:
    space, _, _ = new_space()
    mapped = space.map_range(0x40_0000, 0x5000, 0x3000)
    assert mapped.ranges[0] == (0x40_0000, 0x3000) and mapped.new_only
    mapped.ignore()
    prot = space.protect_range(0x40_1000, 0x1000, Perm.READ)
    assert prot.covers(0x40_1000) and not prot.covers(0x40_2000) and not prot.covers(0x40_0000)
    prot.ignore()
    remapped = space.remap(0x40_2000, 0x9000)
    assert remapped.ranges == ((0x40_2000, 0x1000),)
    assert remapped.unmapped == [(0x40_2000, 0x7000, 0x1000)]
    remapped.ignore()
    gone = space.unmap_range(0x40_0000, 0x3000)
    assert gone.covers(0x40_0000) and gone.covers(0x40_2FFF) and gone.tables_freed
    assert gone.unmapped == [(0x40_0000, 0x5000, 0x2000), (0x40_2000, 0x9000, 0x1000)]
    gone.ignore()


def test_strict_flushes_catches_a_dropped_flush() -> None:
    space, _, _ = new_space()
    with strict_flushes() as dropped:
        space.map(0x40_0000, 0x5000)  # dropped on purpose
        space.map(0x40_1000, 0x6000).ignore()
        Flush.none("nothing")
    assert len(dropped) == 1 and dropped[0].startswith("map:") and "0x400000" in dropped[0]


# --------------------------------------------------------------------------- looping tables


def test_tables_that_loop_terminate(alarm: None) -> None:
    mode = make_mode("x86_64")
    mem = PhysicalMemory(8 * MIB)
    root, pdpt = 0x1000, 0x2000
    mem.write_entry(root, 8, root | 3)  # PML4E[0] -> the PML4 itself (a self-map)
    mem.write_entry(root + 8, 8, pdpt | 3)  # PML4E[1] -> a PDPT ...
    mem.write_entry(pdpt, 8, root | 3)  # ... whose PDPTE[0] points back up to the PML4
    mem.write_entry(pdpt + 8, 8, pdpt | 3)  # ... and PDPTE[1] to the PDPT itself
    alloc = SimpleFrameAllocator(POOL, 64 * 4096)
    space = AddressSpace(mode, mem, alloc, roots=[root], owned=set())
    assert space.table_frames() == [root, pdpt]
    clone = space.clone(share_kernel=False)
    assert clone.table_frames() == sorted(clone.owned) and len(clone.owned) == 2
    (new_root,) = clone.roots
    # The self-map follows the clone: PML4E[0] points to the clone's own root.
    assert mem.read_entry(new_root, 8) == new_root | 3
    new_pdpt = mem.read_entry(new_root + 8, 8) & ~0xFFF
    assert new_pdpt != pdpt and mem.read_entry(new_pdpt, 8) == new_root | 3
    assert mem.read_entry(new_pdpt + 8, 8) == new_pdpt | 3
    clone.destroy().ignore()
    assert alloc.usage().used == 0


@pytest.mark.parametrize("name", ["x86_64", "sv48"])
def test_unmap_inside_1g_page_splits_at_both_edges(name: str) -> None:
    space, alloc, _ = new_space(name)
    space.map(GIB, 0, GIB).ignore()
    lo, hi = GIB + 2 * MIB, GIB + 2 * MIB + 0x3000  # lo is 2 MiB aligned, hi is not
    flush = space.unmap_range(lo, hi - lo)
    assert flush.unmapped == [(lo, 2 * MIB, 0x3000)]
    flush.ignore()
    assert page_sizes(space, [GIB, lo, hi, hi + 2 * MIB]) == [2 * MIB, None, 4 * KIB, 2 * MIB]
    assert space.walk(hi).pa == hi - GIB
    # The 1 GiB leaf sits one level below the root (levels - 2 tables down to it); the split
    # adds one table of 2 MiB leaves and one of 4 KiB leaves: every level has a table.
    assert alloc.usage().used == LEVELS[name]


def test_tables_shared_with_a_clone_are_never_freed_by_the_source() -> None:
    """A kernel half shared with a process stays intact when the kernel empties part of it."""
    from pagewalk import AddressSpace, Perm, PhysicalMemory, make_mode
    from pagewalk.alloc import SimpleFrameAllocator

    for name, kva in (("x86_64", 0xFFFF888000000000), ("aarch64", 0xFFFF000000200000)):
        mem = PhysicalMemory(32 << 20)
        frames = SimpleFrameAllocator(16 << 20, 16 << 20)
        kernel = AddressSpace(make_mode(name), mem, frames)
        kernel.map(kva, 0x5000, 4096, Perm.READ | Perm.WRITE).ignore()
        child = kernel.clone(share_kernel=True, user=False)
        before = kernel.table_frames()
        kernel.unmap(kva).ignore()
        assert kernel.table_frames() == before  # emptied, but kept: the clone points to them
        kernel.map(kva + 0x1000, 0x6000, 4096, Perm.READ).ignore()
        assert child.translate(kva + 0x1000) == 0x6000  # the clone sees the shared tables
        child.destroy().ignore()
        kernel.destroy().ignore()
        assert frames.usage().used == 0


def test_riscv_protect_keeps_the_dirty_bit() -> None:
    """D is state the hardware (Svadu) or the handler set; a permission change must not lose it."""
    from pagewalk import AddressSpace, Perm, PhysicalMemory, make_mode
    from pagewalk.alloc import SimpleFrameAllocator
    from pagewalk.formats.riscv import D, W

    mem = PhysicalMemory(16 << 20)
    space = AddressSpace(make_mode("sv39"), mem, SimpleFrameAllocator(8 << 20, 8 << 20))
    space.map(0x40000000, 0x3000, 4096, Perm.READ | Perm.WRITE | Perm.USER).ignore()
    step = space.walk(0x40000000).steps[-1]
    assert step.raw & D and step.raw & W
    space.protect(0x40000000, Perm.READ | Perm.USER).ignore()
    raw = mem.read_entry(step.entry_pa, 8)
    assert raw & D and not raw & W


class _Frames:
    """A frame allocator that hands out the frames it is given, in that order."""

    def __init__(self, frames: list[int]) -> None:
        self.free_list, self.taken = list(frames), set[int]()

    def allocate(self, n_frames: int = 1, align: int = 4096) -> int:
        from pagewalk.errors import OutOfMemoryError

        if not self.free_list:
            raise OutOfMemoryError("no frames left")
        pa = self.free_list.pop(0)
        self.taken.add(pa)
        return pa

    def free(self, pa: int, n_frames: int = 1) -> None:
        self.taken.remove(pa)
        self.free_list.insert(0, pa)


@pytest.mark.parametrize("name", ["x86", "pae"])
def test_tables_must_fit_the_entries_that_point_to_them(name: str) -> None:
    """32-bit x86 points to every table with 32 bits, PAE only to its PDPT (through CR3): a
    frame too high is refused before anything is written, and goes back to the allocator."""
    from pagewalk.errors import PhysicalAddressTooWideError

    mode = make_mode(name)
    high = 5 << 30
    mem = PhysicalMemory(regions=[(0, 16 * MIB), (high, 16 * MIB)])
    frames = _Frames([high, high + 0x1000])
    with pytest.raises(PhysicalAddressTooWideError, match=r"for a root table.*below 0x100000000"):
        AddressSpace(mode, mem, frames)  # type: ignore[arg-type]
    assert not frames.taken
    with pytest.raises(PhysicalAddressTooWideError, match="32-bit root register"):
        AddressSpace(mode, mem, frames, roots=[high] * len(mode.halves))  # type: ignore[arg-type]
    frames = _Frames([0x100000, high, high + 0x1000, high + 0x2000])
    space = AddressSpace(mode, mem, frames)  # type: ignore[arg-type]
    before = mem.read(0x100000, 4096)
    if name == "x86":
        with pytest.raises(PhysicalAddressTooWideError, match=r"for a table.*below 0x100000000"):
            space.map(0x400000, 0x1000)
        assert frames.taken == {0x100000} and mem.read(0x100000, 4096) == before
    else:  # PAE's page directories and tables may lie above 4 GiB
        space.map(0x400000, 0x1000).ignore()
        assert space.translate(0x400123) == 0x1123 and frames.taken >= {high, high + 0x1000}


def test_clone_takes_its_roots_from_the_lowest_frames() -> None:
    mode = make_mode("pae")
    high = 5 << 30
    mem = PhysicalMemory(regions=[(0, 16 * MIB), (high, 16 * MIB)])
    frames = _Frames([0x100000, 0x101000, high, high + 0x1000, high + 0x2000, 0x102000])
    space = AddressSpace(mode, mem, frames)  # type: ignore[arg-type]
    space.map(0x400000, 0x1000).ignore()
    child = space.clone(share_kernel=False)
    assert child.roots[0] < 1 << 32 and child.translate(0x400123) == 0x1123


def test_listeners_hear_the_name_of_the_call_made() -> None:
    """A one-page call runs a range call inside; listeners hear the one-page name, and a
    break-before-make step inside keeps its own."""
    from pagewalk.alloc.simple import SimpleFrameAllocator as Frames

    mode = make_mode("aarch64")
    mem = PhysicalMemory(16 * MIB)
    space = AddressSpace(mode, mem, Frames(8 * MIB, 8 * MIB))
    heard: list[str] = []
    space.listeners.append(lambda _space, flush: heard.append(flush.operation))
    space.bbm = lambda flush: flush.ignore()
    space.map(0x40_0000, 0x1000).ignore()
    space.protect(0x40_0000, Perm.READ, MemType.DEVICE).ignore()
    space.unmap(0x40_0000).ignore()
    space.map_range(0x40_0000, 0x1000, 0x2000, Perm.READ).ignore()
    assert heard == ["map", "break-before-make", "protect", "unmap", "map_range"]


def test_space_package_is_layered_without_import_cycles() -> None:
    """The parts of ``pagewalk.space`` import each other as a DAG, never the package itself,
    and the old mixin modules are gone."""
    import ast
    import importlib.util
    from pathlib import Path

    import pagewalk.space

    (root,) = pagewalk.space.__path__
    graph: dict[str, set[str]] = {}
    for path in Path(root).glob("*.py"):
        name = f"pagewalk.space.{path.stem}" if path.stem != "__init__" else "pagewalk.space"
        deps = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                target = node.module
            elif isinstance(node, ast.Import):
                target = node.names[0].name
            else:
                continue
            if target == "pagewalk.space" or target.startswith("pagewalk.space."):
                deps.add(target)
    assert len(graph) >= 5
    for name, deps in graph.items():
        if name != "pagewalk.space":
            assert "pagewalk.space" not in deps, f"{name} imports the package it is part of"
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for dep in graph.get(name, ()):
            visit(dep, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())
    for old in ("pagewalk.space_ops", "pagewalk.space_clone"):
        assert importlib.util.find_spec(old) is None
