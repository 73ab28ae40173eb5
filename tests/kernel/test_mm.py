"""The generic kernel memory manager: demand paging, copy-on-write, sharing, isolation, destroy.

Expected values come from the design documents (seeds/) and the paging rules, checked through
the kernel's access path (the same path the MMU serves), never from pasted output.
"""

from __future__ import annotations

import pytest

from pagewalk.formats import Perm
from pagewalk.kernel import Kernel, ProcessFault, get_profile, profile_names


@pytest.fixture(params=profile_names())
def kernel(request: pytest.FixtureRequest) -> Kernel:
    return Kernel(get_profile(request.param)).boot()


def test_destroy_returns_every_frame(kernel: Kernel) -> None:
    start = kernel.frames.usage()
    procs = [kernel.spawn(f"p{i}", b"\x90" * 9000) for i in range(3)]
    kernel.write(procs[0], procs[0].vmas[1].start, b"x" * 5000)
    child = kernel.fork(procs[0])
    shm = kernel.shm_create(0x3000)
    kernel.shm_map(procs[1], shm, Perm.READ | Perm.WRITE)
    kernel.shm_map(child, shm, Perm.READ)
    kernel.shm_unlink(shm)
    assert kernel.frames.usage().used > start.used
    for proc in [child, *procs]:
        kernel.destroy(proc)
    assert kernel.frames.usage() == start


def test_isolation_through_the_access_path(kernel: Kernel) -> None:
    a, b = kernel.spawn("a"), kernel.spawn("b")
    heap = a.vmas[1].start
    kernel.write(a, heap, b"only a")
    assert kernel.read(b, heap, 6) != b"only a"
    assert kernel.access(a, heap) != kernel.access(b, heap)
    for m in kernel.kernel_maps:
        with pytest.raises(ProcessFault) as info:
            kernel.access(b, m.va, "read", user=True)
        assert info.value.fault.kind in ("protection", "permission", "page-fault")


def test_fault_outside_any_area_is_fatal_with_the_walk(kernel: Kernel) -> None:
    proc = kernel.spawn("p")
    with pytest.raises(ProcessFault) as info:
        kernel.access(proc, 0x10, "write")
    assert info.value.walk.va == 0x10 and info.value.fault.va == 0x10
    # Unmapped (a walk fault), or mapped for the kernel only (atOS's misc region): refused.
    assert info.value.walk.fault is not None or not info.value.walk.perm & Perm.USER


def test_write_to_read_only_program_text_is_fatal(kernel: Kernel) -> None:
    proc = kernel.spawn("p", b"\xc3" * 100)
    text = proc.vmas[0].start
    assert kernel.read(proc, text, 1) == b"\xc3"
    with pytest.raises(ProcessFault):
        kernel.write(proc, text, b"\x90")


def test_shared_memory_frees_frames_only_at_the_last_mapping() -> None:
    kernel = Kernel(get_profile("powernex")).boot()
    a, b = kernel.spawn("a"), kernel.spawn("b")
    shm = kernel.shm_create(0x2000)
    va_a = kernel.shm_map(a, shm, Perm.READ | Perm.WRITE)
    va_b = kernel.shm_map(b, shm, Perm.READ | Perm.WRITE)
    kernel.shm_unlink(shm)
    kernel.write(a, va_a, b"ping")
    assert kernel.read(b, va_b, 4) == b"ping"
    frame = shm.frames[0]
    kernel.munmap(a, va_a, shm.size)
    assert kernel.refs.count(frame) == 1
    assert kernel.read(b, va_b, 4) == b"ping"
    kernel.munmap(b, va_b, shm.size)
    assert kernel.refs.count(frame) == 0


def test_demand_paging_allocates_zeroed_frames_on_first_touch() -> None:
    kernel = Kernel(get_profile("powernex")).boot()
    proc = kernel.spawn("p")
    va = kernel.mmap(proc, 0x3000, Perm.READ | Perm.WRITE)
    used, tables = kernel.frames.usage().used, len(proc.space.owned)
    assert proc.space.translate(va + 0x1000) is None
    kernel.mem.write(kernel.frames.allocate(), b"\xff" * 4096)  # dirty a frame the handler may get
    assert kernel.read(proc, va + 0x1000, 16) == bytes(16)
    assert proc.space.translate(va + 0x1000) is not None
    assert proc.space.translate(va) is None  # only the touched page
    new_tables = len(proc.space.owned) - tables
    assert kernel.frames.usage().used == used + 2 + new_tables  # the dirty frame + one page


def test_copy_on_write_copies_once_and_the_last_owner_keeps_its_frame() -> None:
    kernel = Kernel(get_profile("powernex")).boot()
    parent = kernel.spawn("p")
    heap = parent.vmas[1].start
    kernel.write(parent, heap, b"parent")
    frame = parent.space.translate(heap)
    child = kernel.fork(parent)
    assert child.space.translate(heap) == frame
    assert not parent.space.walk(heap).perm & Perm.WRITE
    kernel.write(child, heap, b"child!")
    assert child.space.translate(heap) != frame
    assert kernel.read(parent, heap, 6) == b"parent"
    kernel.write(parent, heap, b"again!")
    assert parent.space.translate(heap) == frame  # last owner: no copy
    assert kernel.refs.count(frame) == 1


def test_redox_faults_are_fatal_even_inside_areas() -> None:
    kernel = Kernel(get_profile("redox")).boot()
    proc = kernel.spawn("p")
    va = kernel.mmap(proc, 0x1000, Perm.READ, lazy=True)
    with pytest.raises(ProcessFault) as info:
        kernel.read(proc, va, 4)
    assert "fatal" in info.value.why


def test_kernel_runs_through_the_mmu_and_a_forgotten_flush_is_caught() -> None:
    """The kernel's accesses go through the TLB; a change without its flush is reported."""
    kernel = Kernel(get_profile("powernex")).boot()
    proc = kernel.spawn("p")
    heap = proc.vmas[1].start
    kernel.write(proc, heap, b"old")
    hits = kernel.tlb_stats()["hits"]
    kernel.read(proc, heap, 3)
    assert kernel.tlb_stats()["hits"] > hits  # served from the TLB
    new = kernel.data_frame()
    kernel.mem.write(new, b"new")
    proc.space.remap(heap, new).ignore()  # the kernel "forgets" the flush
    assert kernel.read(proc, heap, 3) == b"old"  # the stale entry still wins, as on hardware
    detector = kernel.mmu.detector
    assert detector is not None and detector.reports
    assert "remap without a flush" in str(detector.reports[-1])
