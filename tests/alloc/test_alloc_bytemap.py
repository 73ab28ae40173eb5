"""atOS-RT's byte map: one state byte per frame, user and library zones."""

from __future__ import annotations

import pytest

from pagewalk.alloc import ATOS_ZONES, FRAME_SIZE, ByteMapFrameAllocator, PageState
from pagewalk.errors import AllocatorError, ConfigError, OutOfMemoryError


def test_states_are_recorded_per_frame() -> None:
    alloc = ByteMapFrameAllocator([(0, 1 << 20)])
    a = alloc.allocate()
    u = alloc.allocate(2, state=PageState.USER)
    lib = alloc.allocate(state=PageState.LIBRARY)
    alloc.reserve(0x80000, FRAME_SIZE)
    assert [alloc.state(x) for x in (a, u, u + FRAME_SIZE, lib, 0x80000, 0x81000)] == [
        PageState.ALLOCATED,
        PageState.USER,
        PageState.USER,
        PageState.LIBRARY,
        PageState.RESERVED,
        PageState.FREE,
    ]
    assert alloc.state(2 << 20) is PageState.ABSENT
    counts = alloc.counts()
    assert counts[PageState.USER] == 2 and counts[PageState.RESERVED] == 1
    assert alloc.bookkeeping_bytes() == 256


def test_zones_keep_user_and_library_frames_apart() -> None:
    alloc = ByteMapFrameAllocator([(0, 0x3000_0000)], zones=ATOS_ZONES)
    assert alloc.allocate() == 0
    assert alloc.allocate(state=PageState.USER) == 0x1000_0000
    assert alloc.allocate(state=PageState.LIBRARY) == 0x2000_0000
    small = ByteMapFrameAllocator([(0, 0x1000_0000)], zones=ATOS_ZONES)
    with pytest.raises(OutOfMemoryError, match="USER range"):
        small.allocate(state=PageState.USER)


def test_bad_states_are_refused() -> None:
    alloc = ByteMapFrameAllocator([(0, 1 << 20)])
    with pytest.raises(AllocatorError, match="RESERVED"):
        alloc.allocate(state=PageState.RESERVED)
    with pytest.raises(ConfigError):
        ByteMapFrameAllocator([(0, 1 << 20)], zones={PageState.FREE: (0, 1 << 20)})


def test_first_fit_reuses_the_lowest_hole() -> None:
    alloc = ByteMapFrameAllocator([(0, 1 << 20)])
    pages = [alloc.allocate() for _ in range(4)]
    alloc.free(pages[1])
    assert alloc.allocate() == pages[1]
