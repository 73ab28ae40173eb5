"""Filters that prune an enumeration while it walks, instead of sorting through its output.

A filter says which mappings are wanted: permissions that must be present or absent, a physical
window and a set of page sizes (the VA window is the enumerator's ``va_range``). The enumerator
(:mod:`pagewalk.enumerate`) asks it two questions. Before it reads a table: can anything below
match? (A table's effective permission is an upper bound for every leaf below it, since tables
only take permissions away: Intel SDM vol. 3A §4.6.1, Arm ARM D8.4.2 hierarchical controls,
RISC-V leaves only. And leaves below a table are never larger than its level allows.) Then, for
a table's leaves, which match (one numpy pass over PAs and classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pagewalk.formats.base import Half, Perm, U64Array


@dataclass(frozen=True)
class Filter:
    """What an enumeration keeps.

    Attributes:
        need: permissions every kept mapping has.
        forbid: permissions no kept mapping has.
        pa_range: ``[lo, hi)`` of physical addresses a kept leaf must overlap (``hi`` up to
            2^64), or None.
        sizes: page sizes to keep, or None for all.
    """

    need: Perm = Perm.NONE
    forbid: Perm = Perm.NONE
    pa_range: tuple[int, int] | None = None
    sizes: frozenset[int] | None = None

    @property
    def empty(self) -> bool:
        """Whether the filter keeps everything."""
        return not (self.need or self.forbid or self.pa_range or self.sizes)

    def table_may_match(self, cap: Perm, half: Half, depth: int) -> bool:
        """Whether a table at ``depth`` whose path allows ``cap`` can hold a wanted leaf."""
        if self.need & ~cap:
            return False
        if self.sizes is not None:
            below = {lv.leaf_size for lv in half.levels[depth:] if lv.leaf_size}
            if not below & self.sizes:
                return False
        return True

    def perm_ok(self, perm: Perm) -> bool:
        """Whether a leaf with effective permission ``perm`` is wanted."""
        return not (self.need & ~perm) and not (self.forbid & perm)

    def size_ok(self, size: int) -> bool:
        """Whether leaves of ``size`` bytes are wanted."""
        return self.sizes is None or size in self.sizes

    def pa_mask(self, pas: U64Array, size: int) -> npt.NDArray[np.bool_] | None:
        """Which leaves (at ``pas``, each ``size`` bytes) overlap the PA window; None: all."""
        if self.pa_range is None:
            return None
        lo, hi = self.pa_range
        keep: npt.NDArray[np.bool_] = pas + np.uint64(size) > np.uint64(max(lo, 0))
        if hi < 1 << 64:  # a window up to 2^64 has no upper test (it would not fit a uint64)
            keep &= pas < np.uint64(max(hi, 0))
        return keep
