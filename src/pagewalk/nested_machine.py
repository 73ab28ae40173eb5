"""A guest seen through its hypervisor's stage-2 tables: walk, translate and list guest VA -> PA.

:class:`NestedMachine` joins a guest's stage-1 regime (its paging mode and roots, which are
guest-physical) with a :class:`~pagewalk.nested.Stage2` in the host's memory, and answers with
the two-stage walk of :mod:`pagewalk.nested` (Intel SDM vol. 3C §29.3, AMD APM vol. 2 §15.25,
Arm ARM D8 stage 2, the RISC-V hypervisor chapter). :meth:`NestedMachine.maps` is ``maps
--nested``: the guest's own mappings (enumerated over guest-physical memory, each table read
translated through stage 2) split where the stage-2 mappings of their guest-physical range
split, each piece with the intersection of both stages' permissions.
:func:`stage2_space` makes an :class:`~pagewalk.space.AddressSpace` for stage-2 tables whose
root is larger than a page (Arm's concatenated tables, RISC-V's 16-KiB x4 root).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pagewalk.alloc.base import FrameAllocator
from pagewalk.enumerate import mappings
from pagewalk.enumerate_runs import EnumStats
from pagewalk.errors import ConfigError, hx
from pagewalk.formats.base import MemType, PagingMode, Perm
from pagewalk.memory.physical import PhysicalMemory
from pagewalk.memory.protocols import TableReader
from pagewalk.nested import GuestPhysical, NestedWalk, Stage2, nested_walk
from pagewalk.nested_faults import REGIMES
from pagewalk.space import AddressSpace

_RWX = Perm.READ | Perm.WRITE | Perm.EXEC


@dataclass(frozen=True, slots=True)
class NestedMapping:
    """A run of guest VAs that reaches host PAs through both stages.

    Attributes:
        va: first guest VA; size: bytes; gpa: first guest-physical address; pa: first host PA.
        page_size: the smaller of the two stages' pages.
        perm: stage 1 ∩ stage 2 (READ, WRITE, EXEC as both allow; USER, GLOBAL from stage 1).
        memtype: stage 1's memory type; s2_memtype: stage 2's.
    """

    va: int
    size: int
    gpa: int
    pa: int
    page_size: int
    perm: Perm
    memtype: MemType | str | None
    s2_memtype: MemType | str | None

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``maps --nested`` prints."""

        def name(m: MemType | str | None) -> str | None:
            return m.value if isinstance(m, MemType) else m

        return {
            "va": self.va, "size": self.size, "gpa": self.gpa, "pa": self.pa,
            "page_size": self.page_size, "readable": bool(self.perm & Perm.READ),
            "writable": bool(self.perm & Perm.WRITE), "executable": bool(self.perm & Perm.EXEC),
            "user": bool(self.perm & Perm.USER), "memtype": name(self.memtype),
            "s2_memtype": name(self.s2_memtype),
        }  # fmt: skip


class NestedMachine:
    """A guest's stage 1 over a stage 2 in host memory.

    Args:
        host: the host's physical memory (where both stages' tables and the data are).
        mode: the guest's paging mode; roots: its root tables' guest-physical addresses.
        s2: the stage-2 tables.
    """

    def __init__(
        self, host: TableReader, mode: PagingMode, roots: Sequence[int], s2: Stage2
    ) -> None:
        if s2.regime not in REGIMES:
            raise ConfigError(f"unknown stage-2 regime {s2.regime!r}")
        self.host, self.mode, self.roots, self.s2 = host, mode, tuple(roots), s2

    def describe(self) -> str:
        """One line naming both stages."""
        pairs = zip(self.mode.root_names, self.roots, strict=False)
        names = ", ".join(f"{n}={hx(r)}" for n, r in pairs)
        return f"{self.mode.describe()} ({names}, guest-physical) over {self.s2.register}"

    def walk(self, va: int, access: str = "read", user: bool = False) -> NestedWalk:
        """The two-stage walk of ``va`` for ``access`` (``read``, ``write``, ``exec``)."""
        if access not in ("read", "write", "exec"):
            raise ConfigError(f"access {access!r} is not read, write or exec")
        return nested_walk(self.host, self.mode, self.roots, self.s2, va, access, user)

    def translate(self, va: int) -> tuple[int | None, int | None, NestedWalk]:
        """``(host PA, page size, walk)`` of a privileged read of ``va``."""
        w = self.walk(va)
        return w.pa, w.page_size, w

    def maps(
        self, va_range: tuple[int, int] | None = None, stats: EnumStats | None = None
    ) -> Iterator[NestedMapping]:
        """Every guest VA that reaches host memory, merged into runs, in VA order.

        Stage-1 tables whose guest-physical pages stage 2 does not map (or lets no one read)
        count as outside RAM: their entries are not listed, and ``stats`` says so.
        """
        regime = REGIMES[self.s2.regime]
        table_write = regime.table_write(self.s2.mode.facts.table_accessed)
        gmem = GuestPhysical(self.host, self.s2, "write" if table_write else "read", True)
        pending: NestedMapping | None = None
        for run in mappings(gmem, self.mode, self.roots, va_range=va_range, stats=stats):
            for piece in self._split(run.va, run.pa, run.size, run.page_size, run.perm,
                                     run.memtype):  # fmt: skip
                if pending is not None and _continues(pending, piece):
                    pending = NestedMapping(pending.va, pending.size + piece.size, pending.gpa,
                        pending.pa, pending.page_size, pending.perm, pending.memtype,
                        pending.s2_memtype)  # fmt: skip
                    continue
                if pending is not None:
                    yield pending
                pending = piece
        if pending is not None:
            yield pending

    def _split(
        self, va: int, gpa: int, size: int, s1_page: int, perm: Perm, memtype: MemType | str | None
    ) -> Iterator[NestedMapping]:
        s2 = self.s2
        for m in mappings(self.host, s2.mode, s2.roots, va_range=(gpa, gpa + size)):
            lo, hi = max(m.va, gpa), min(m.end, gpa + size)
            both = (perm & ~_RWX) | (perm & m.perm & _RWX)
            if not REGIMES[s2.regime].all_user or m.perm & Perm.USER:
                page = min(s1_page, m.page_size)
                yield NestedMapping(
                    va + lo - gpa, hi - lo, lo, m.pa + lo - m.va, page, both, memtype, m.memtype
                )


def _continues(a: NestedMapping, b: NestedMapping) -> bool:
    return (
        b.va == a.va + a.size and b.pa == a.pa + a.size and b.gpa == a.gpa + a.size
        and (b.page_size, b.perm, b.memtype, b.s2_memtype)
        == (a.page_size, a.perm, a.memtype, a.s2_memtype)
    )  # fmt: skip


def stage2_space(mode: PagingMode, mem: PhysicalMemory, frames: FrameAllocator) -> AddressSpace:
    """An :class:`AddressSpace` for stage-2 tables, its root sized and aligned as the format
    needs (up to 16 concatenated Arm tables, the 16-KiB RISC-V x4 root), then adopted."""
    half = mode.halves[0]
    size = max(mode.entry_size << half.levels[0].bits, 4096)
    root = frames.allocate(-(-size // 4096), max(half.table_align, 4096))
    mem.write(root, bytes(size))
    return AddressSpace(mode, mem, frames, roots=[root])
