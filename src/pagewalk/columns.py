"""Mapping runs as columns: one numpy array per field, so millions of runs cost bytes, not objects.

The enumerator (:mod:`pagewalk.enumerate`) reads whole tables as arrays; keeping its results as
arrays lets filters, merging, statistics and the writers (JSON, CSV, QEMU's ``info mem`` /
``info tlb``, the table view) work in bulk. A :class:`Mapping` per run is built only when asked
(:meth:`RunColumns.rows`), for library users who want objects. The fields are those of a merged
run of translations as Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec define
a leaf: output address, page size, the effective permission folded over every level, the memory
type and (optionally) the leaf's raw attribute bits.

Runs merge (:meth:`RunColumns.merged`, :func:`merged_batches`) by the rule of
:meth:`Mapping.continues`: contiguous in VA and in PA, with equal page size, permission, memory
type and attribute bits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pagewalk.enumerate_runs import Mapping
from pagewalk.formats.base import MemType
from pagewalk.formats.model import PERMS

U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
#: runs per batch of :func:`merged_batches` (a part larger than the rest of a batch is kept whole)
BATCH = 1 << 16


@dataclass(frozen=True)
class RunColumns:
    """A batch of merged runs, VA-ordered, as parallel arrays (all of one length).

    Attributes:
        va, size, pa, page_size: the run's first VA (canonical), bytes, first PA, leaf size.
        perm: the :class:`~pagewalk.formats.base.Perm` bits of each run.
        memtype: an index into ``memtypes`` per run.
        memtypes: the distinct memory types of this batch (``MemType``, a text such as
            ``PAT3=0x2``, or None where the format cannot tell); no two are equal.
        attrs: the leaves' raw bits outside the address field, or None when not asked for.
    """

    va: U64
    size: U64
    pa: U64
    page_size: U64
    perm: U8
    memtype: U8
    memtypes: tuple[MemType | str | None, ...]
    attrs: U64 | None = None

    def __len__(self) -> int:
        return int(self.va.shape[0])

    @property
    def end(self) -> U64:
        """One past each run's last VA (wraps to 0 for a run ending at 2**64)."""
        return self.va + self.size

    def take(
        self, index: npt.NDArray[np.bool_] | npt.NDArray[np.intp] | list[int] | slice
    ) -> RunColumns:
        """The runs selected by a boolean mask, an index array or a slice, same memtype table."""
        return RunColumns(
            self.va[index], self.size[index], self.pa[index], self.page_size[index],
            self.perm[index], self.memtype[index], self.memtypes,
            None if self.attrs is None else self.attrs[index],
        )  # fmt: skip

    def rows(self) -> Iterator[Mapping]:
        """One :class:`Mapping` per run, built as it is consumed."""
        types = self.memtypes
        attrs = self.attrs.tolist() if self.attrs is not None else None
        columns = zip(
            self.va.tolist(),
            self.size.tolist(),
            self.pa.tolist(),
            self.page_size.tolist(),
            self.perm.tolist(),
            self.memtype.tolist(),
            strict=True,
        )
        if attrs is None:
            for va, size, pa, page, perm, mt in columns:
                yield Mapping(va, size, pa, page, PERMS[perm], types[mt], None)
            return
        for (va, size, pa, page, perm, mt), attr in zip(columns, attrs, strict=True):
            yield Mapping(va, size, pa, page, PERMS[perm], types[mt], attr)

    def breaks(self) -> npt.NDArray[np.bool_]:
        """For each run but the first: whether it does not continue the run before it."""
        before = slice(0, -1)
        after = slice(1, None)
        out: npt.NDArray[np.bool_] = (
            (self.va[after] != self.va[before] + self.size[before])
            | (self.pa[after] != self.pa[before] + self.size[before])
            | (self.page_size[after] != self.page_size[before])
            | (self.perm[after] != self.perm[before])
            | (self.memtype[after] != self.memtype[before])
        )
        if self.attrs is not None:
            out |= self.attrs[after] != self.attrs[before]
        return out

    def merged(self) -> RunColumns:
        """Neighbouring runs that continue one another joined (:meth:`Mapping.continues`)."""
        if len(self) < 2:
            return self
        starts = np.flatnonzero(self.breaks()) + 1
        if starts.size == len(self) - 1:
            return self
        starts = np.concatenate((np.zeros(1, dtype=starts.dtype), starts))
        out = self.take(starts)
        size: U64 = np.add.reduceat(self.size, starts)
        return RunColumns(
            out.va, size, out.pa, out.page_size, out.perm, out.memtype, out.memtypes, out.attrs
        )

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping], *, with_attrs: bool = False) -> RunColumns:
        """Columns of ``rows`` (the slow direction; for tests and small inputs)."""
        items = list(rows)
        types: dict[MemType | str | None, int] = {}
        for m in items:
            types.setdefault(m.memtype, len(types))
        return cls(
            np.array([m.va for m in items], dtype=np.uint64),
            np.array([m.size for m in items], dtype=np.uint64),
            np.array([m.pa for m in items], dtype=np.uint64),
            np.array([m.page_size for m in items], dtype=np.uint64),
            np.array([int(m.perm) for m in items], dtype=np.uint8),
            np.array([types[m.memtype] for m in items], dtype=np.uint8),
            tuple(types),
            np.array([m.attrs or 0 for m in items], dtype=np.uint64) if with_attrs else None,
        )

    @classmethod
    def empty(cls, *, with_attrs: bool = False) -> RunColumns:
        """No runs."""
        z = np.zeros(0, dtype=np.uint64)
        u8 = np.zeros(0, np.uint8)
        return cls(z, z, z, z, u8, u8, (), z if with_attrs else None)


def concat(batches: Sequence[RunColumns]) -> RunColumns:
    """One batch holding ``batches`` in order (memtype tables merged).

    Batches whose tables all extend one another (as an enumeration's do: its table only grows)
    keep their indices; others are renumbered.
    """
    if not batches:
        return RunColumns.empty()
    if len(batches) == 1:
        return batches[0]
    types = max((b.memtypes for b in batches), key=len)
    if all(b.memtypes == types[: len(b.memtypes)] for b in batches):
        memtype = np.concatenate([b.memtype for b in batches])
    else:
        table: dict[MemType | str | None, int] = {}
        remapped = []
        for b in batches:
            lut = np.array([table.setdefault(t, len(table)) for t in b.memtypes] or [0], np.uint8)
            remapped.append(lut[b.memtype])
        memtype, types = np.concatenate(remapped), tuple(table)
    with_attrs = all(b.attrs is not None for b in batches)
    return RunColumns(
        np.concatenate([b.va for b in batches]),
        np.concatenate([b.size for b in batches]),
        np.concatenate([b.pa for b in batches]),
        np.concatenate([b.page_size for b in batches]),
        np.concatenate([b.perm for b in batches]),
        memtype,
        types,
        np.concatenate([b.attrs for b in batches if b.attrs is not None]) if with_attrs else None,
    )


def merged_batches(parts: Iterable[RunColumns], size: int = BATCH) -> Iterator[RunColumns]:
    """VA-ordered ``parts`` as batches of about ``size`` runs, runs merged across parts.

    The last run of a batch may continue in the next part, so it is held back (carried into the
    next batch) until a run that does not continue it arrives or the parts end. If ``parts``
    raises, the runs already closed are yielded first and the open one is dropped, unfinished.
    """
    held: list[RunColumns] = []
    n = 0
    try:
        for part in parts:
            if not len(part):
                continue
            held.append(part)
            n += len(part)
            if n >= size:
                runs = concat(held).merged()
                last = len(runs) - 1
                held, n = [runs.take([last])], 1
                if last:
                    yield runs.take(slice(0, last))
    except Exception:
        runs = concat(held).merged()
        if len(runs) > 1:
            yield runs.take(slice(0, len(runs) - 1))
        raise
    if held:
        yield concat(held).merged()
