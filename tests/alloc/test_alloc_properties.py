"""Hypothesis state machines: each allocator against a model of who holds which frame.

Properties: a frame is never handed out twice; ``free + used == total`` and ``used`` moves
exactly with the model; runs are aligned; a double free or a foreign free raises and changes
nothing; running out raises OutOfMemoryError and changes nothing; reserved frames never come
back; a shared frame is released only by its last user.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from alloc_factories import FACTORIES
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pagewalk.alloc import FRAME_SIZE, FrameAllocator, RefCountedFrames, SimpleFrameAllocator
from pagewalk.errors import AllocatorError, OutOfMemoryError

SETTINGS = settings(
    max_examples=40,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class FrameModel(RuleBasedStateMachine):
    """Runs allocate/free/share/reserve and compares with a dict model."""

    factory: Callable[[], FrameAllocator]

    def __init__(self) -> None:
        super().__init__()
        self.alloc = type(self).factory()
        self.base = self.alloc.usage()
        self.held: dict[int, tuple[int, int]] = {}  # pa -> (n_frames, users)
        self.frames: set[int] = set()
        self.gone: list[tuple[int, int]] = []
        self.reserved: set[int] = set()

    def _same(self, call: Callable[[], object], kind: type[Exception]) -> None:
        before = self.alloc.usage()
        try:
            call()
        except kind:
            assert self.alloc.usage() == before
        else:
            raise AssertionError(f"{call} did not raise {kind.__name__}")

    @rule(n=st.integers(1, 24), shift=st.integers(0, 5))
    def allocate(self, n: int, shift: int) -> None:
        align = FRAME_SIZE << shift
        before = self.alloc.usage()
        try:
            pa = self.alloc.allocate(n, align)
        except OutOfMemoryError:
            assert self.alloc.usage() == before
            return
        assert pa % align == 0, f"{pa:#x} not aligned to {align:#x}"
        run = {pa // FRAME_SIZE + i for i in range(n)}
        assert not run & self.frames, f"frames handed out twice at {pa:#x}"
        assert not run & self.reserved, f"reserved frame handed out at {pa:#x}"
        self.frames |= run
        self.held[pa] = (n, 1)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        pa = data.draw(st.sampled_from(sorted(self.held)))
        n, users = self.held.pop(pa)
        self.alloc.free(pa, n)
        if users > 1:
            self.held[pa] = (n, users - 1)
            return
        self.frames -= {pa // FRAME_SIZE + i for i in range(n)}
        self.gone.append((pa, n))

    @precondition(lambda self: self.gone)
    @rule(data=st.data())
    def double_free(self, data: st.DataObject) -> None:
        pa, n = data.draw(st.sampled_from(self.gone))
        if {pa // FRAME_SIZE + i for i in range(n)} & self.frames:
            return
        self._same(lambda: self.alloc.free(pa, n), AllocatorError)

    @rule(offset=st.integers(1, FRAME_SIZE - 1))
    def foreign_free(self, offset: int) -> None:
        self._same(lambda: self.alloc.free((1 << 44) + offset), AllocatorError)
        self._same(lambda: self.alloc.free(1 << 44), AllocatorError)

    @precondition(lambda self: isinstance(self.alloc, RefCountedFrames) and self.held)
    @rule(data=st.data())
    def share(self, data: st.DataObject) -> None:
        assert isinstance(self.alloc, RefCountedFrames)
        pa = data.draw(st.sampled_from(sorted(self.held)))
        n, users = self.held[pa]
        self.alloc.share(pa, n)
        self.held[pa] = (n, users + 1)
        assert self.alloc.refcount(pa) == users + 1

    @rule()
    def reserve_a_free_frame(self) -> None:
        try:
            pa = self.alloc.allocate()
        except OutOfMemoryError:
            return
        self.alloc.free(pa)
        self.alloc.reserve(pa, FRAME_SIZE)
        self.reserved.add(pa // FRAME_SIZE)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def reserve_a_held_frame(self, data: st.DataObject) -> None:
        pa = data.draw(st.sampled_from(sorted(self.held)))
        self._same(lambda: self.alloc.reserve(pa, FRAME_SIZE), AllocatorError)

    @invariant()
    def usage_follows_the_model(self) -> None:
        now = self.alloc.usage()
        assert now.free + now.used == now.total == self.base.total
        assert now.used == self.base.used + len(self.frames) + len(self.reserved)


def _machine(factory: Callable[[], FrameAllocator]) -> type[FrameModel]:
    return type("Machine", (FrameModel,), {"factory": staticmethod(factory)})


@pytest.mark.parametrize("name", FACTORIES, ids=str)
def test_model(name: str) -> None:
    machine = _machine(FACTORIES[name])
    machine.TestCase.settings = SETTINGS
    machine.TestCase().runTest()


def test_model_simple() -> None:
    machine = _machine(lambda: SimpleFrameAllocator(0x100000, 1 << 20))
    machine.TestCase.settings = settings(SETTINGS, max_examples=200)
    machine.TestCase().runTest()
