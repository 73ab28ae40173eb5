"""Telling the TLBs: the flushes a space announces, and the break of break-before-make.

One idea: every change to a space's tables is announced as a :class:`~pagewalk.flush.Flush` to
its listeners (the MMU's checkers) and returned to the caller, naming what a TLB must drop
(Intel SDM vol. 3A 4.10.4, Arm ARM D8.13, the RISC-V privileged spec's SFENCE.VMA). With
``bbm`` set (Arm ARM D8.16.1 break-before-make; AArch64 kernels set it to their flush), a change
that replaces a live valid entry by one with another output address, block size or memory type
is made in three steps: the entries go invalid, the listeners hear of it and ``bbm`` is called
(the kernel's TLBI and DSB), and only then does the caller write the new entries.
"""

from __future__ import annotations

import contextlib
import itertools
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from pagewalk.flush import Flush
from pagewalk.space.tables import Tables

_ids = itertools.count(1)


class Announcer:
    """Who hears of one space's changes, and how a change is announced."""

    def __init__(self, owner: object, tables: Tables) -> None:
        #: the space listeners are told about (weak: the space holds this announcer)
        self._owner = weakref.ref(owner)
        self.tables = tables
        #: the identity of the space, which every flush carries
        self.id = next(_ids)
        #: called as ``listener(space, flush)`` after every change
        self.listeners: list[Callable[[Any, Flush], None]] = []
        #: break-before-make (Arm ARM D8.16.1): the flush to call between the break and the
        #: make; None writes straight over live entries
        self.bbm: Callable[[Flush], None] | None = None
        #: the name listeners see while a one-page call (map, protect, unmap) runs a range call
        self.operation: str | None = None

    @contextlib.contextmanager
    def named(self, operation: str) -> Iterator[None]:
        """Announce the range call made inside as ``operation``."""
        self.operation = operation
        try:
            yield
        finally:
            self.operation = None

    def notify(self, flush: Flush) -> Flush:
        """Stamp ``flush`` with this space, tell the listeners, and return it."""
        flush.space_id = self.id
        if self.operation is not None and flush.operation != "break-before-make":
            flush.operation = self.operation  # the one-page call that ran this range call
        owner = self._owner()
        for listener in self.listeners:
            listener(owner, flush)
        return flush

    def brk(self, table: int, i0: int, n: int, va: int, size: int) -> None:
        """The *break* of break-before-make, if :attr:`bbm` is set: make entries ``i0`` to
        ``i0 + n`` of ``table`` (which map ``[va, va + size)``) invalid, announce it, and have
        the TLBs invalidated before the caller writes the new entries."""
        if self.bbm is None:
            return
        self.tables.put(table, i0, np.zeros(n, np.uint64))
        flush = self.notify(Flush("break-before-make", ((va, size),)))
        self.bbm(flush)
