"""Flush values: what a TLB must forget after a change to the page tables.

Every change an :class:`~pagewalk.space.AddressSpace` makes returns a :class:`Flush` naming the
VA ranges whose cached translations (and paging-structure cache entries) are now stale, in the
spirit of Intel SDM vol. 3A §4.10.4 ("Invalidation of TLBs and Paging-Structure Caches"), Arm
ARM D8.13 (TLB maintenance) and the RISC-V privileged spec's SFENCE.VMA rules. The caller applies
it to a TLB or ignores it explicitly; under :func:`strict_flushes` a flush that is dropped unused
is recorded, so tests can fail on a forgotten flush.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from pagewalk.errors import hx

_strict = False
#: descriptions of flushes dropped unused while strict mode was on
UNUSED: list[str] = []


class FlushTarget(Protocol):
    """Anything a flush can be applied to (a TLB model)."""

    def apply_flush(self, flush: Flush) -> None: ...


@dataclass(eq=False)
class Flush:
    """The VA ranges a TLB must forget after one change.

    Attributes:
        operation: what changed (``map``, ``unmap_range``, ``protect``...), for reports.
        ranges: ``(va, size)`` pairs to invalidate.
        everything: invalidate the whole address space (``destroy``, root-level changes).
        new_only: every changed entry was invalid before, so a TLB that never caches invalid
            entries (x86, Arm) holds nothing stale; RISC-V may still need it.
        tables_freed: table frames were freed, so paging-structure caches must go too.
        space_id: the identity of the address space the change was made in.
        unmapped: ``(va, pa, size)`` runs that were unmapped, so callers can free frames.
    """

    operation: str
    ranges: tuple[tuple[int, int], ...] = ()
    everything: bool = False
    new_only: bool = False
    tables_freed: bool = False
    space_id: int = 0
    unmapped: list[tuple[int, int, int]] = field(default_factory=list)
    _used: bool = field(default=False, repr=False)

    @classmethod
    def none(cls, operation: str = "none") -> Flush:
        """A flush with nothing to forget (already marked used)."""
        flush = cls(operation)
        flush._used = True
        return flush

    @property
    def empty(self) -> bool:
        """Whether there is nothing to invalidate."""
        return not self.ranges and not self.everything

    def apply(self, target: FlushTarget) -> None:
        """Invalidate this flush's ranges in ``target``."""
        self._used = True
        target.apply_flush(self)

    def ignore(self) -> None:
        """Say on purpose that no TLB needs this flush."""
        self._used = True

    def covers(self, va: int) -> bool:
        """Whether ``va`` is in one of the ranges (or everything is flushed)."""
        return self.everything or any(start <= va < start + size for start, size in self.ranges)

    def __or__(self, other: Flush) -> Flush:
        self._used = other._used = True
        return Flush(
            f"{self.operation}+{other.operation}"
            if self.operation != other.operation
            else self.operation,
            self.ranges + other.ranges,
            self.everything or other.everything,
            self.new_only and other.new_only,
            self.tables_freed or other.tables_freed,
            self.space_id,
            self.unmapped + other.unmapped,
        )

    def describe(self) -> str:
        """One line for reports."""
        if self.everything:
            return f"{self.operation}: flush everything"
        spans = ", ".join(f"{hx(va)}+{hx(size)}" for va, size in self.ranges[:4])
        more = f" (+{len(self.ranges) - 4} more)" if len(self.ranges) > 4 else ""
        return f"{self.operation}: flush {spans}{more}"

    def __del__(self) -> None:
        if _strict and not self._used and not self.empty:
            UNUSED.append(self.describe())

    def to_json(self) -> dict[str, Any]:
        """The flush as data."""
        return {
            "operation": self.operation,
            "ranges": [[va, size] for va, size in self.ranges],
            "everything": self.everything,
            "new_only": self.new_only,
        }


@contextmanager
def strict_flushes() -> Iterator[list[str]]:
    """Record flushes dropped unused while the block runs; yields the list of them."""
    global _strict
    previous = _strict
    _strict = True
    start = len(UNUSED)
    found: list[str] = []
    try:
        yield found
    finally:
        import gc

        gc.collect()
        found.extend(UNUSED[start:])
        del UNUSED[start:]
        _strict = previous
