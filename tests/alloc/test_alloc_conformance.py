"""Every frame allocator passes the one conformance suite; a broken one fails it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from alloc_factories import FACTORIES

from pagewalk.alloc import FRAME_SIZE, FrameAllocator, SimpleFrameAllocator, Usage
from pagewalk.alloc.conformance import CHECKS, check_frame_allocator
from pagewalk.errors import AllocatorError


@pytest.mark.parametrize("check", CHECKS, ids=str)
@pytest.mark.parametrize("name", FACTORIES, ids=str)
def test_check(name: str, check: str) -> None:
    CHECKS[check](FACTORIES[name])


@pytest.mark.parametrize("name", FACTORIES, ids=str)
def test_whole_suite(name: str) -> None:
    check_frame_allocator(FACTORIES[name])


@pytest.mark.parametrize("name", FACTORIES, ids=str)
def test_satisfies_the_protocol(name: str) -> None:
    assert isinstance(FACTORIES[name](), FrameAllocator)


@pytest.mark.parametrize("check", list(CHECKS))
def test_simple_allocator(check: str) -> None:
    CHECKS[check](lambda: SimpleFrameAllocator(0x100000, 16 << 20))


class _Careless:
    """Hands out frames from a counter and believes every free (the suite must catch it)."""

    def __init__(self, reuse: bool) -> None:
        self.next, self.reuse, self.used = 0x100000, reuse, 0

    def allocate(self, n_frames: int = 1, align: int = FRAME_SIZE) -> int:
        if n_frames < 1 or align & (align - 1) or align < FRAME_SIZE:
            raise AllocatorError("bad")
        pa = -(-self.next // align) * align
        if not self.reuse:
            self.next = pa + n_frames * FRAME_SIZE
        self.used += n_frames
        return pa

    def free(self, pa: int, n_frames: int = 1) -> None:
        self.used -= n_frames

    def reserve(self, pa: int, size: int) -> None:
        pass

    def usage(self) -> Usage:
        return Usage(1024, 1024 - self.used, self.used)


@pytest.mark.parametrize(
    ("make", "check"),
    [
        (lambda: _Careless(reuse=True), "single_frames"),
        (lambda: _Careless(reuse=False), "double_free"),
        (lambda: _Careless(reuse=False), "exhaustion"),
    ],
)
def test_suite_catches_a_broken_allocator(make: Callable[[], FrameAllocator], check: str) -> None:
    with pytest.raises(AssertionError):
        CHECKS[check](make)
