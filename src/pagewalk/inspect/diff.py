"""Diff two address spaces: ranges added, removed and changed, with permission changes named.

Both sides are merged mapping lists in VA order (two roots of one dump, or two dumps). One sweep
over the union of their boundaries compares, for each piece of VA, whether it is mapped on each
side and with which effective permission, memory type and physical address (Intel SDM vol. 3A
§4.6 for what a permission is; Arm ARM D8.4; RISC-V privileged spec). Neighbouring pieces with
the same verdict are merged, so a KPTI user table against its kernel table reads as a few lines.
The sweep streams: it holds one range of each side and one pending change, so two enumerations
of any size are compared in constant memory (:func:`iter_diff`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from pagewalk.enumerate_runs import Mapping
from pagewalk.formats.base import Perm


@dataclass(frozen=True)
class Change:
    """One differing range.

    Attributes:
        kind: ``added`` (only in B), ``removed`` (only in A) or ``changed``.
        va: first VA.
        size: bytes.
        perm_a: A's permission (None when not mapped in A).
        perm_b: B's permission (None when not mapped in B).
        what: for ``changed``: which of ``perm``, ``pa``, ``memtype``, ``page_size`` differ.
        pa_a: A's PA at ``va``, or None.
        pa_b: B's PA at ``va``, or None.
    """

    kind: str
    va: int
    size: int
    perm_a: Perm | None
    perm_b: Perm | None
    what: tuple[str, ...]
    pa_a: int | None
    pa_b: int | None

    @property
    def perm_change(self) -> str:
        """``rw-k- -> r--k-`` when the permission differs, else empty."""
        if self.perm_a is None or self.perm_b is None or self.perm_a == self.perm_b:
            return ""
        return f"{self.perm_a.letters()} -> {self.perm_b.letters()}"

    def to_json(self) -> dict[str, Any]:
        """The change as JSON."""
        return {
            "kind": self.kind,
            "va": self.va,
            "size": self.size,
            "perm_a": None if self.perm_a is None else self.perm_a.letters(),
            "perm_b": None if self.perm_b is None else self.perm_b.letters(),
            "what": list(self.what),
            "pa_a": self.pa_a,
            "pa_b": self.pa_b,
        }


def diff(a: Iterable[Mapping], b: Iterable[Mapping]) -> list[Change]:
    """The differences from ``a`` to ``b`` (each sorted by VA, as enumeration yields them)."""
    return list(iter_diff(a, b))


def iter_diff(a: Iterable[Mapping], b: Iterable[Mapping]) -> Iterator[Change]:
    """:func:`diff` as a stream: one range of each side is held at a time."""
    ia, ib = iter(a), iter(b)
    ma, mb = next(ia, None), next(ib, None)
    pos = 0
    pending: Change | None = None
    while ma is not None or mb is not None:
        if ma is not None and ma.end <= pos:
            ma = next(ia, None)
            continue
        if mb is not None and mb.end <= pos:
            mb = next(ib, None)
            continue
        lo = max(pos, min(m.va for m in (ma, mb) if m is not None))
        hi = min(x for m in (ma, mb) if m is not None for x in (m.va, m.end) if x > lo)
        in_a = ma if ma is not None and ma.va <= lo else None
        in_b = mb if mb is not None and mb.va <= lo else None
        change = _piece(lo, hi, in_a, in_b)
        if change is not None:
            merged = _merge(pending, change)
            if merged is None:
                if pending is not None:
                    yield pending
                pending = change
            else:
                pending = merged
        pos = hi
    if pending is not None:
        yield pending


def _piece(lo: int, hi: int, ma: Mapping | None, mb: Mapping | None) -> Change | None:
    if ma is None and mb is None:
        return None
    pa_a = None if ma is None else ma.pa + (lo - ma.va)
    pa_b = None if mb is None else mb.pa + (lo - mb.va)
    perm_a = None if ma is None else ma.perm
    perm_b = None if mb is None else mb.perm
    if ma is None or mb is None:
        kind = "added" if ma is None else "removed"
        return Change(kind, lo, hi - lo, perm_a, perm_b, (), pa_a, pa_b)
    what = tuple(
        name
        for name, differs in (
            ("perm", ma.perm != mb.perm),
            ("pa", pa_a != pa_b),
            ("memtype", ma.memtype != mb.memtype),
            ("page_size", ma.page_size != mb.page_size),
        )
        if differs
    )
    if not what:
        return None
    return Change("changed", lo, hi - lo, perm_a, perm_b, what, pa_a, pa_b)


def _merge(last: Change | None, c: Change) -> Change | None:
    """``last`` grown by ``c`` when ``c`` continues it with the same verdict, else None."""
    if last is None:
        return None
    same = (
        last.va + last.size == c.va
        and (last.kind, last.perm_a, last.perm_b, last.what) == (c.kind, c.perm_a, c.perm_b, c.what)
        and _continues(last.pa_a, last.size, c.pa_a)
        and _continues(last.pa_b, last.size, c.pa_b)
    )
    return replace(last, size=last.size + c.size) if same else None


def _continues(pa: int | None, size: int, nxt: int | None) -> bool:
    return (pa is None and nxt is None) or (pa is not None and nxt is not None)


class Tally:
    """Running totals of a stream of changes (what :func:`summary` returns)."""

    def __init__(self) -> None:
        self.count = 0
        self.totals = {"added": 0, "removed": 0, "changed": 0, "perm_changes": 0}

    def add(self, c: Change) -> Change:
        """Count ``c`` and hand it back."""
        self.count += 1
        self.totals[c.kind] += c.size
        self.totals["perm_changes"] += bool(c.perm_change)
        return c


def summary(changes: Iterable[Change]) -> dict[str, int]:
    """Bytes added, removed, changed, and how many changes alter permissions."""
    tally = Tally()
    for c in changes:
        tally.add(c)
    return tally.totals
