"""The walk data a report embeds: every table the enumeration reads, with each entry decoded here.

The browser cannot run Python, and must not learn any architecture, so everything a walk needs
is reduced in Python to pointers and verdicts. Each distinct table (the visitor of
:mod:`pagewalk.inspect.tables`, each (table, level) once) is stored as its non-zero entries:
index, raw value, and the address the codec reads from it (the next table's PA for a pointer, the
output PA for a leaf, :meth:`PagingMode.np_address`). Every entry refers to a *shape* record (its
raw bits outside the address field, decoded once by the scalar codec, as the batch and compiled
walkers do): invalid, pointer or leaf, the fault it raises and why, the leaf size, its fields by
the manual's names, and, for each of the 16 values of what the pointers above passed down
(:data:`pagewalk.formats.model.Acc`), what it passes on and the permission so far
(:meth:`~PagingMode.fold_table`, :meth:`~PagingMode.leaf_state`, :meth:`~PagingMode.table_perm`:
the one permission model). The page then follows these pointers level by level exactly as
:func:`pagewalk.walk.descend` reads, decodes and folds (Intel SDM vol. 3A §4.3-4.6, Arm ARM
D8.2-D8.4, the RISC-V privileged spec's "Virtual Address Translation Process").

The number of entries embedded is capped; a walk that reaches a table left out says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pagewalk.enumerate_runs import TableReader
from pagewalk.formats.base import Acc, EntryKind, Half, Level, PagingMode, Perm, U64Array
from pagewalk.inspect.tables import Tables, Visit

#: every value of what pointers pass down, as a 4-bit number (bit i is ``acc[i]``)
ACCS: tuple[Acc, ...] = tuple(
    (bool(n & 1), bool(n & 2), bool(n & 4), bool(n & 8)) for n in range(16)
)
_KIND = {EntryKind.INVALID: "i", EntryKind.TABLE: "t", EntryKind.LEAF: "l"}


def acc_number(acc: Acc) -> int:
    """``acc`` as the 4-bit number the page uses."""
    return sum(1 << i for i, bit in enumerate(acc) if bit)


@dataclass
class WalkData:
    """The tables and shapes of one address space, ready to embed.

    Attributes:
        arrays: ``t_pa``, ``t_depth``, ``t_root``, ``t_off``, ``t_n``, ``t_refs`` (entries
            pointing to it) per table;
            ``e_idx``, ``e_raw``, ``e_addr``, ``e_shape`` per stored (non-zero) entry.
        shapes: one JSON record per shape (see :func:`_shape_record`).
        zero_shape: per root register, per depth: the shape of an all-zero entry.
        partial: per table index: runs ``[first, end)`` of entry indices outside RAM.
        outside: table PAs a pointer names that lie wholly outside RAM.
        capped: whether tables were left out (``max_entries``).
        tables, entries: how many were embedded.
    """

    arrays: dict[str, np.ndarray[Any, Any]]
    shapes: list[dict[str, Any]]
    zero_shape: list[list[int]]
    partial: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    outside: list[int] = field(default_factory=list)
    capped: bool = False
    tables: int = 0
    entries: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Shapes:
    """The shape records, numbered as they are first met."""

    mode: PagingMode
    ids: dict[tuple[int, int, bool, int], int] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    def get(self, half: Half, depth: int, leaf: bool, shape: int, rep: int) -> int:
        """The id of a shape (``rep``: one raw entry of it, decoded for the record)."""
        key = (half.root, depth, leaf, shape)
        got = self.ids.get(key)
        if got is None:
            got = self.ids[key] = len(self.records)
            self.records.append(_shape_record(self.mode, half, half.levels[depth], shape, rep))
        return got


def _shape_record(
    mode: PagingMode, half: Half, level: Level, shape: int, rep: int
) -> dict[str, Any]:
    """One shape, decoded from ``rep`` (a raw entry of that shape) by the codec.

    ``k``: ``i``/``t``/``l``; ``f``/``r``: fault kind and reason (or None); ``s``: leaf size;
    ``d``: the fields that do not depend on the address; ``m``: memory type; ``n``/``p``: per
    incoming ``acc`` number, the ``acc`` passed on and the permission so far (as
    :func:`pagewalk.walk.descend` records a step's).
    """
    entry = mode.decode(rep, level)
    fields = ""
    if rep & 1:
        bare = {f.name: f for f in mode.fields(shape, level)}
        shown = [str(f) for f in mode.fields(rep, level) if bare.get(f.name) == f]
        fields = " ".join(s for s in shown if s)
    nxt: list[int] = []
    perm: list[int] = []
    for acc in ACCS:
        out = acc
        if entry.kind is EntryKind.TABLE and entry.fault is None:
            out = mode.fold_table(half, level, rep, acc)
        nxt.append(acc_number(out))
        if entry.kind is EntryKind.INVALID:
            perm.append(int(Perm.NONE))
        elif entry.kind is EntryKind.LEAF:
            state = mode.leaf_state(rep, out)
            perm.append(int(state.rights.perm(state.global_)))
        else:
            perm.append(int(mode.table_perm(out)))
    memtype = entry.memtype
    return {
        "k": _KIND[entry.kind], "f": entry.fault, "r": entry.reason, "s": entry.size,
        "d": fields or ("(invalid)" if not rep & 1 else ""),
        "m": None if memtype is None else getattr(memtype, "value", str(memtype)),
        "n": nxt, "p": perm,
    }  # fmt: skip


def _classify(mode: PagingMode, level: Level, raws: U64Array) -> tuple[U64Array, U64Array, Any]:
    """Per raw entry: its shape, its address (0 when invalid) and whether it is a leaf."""
    valid = (raws & np.uint64(1)) != 0
    leaf = np.zeros(raws.shape, np.bool_)
    leaf[valid] = mode.np_is_leaf(raws[valid], level)
    addr = np.zeros(raws.shape, np.uint64)
    shape = raws.copy()
    for flag in (False, True):
        pick = valid & (leaf == flag)
        if pick.any():
            addr[pick] = mode.np_address(raws[pick], level, flag)
            shape[pick] = raws[pick] & np.uint64(~mode.address_mask(level, flag) & (2**64 - 1))
    bad = ~valid
    if bad.any():
        shape[bad] = raws[bad] & np.uint64(~mode.address_mask(level, False) & (2**64 - 1))
    return shape, addr, leaf


def walk_data(
    mem: TableReader, mode: PagingMode, roots: Sequence[int], *, max_entries: int = 1 << 21
) -> WalkData:
    """Every table reachable from ``roots``, each entry decoded, up to ``max_entries`` entries.

    Tables are taken in the visitor's order (depth first from each root), so a cap keeps the
    upper levels and the first subtrees whole.
    """
    shapes = _Shapes(mode)
    visitor = Tables(mem, mode, roots)
    cols: dict[str, list[Any]] = {k: [] for k in ("t_pa", "t_depth", "t_root", "t_off", "t_n")}
    ents: dict[str, list[Any]] = {k: [] for k in ("e_idx", "e_raw", "e_addr", "e_shape")}
    total, capped = 0, False
    visits: list[Visit] = []
    for visit in visitor.visit():
        raws = visit.raws
        nz = np.flatnonzero(raws)
        if total + len(nz) > max_entries:
            capped = True
            continue
        visits.append(visit)
        level = visit.level
        sub = raws[nz]
        shape, addr, leaf = _classify(mode, level, sub)
        ids = np.zeros(len(nz), np.uint32)
        for flag in (False, True):
            pick = np.flatnonzero(leaf == flag)
            if not len(pick):
                continue
            _, first, inverse = np.unique(shape[pick], return_index=True, return_inverse=True)
            found = [
                shapes.get(visit.half, visit.depth, flag, int(shape[pick[i]]), int(sub[pick[i]]))
                for i in first.tolist()
            ]
            ids[pick] = np.array(found, np.uint32)[inverse.reshape(-1)]
        cols["t_pa"].append(visit.pa)
        cols["t_depth"].append(visit.depth)
        cols["t_root"].append(visit.half.root)
        cols["t_off"].append(total)
        cols["t_n"].append(len(nz))
        ents["e_idx"].append(nz.astype(np.uint16))
        ents["e_raw"].append(sub)
        ents["e_addr"].append(addr)
        ents["e_shape"].append(ids)
        total += len(nz)
    return _finish(mode, roots, visitor, shapes, cols, ents, visits, capped)


def _finish(
    mode: PagingMode,
    roots: Sequence[int],
    visitor: Tables,
    shapes: _Shapes,
    cols: dict[str, list[Any]],
    ents: dict[str, list[Any]],
    visits: list[Visit],
    capped: bool,
) -> WalkData:
    arrays: dict[str, np.ndarray[Any, Any]] = {
        "t_pa": np.array(cols["t_pa"], np.uint64),
        "t_depth": np.array(cols["t_depth"], np.uint8),
        "t_root": np.array(cols["t_root"], np.uint8),
        "t_off": np.array(cols["t_off"], np.uint32),
        "t_n": np.array(cols["t_n"], np.uint32),
        "t_refs": np.array(
            [visitor.refs.get((v.pa, v.depth), (None, 0))[1] for v in visits], np.uint32
        ),
    }
    dtypes = {"e_idx": np.uint16, "e_raw": np.uint64, "e_addr": np.uint64, "e_shape": np.uint32}
    for name, parts in ents.items():
        arrays[name] = np.concatenate(parts) if parts else np.zeros(0, dtypes[name])
    zero = [[shapes.get(h, d, False, 0, 0) for d in range(len(h.levels))] for h in _by_root(mode)]
    index = {(v.pa, v.level.number): i for i, v in enumerate(visits)}
    partial = {index[key]: list(p.missing) for key, p in visitor.partial.items() if key in index}
    events = [
        {"kind": e.kind, "level": e.level.name, "entry_pa": e.entry_pa, "target": e.target,
         "detail": e.detail}
        for e in visitor.events
    ]  # fmt: skip
    outside = sorted({e.target for e in visitor.events if e.kind == "outside-ram"})
    return WalkData(
        arrays, shapes.records, zero, partial, outside, capped,
        len(visits), int(arrays["e_raw"].shape[0]), events,
    )  # fmt: skip


def _by_root(mode: PagingMode) -> list[Half]:
    """One half per root register, in register order (the first half each one serves)."""
    seen: dict[int, Half] = {}
    for half in mode.halves:
        seen.setdefault(half.root, half)
    return [seen[i] for i in sorted(seen)]
