"""A paging mode's walk as plain numbers, for the compiled walker: leaf rules and address fields.

The compiled loop must not know any architecture, so everything it needs is reduced here to
numbers. What the format states as a number is taken as it is: the shape of an entry (the bits
outside ``address_mask``). What it states only as a vectorised helper is read off that helper
with one probe per bit: the leaf test (``np_is_leaf``: which single bits turn a valid entry into
a leaf or a table) and the address (``np_address``: where each raw bit lands). Probing is exact
for helpers of the forms the compiled loop supports, "a leaf iff any (or none) of these bits" and
"an address made of at most two shifted bit fields"; a helper that is not of that form gets no
rules and the caller falls back to numpy. ``tests/test_speed_fast.py`` checks the rules against
the helpers on random entries for every mode. The facts themselves are those of the codecs:
Intel SDM vol. 3A ch. 4 (PS bit, PSE-36 fields), Arm ARM D8.3 (descriptor type bit), RISC-V
privileged spec (R/X make a leaf; PPN at bit 10).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pagewalk.formats.base import BoolArray, Level, PagingMode, U64Array

LEAF_NEVER, LEAF_ALWAYS, LEAF_IF_ANY, LEAF_IF_NONE = 0, 1, 2, 3
MASK64 = (1 << 64) - 1
#: an address as ``(raw mask, left shift)`` pairs (a negative shift is a right shift)
Fields = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class LevelRules:
    """One level as numbers.

    Attributes:
        leaf_rule: one of the ``LEAF_*`` rules; ``leaf_bits`` are the bits it tests.
        shape_mask: ``[table, leaf]``: the raw bits outside the address field (the shape key).
        fields: ``[table, leaf]``: up to two ``(mask, left shift)`` pairs whose OR is the address.
    """

    leaf_rule: int
    leaf_bits: int
    shape_mask: tuple[int, int]
    fields: tuple[Fields, Fields]


def _u64(values: list[int]) -> U64Array:
    return np.array(values, dtype=np.uint64)


def leaf_rule(mode: PagingMode, level: Level) -> tuple[int, int]:
    """``(rule, bits)`` for ``mode.np_is_leaf`` at ``level``: the bits whose setting (alone, in
    a valid entry) changes the verdict, and whether a set bit makes a leaf or a table."""
    probes = _u64([1] + [1 | (1 << b) for b in range(1, 64)])
    verdicts = mode.np_is_leaf(probes, level).tolist()
    base = bool(verdicts[0])
    bits = sum(1 << b for b, f in zip(range(1, 64), verdicts[1:], strict=True) if f != base)
    if not bits:
        return (LEAF_ALWAYS if base else LEAF_NEVER), 0
    return (LEAF_IF_NONE if base else LEAF_IF_ANY), bits


def apply_leaf_rule(rule: int, bits: int, raws: U64Array) -> BoolArray:
    """Which of ``raws`` (valid entries) the rule calls leaves, as the compiled loop does."""
    if rule == LEAF_ALWAYS:
        return np.ones(raws.shape, np.bool_)
    if rule == LEAF_NEVER:
        return np.zeros(raws.shape, np.bool_)
    hit: BoolArray = (raws & np.uint64(bits)) != 0
    return hit if rule == LEAF_IF_ANY else ~hit


def address_fields(mode: PagingMode, level: Level, leaf: bool) -> Fields | None:
    """``np_address`` at ``level`` as at most two ``(mask, left shift)`` fields, or None."""
    outs = mode.np_address(_u64([1 << b for b in range(64)]), level, leaf).tolist()
    by_shift: dict[int, int] = {}
    for b, out in enumerate(outs):
        if not out:
            continue
        if out & (out - 1):
            return None  # one input bit feeds two output bits: not a bit field
        shift = out.bit_length() - 1 - b
        by_shift[shift] = by_shift.get(shift, 0) | (1 << b)
    if len(by_shift) > 2:
        return None
    return tuple((mask, shift) for shift, mask in sorted(by_shift.items()))


def apply_fields(fields: Fields, raws: U64Array) -> U64Array:
    """The addresses ``fields`` make of ``raws``, as the compiled loop computes them."""
    out = np.zeros(raws.shape, np.uint64)
    for mask, shift in fields:
        part = raws & np.uint64(mask)
        out |= part << np.uint64(shift) if shift >= 0 else part >> np.uint64(-shift)
    return out


def level_rules(mode: PagingMode, level: Level) -> LevelRules | None:
    """Everything the compiled walker needs about ``level``, or None if it cannot be reduced."""
    rule, bits = leaf_rule(mode, level)
    table = address_fields(mode, level, False)
    leaf = address_fields(mode, level, True) if level.leaf_size else ((0, 0),)
    if table is None or leaf is None:
        return None
    shape = (
        ~mode.address_mask(level, False) & MASK64,
        ~mode.address_mask(level, True) & MASK64,
    )
    # The compiled loop's memo of the last clean shape needs the valid bit and the leaf rule's
    # bits inside both shape masks, so that equal shapes get equal rule verdicts.
    needed = bits | mode.present_mask
    if any(mask & needed != needed for mask in shape):
        return None
    return LevelRules(rule, bits, shape, (table, leaf))
