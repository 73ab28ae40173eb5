"""A paging mode's walk as plain numbers, for the compiled walker: leaf rules and address fields.

The compiled loop must not know any architecture, so everything it needs is reduced here to
numbers taken from the mode's own vectorised codec helpers (``np_is_leaf``, ``np_address``,
``address_mask``), then checked against those helpers on random entries. A mode whose helpers do
not reduce to this form (a leaf test that is not "any of these bits" or "none of these bits", an
address that is not at most two shifted bit fields) gets no rules, and the caller falls back to
numpy. The facts themselves are those of the codecs: Intel SDM vol. 3A ch. 4 (PS bit, PSE-36
fields), Arm ARM D8.3 (descriptor type bit), RISC-V privileged spec (R/X make a leaf; PPN at 10).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from pagewalk.formats.base import Level, PagingMode

LEAF_NEVER, LEAF_ALWAYS, LEAF_IF_ANY, LEAF_IF_NONE = 0, 1, 2, 3
MASK64 = (1 << 64) - 1
_CHECKS = 512


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
    fields: tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]


def _u64(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def _samples(seed: int) -> list[int]:
    rng = random.Random(seed)
    out = [1, MASK64, 0xFFF | 1, (1 << 63) | 1]
    out += [rng.getrandbits(64) | 1 for _ in range(_CHECKS)]
    out += [(1 << rng.randrange(64)) | (1 << rng.randrange(64)) | 1 for _ in range(_CHECKS)]
    return out


def leaf_rule(mode: PagingMode, level: Level) -> tuple[int, int] | None:
    """``(rule, bits)`` equal to ``mode.np_is_leaf`` at ``level`` on valid entries, or None."""
    base = bool(mode.np_is_leaf(_u64([1]), level)[0])
    flips = mode.np_is_leaf(_u64([1 | (1 << b) for b in range(1, 64)]), level)
    bits = sum(1 << b for b, f in zip(range(1, 64), flips.tolist(), strict=True) if f != base)
    if not bits:
        rule = LEAF_ALWAYS if base else LEAF_NEVER
    else:
        rule = LEAF_IF_NONE if base else LEAF_IF_ANY
    samples = _u64(_samples(level.depth))
    got = mode.np_is_leaf(samples, level)
    want = _apply_rule(rule, bits, samples)
    return (rule, bits) if bool(np.array_equal(got, want)) else None


def _apply_rule(rule: int, bits: int, raws: np.ndarray) -> np.ndarray:
    hit: np.ndarray = (raws & np.uint64(bits)) != 0
    if rule == LEAF_ALWAYS:
        return np.ones(raws.shape, np.bool_)
    if rule == LEAF_NEVER:
        return np.zeros(raws.shape, np.bool_)
    return hit if rule == LEAF_IF_ANY else ~hit


def address_fields(
    mode: PagingMode, level: Level, leaf: bool
) -> tuple[tuple[int, int], ...] | None:
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
    fields = tuple((mask, shift) for shift, mask in sorted(by_shift.items()))
    samples = _u64(_samples(100 + level.depth))
    got = mode.np_address(samples, level, leaf)
    want = np.zeros(samples.shape, np.uint64)
    for mask, shift in fields:
        part = samples & np.uint64(mask)
        want |= part << np.uint64(shift) if shift >= 0 else part >> np.uint64(-shift)
    return fields if bool(np.array_equal(got, want)) else None


def level_rules(mode: PagingMode, level: Level) -> LevelRules | None:
    """Everything the compiled walker needs about ``level``, or None if it cannot be reduced."""
    rule = leaf_rule(mode, level)
    table = address_fields(mode, level, False)
    leaf = address_fields(mode, level, True) if level.leaf_size else ((0, 0),)
    if rule is None or table is None or leaf is None:
        return None
    shape = (
        ~mode.address_mask(level, False) & MASK64,
        ~mode.address_mask(level, True) & MASK64,
    )
    # The compiled loop's memo of the last clean shape needs the valid bit and the leaf rule's
    # bits inside both shape masks, so that equal shapes get equal rule verdicts.
    needed = rule[1] | 1
    if any(mask & needed != needed for mask in shape):
        return None
    return LevelRules(rule[0], rule[1], shape, (table, leaf))
