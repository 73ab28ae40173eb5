"""The shape cache of the compiled walker: per mode and level, a hash table of entry verdicts.

An entry's *shape* is its raw value with the address bits cleared; everything that decides a
fault or a leaf lies outside the address (Intel SDM vol. 3A ch. 4, Arm ARM D8.3, RISC-V
privileged spec), so one decoding per shape, by the scalar codec, serves every entry of that
shape. :class:`ShapeTable` lays the verdicts out as ``_walk.c`` reads them; :class:`ModePlan`
holds a mode's numbers (:mod:`pagewalk.fast._rules`) and its tables, shared by every walker of
the mode (several Translators, one per address space, live at once): a table that grows gets new
arrays, and old arrays are never freed while C may still read them.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pagewalk.fast._native import MAX_LEVELS
from pagewalk.fast._rules import MASK64, LevelRules, level_rules
from pagewalk.formats.base import Level, PagingMode, U64Array

_GOLDEN = 0x9E3779B97F4A7C15


class ShapeTable:
    """An open-addressing hash table of entry shapes, laid out as ``_walk.c`` reads it.

    ``vals[h]`` is 0 for an empty slot, else ``0x80 | fault_code << 1 | leaf``. Growing
    reallocates the arrays; the old ones are kept in ``retired`` (never freed), because every
    walker of the mode points into them and another walker may be reading them right now.
    """

    def __init__(self, log_cap: int = 5) -> None:
        self._allocate(log_cap)
        self.count = 0
        self.retired: list[tuple[U64Array, npt.NDArray[np.uint8]]] = []

    def _allocate(self, log_cap: int) -> None:
        self.log_cap = log_cap
        self.keys: U64Array = np.zeros(1 << log_cap, dtype=np.uint64)
        self.vals: npt.NDArray[np.uint8] = np.zeros(1 << log_cap, dtype=np.uint8)

    def _slot(self, key: int) -> int:
        mask = (1 << self.log_cap) - 1
        h = ((key * _GOLDEN) & MASK64) >> (64 - self.log_cap)
        while self.vals[h] and int(self.keys[h]) != key:
            h = (h + 1) & mask
        return h

    def get(self, key: int) -> int | None:
        """The stored value for ``key``, or None."""
        h = self._slot(key)
        return int(self.vals[h]) if self.vals[h] else None

    def insert(self, key: int, val: int) -> bool:
        """Store ``key`` (True if it was new); the table doubles at half load."""
        h = self._slot(key)
        if self.vals[h]:
            return False
        if 2 * (self.count + 1) > len(self.vals):
            old = [(int(k), int(v)) for k, v in zip(self.keys, self.vals, strict=True) if v]
            self.retired.append((self.keys, self.vals))
            self._allocate(self.log_cap + 1)
            self.count = 0
            for k, v in old:
                self.insert(k, v)
            h = self._slot(key)
        self.keys[h], self.vals[h] = key, val
        self.count += 1
        return True


@dataclass
class ModePlan:
    """A mode reduced to numbers, with its shape tables (shared by every walker of the mode).

    ``generation`` counts the times a table grew (and so moved): a walker whose pointers are
    older points its levels at the current arrays before it calls into C. ``lock`` serialises
    learning, so two threads cannot interleave inserts into one table.
    """

    rules: dict[Level, LevelRules]
    shapes: dict[Level, ShapeTable] = field(default_factory=dict)
    generation: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


_PLANS: weakref.WeakKeyDictionary[PagingMode, ModePlan | None] = weakref.WeakKeyDictionary()


def plan_for(mode: PagingMode) -> ModePlan | None:
    """The mode's plan (cached per mode object), or None if it cannot be reduced."""
    if mode in _PLANS:
        return _PLANS[mode]
    rules: dict[Level, LevelRules] = {}
    plan: ModePlan | None = ModePlan(rules)
    if len(mode.halves) > 2 or mode.entry_size not in (4, 8):
        plan = None
    for half in mode.halves:
        if len(half.levels) > MAX_LEVELS:
            plan = None
        for level in half.levels:
            found = level_rules(mode, level)
            if found is None:
                plan = None
            else:
                rules[level] = found
    if plan is not None:
        plan.shapes = {level: ShapeTable() for level in rules}
    _PLANS[mode] = plan
    return plan
