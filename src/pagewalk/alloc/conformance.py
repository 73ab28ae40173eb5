"""The conformance suite every frame allocator passes, whatever its design.

It checks the contract of :class:`~pagewalk.alloc.base.FrameAllocator` (and of
:class:`~pagewalk.alloc.base.RefCountedFrames` when offered): no frame is handed out twice,
``free + used == total``, runs are aligned as asked (Intel SDM vol. 3A §4.5 for large-page
frames), a double free or a free of a frame the allocator does not own raises
:class:`~pagewalk.errors.AllocatorError`, exhaustion raises
:class:`~pagewalk.errors.OutOfMemoryError`, and a failed call changes nothing. It has no test
framework dependency: each check raises ``AssertionError`` with a sentence saying what broke.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial

from pagewalk.alloc.base import FRAME_SIZE, FrameAllocator, RefCountedFrames, Usage
from pagewalk.errors import AllocatorError, OutOfMemoryError, hx

Factory = Callable[[], FrameAllocator]
#: a conformance factory must build an allocator this small, so exhaustion is quick
MAX_FRAMES = 1 << 17


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise AssertionError(message)


def _raises(kind: type[Exception], call: Callable[[], object], what: str) -> None:
    try:
        call()
    except kind:
        return
    except Exception as exc:
        raise AssertionError(f"{what}: raised {type(exc).__name__}: {exc}") from exc
    raise AssertionError(f"{what}: did not raise {kind.__name__}")


def _unchanged(alloc: FrameAllocator, before: Usage, what: str) -> None:
    after = alloc.usage()
    _expect(after == before, f"{what} changed usage from {before} to {after}")


def _fresh(factory: Factory) -> tuple[FrameAllocator, Usage]:
    alloc = factory()
    start = alloc.usage()
    _expect(0 < start.total <= MAX_FRAMES, f"factory gave {start.total} frames (1..{MAX_FRAMES})")
    _expect(start.free > 16, f"factory left only {start.free} free frames (need more than 16)")
    return alloc, start


def check_single_frames(factory: Factory) -> None:
    """Single frames are aligned and distinct, and usage follows each call."""
    alloc, start = _fresh(factory)
    got = [alloc.allocate() for _ in range(16)]
    _expect(all(pa % FRAME_SIZE == 0 for pa in got), f"unaligned frame in {list(map(hx, got))}")
    _expect(len(set(got)) == 16, f"a frame was handed out twice: {list(map(hx, got))}")
    now = alloc.usage()
    _expect(now.free == start.free - 16 and now.used == start.used + 16, f"usage is {now}")
    for pa in got:
        alloc.free(pa)
    _unchanged(alloc, start, "allocating and freeing 16 frames")


def check_aligned_runs(factory: Factory) -> None:
    """Runs are aligned to the bytes asked and never overlap."""
    alloc, start = _fresh(factory)
    runs: list[tuple[int, int]] = []
    for n, align in ((1, 0x2000), (2, 0x2000), (3, 0x4000), (5, 0x10000), (16, 0x10000)):
        pa = alloc.allocate(n, align)
        _expect(pa % align == 0, f"allocate({n}, {hx(align)}) returned {hx(pa)}")
        runs.append((pa, n))
    if start.free >= 2048:
        pa = alloc.allocate(512, 0x200000)
        _expect(pa % 0x200000 == 0, f"a 512-frame run at {hx(pa)} is not 2 MiB aligned")
        runs.append((pa, 512))
    spans = sorted((pa, pa + n * FRAME_SIZE) for pa, n in runs)
    for (_, end), (nxt, _) in itertools.pairwise(spans):
        _expect(end <= nxt, f"runs overlap: {hx(nxt)} starts before {hx(end)}")
    for pa, n in runs:
        alloc.free(pa, n)
    _unchanged(alloc, start, "allocating and freeing aligned runs")


def check_bad_requests(factory: Factory) -> None:
    """A zero count or a non-power-of-two alignment raises AllocatorError and changes nothing."""
    alloc, start = _fresh(factory)
    for n, align in ((0, FRAME_SIZE), (-1, FRAME_SIZE), (1, 3000), (1, 6 * FRAME_SIZE), (1, 0)):
        _raises(AllocatorError, partial(alloc.allocate, n, align), f"allocate({n}, {hx(align)})")
        _unchanged(alloc, start, f"the bad request allocate({n}, {hx(align)})")


def check_double_free(factory: Factory) -> None:
    """Freeing a frame twice raises AllocatorError and leaves the other frames alone."""
    alloc, _ = _fresh(factory)
    a, b = alloc.allocate(), alloc.allocate()
    alloc.free(a)
    before = alloc.usage()
    _raises(AllocatorError, lambda: alloc.free(a), f"a second free of {hx(a)}")
    _unchanged(alloc, before, "a double free")
    alloc.free(b)
    _raises(AllocatorError, lambda: alloc.free(b), f"a second free of {hx(b)}")


def check_foreign_free(factory: Factory) -> None:
    """Freeing frames the allocator does not own raises AllocatorError and changes nothing."""
    alloc, _ = _fresh(factory)
    pa = alloc.allocate()
    before = alloc.usage()
    bad = {
        "a PA far beyond RAM": (1 << 52, 1),
        "an unaligned PA": (pa + 8, 1),
        "a run reaching past the frame": (pa, 2),
        "a run starting before the frame": (pa - FRAME_SIZE, 2),
        "zero frames": (pa, 0),
    }
    for what, (addr, n) in bad.items():
        if addr < 0:
            continue
        _raises(AllocatorError, partial(alloc.free, addr, n), f"free of {what}")
        _unchanged(alloc, before, f"a free of {what}")
    alloc.free(pa)


def check_exhaustion(factory: Factory) -> None:
    """Every free frame can be handed out once; then OutOfMemoryError, and nothing changes."""
    alloc, start = _fresh(factory)
    got = []
    for _ in range(start.free):
        got.append(alloc.allocate())
    _expect(len(set(got)) == len(got), "a frame was handed out twice before exhaustion")
    full = alloc.usage()
    _expect(full.free == 0, f"after {len(got)} allocations usage is {full}")
    _raises(OutOfMemoryError, alloc.allocate, "allocating from an exhausted allocator")
    _raises(OutOfMemoryError, lambda: alloc.allocate(4), "a run from an exhausted allocator")
    _unchanged(alloc, full, "a failed allocation")
    for pa in got:
        alloc.free(pa)
    _unchanged(alloc, start, "freeing every frame")
    _raises(OutOfMemoryError, lambda: alloc.allocate(start.total + 1), "a run longer than all RAM")
    _unchanged(alloc, start, "a run longer than all RAM")


def check_reserve(factory: Factory) -> None:
    """Reserving takes free frames for good; reserving an allocated frame raises."""
    alloc, _ = _fresh(factory)
    held = alloc.allocate()
    before = alloc.usage()
    _raises(AllocatorError, lambda: alloc.reserve(held, FRAME_SIZE), f"reserving {hx(held)}")
    _unchanged(alloc, before, "reserving an allocated frame")
    spare = alloc.allocate()
    alloc.free(spare)
    before = alloc.usage()
    alloc.reserve(spare, FRAME_SIZE)
    after = alloc.usage()
    _expect(after.free == before.free - 1, f"reserving one free frame moved usage to {after}")
    alloc.reserve(spare, FRAME_SIZE)
    _unchanged(alloc, after, "reserving the same frame twice")
    _raises(AllocatorError, lambda: alloc.free(spare), f"freeing reserved frame {hx(spare)}")
    got = [alloc.allocate() for _ in range(after.free)]
    _expect(spare not in got, f"reserved frame {hx(spare)} was handed out")


def check_refcounts(factory: Factory) -> None:
    """Shared frames are released only when their last user frees them."""
    alloc, start = _fresh(factory)
    if not isinstance(alloc, RefCountedFrames):
        return
    pa = alloc.allocate(2)
    _expect(alloc.refcount(pa) == 1, f"a new frame has refcount {alloc.refcount(pa)}")
    alloc.share(pa, 2)
    _expect(alloc.refcount(pa + FRAME_SIZE) == 2, "share did not count a second user")
    alloc.free(pa, 2)
    _expect(alloc.refcount(pa) == 1, "free of a shared frame did not drop one user")
    _expect(alloc.usage().free == start.free - 2, "a shared frame was released too early")
    alloc.free(pa, 2)
    _expect(alloc.refcount(pa) == 0, "the last free did not release the frame")
    _unchanged(alloc, start, "sharing and freeing twice")
    _raises(AllocatorError, lambda: alloc.share(pa), f"sharing free frame {hx(pa)}")
    _raises(AllocatorError, lambda: alloc.free(pa), f"a third free of {hx(pa)}")


CHECKS: dict[str, Callable[[Factory], None]] = {
    "single_frames": check_single_frames,
    "aligned_runs": check_aligned_runs,
    "bad_requests": check_bad_requests,
    "double_free": check_double_free,
    "foreign_free": check_foreign_free,
    "exhaustion": check_exhaustion,
    "reserve": check_reserve,
    "refcounts": check_refcounts,
}


def check_frame_allocator(factory: Factory) -> None:
    """Run every check on fresh allocators from ``factory``.

    Args:
        factory: builds a new allocator of at most :data:`MAX_FRAMES` frames with more than 16
            free.

    Raises:
        AssertionError: naming the first check that failed and why.
    """
    for name, check in CHECKS.items():
        try:
            check(factory)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc
