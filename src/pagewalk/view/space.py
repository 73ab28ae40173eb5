"""One address space as a report section: its runs, its walk data, its stats and lint findings.

The runs are those of the columnar enumeration (:func:`pagewalk.enumerate.mapping_columns`, what
``pagewalk maps`` lists: merged, with the permission folded over every level), kept as numpy
columns; the walk data is :func:`pagewalk.view.walkdata.walk_data`. What the page needs about the
mode is exported as data (halves and their levels, the half-select bit and top-byte-ignore of
Arm ARM D8.2.3 from :class:`~pagewalk.formats.model.ArchFacts`, the non-canonical fault), so the
page's script never tests an architecture (Intel SDM vol. 3A ch. 4, Arm ARM D8, RISC-V
privileged spec).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pagewalk.columns import RunColumns, concat
from pagewalk.enumerate import mapping_columns
from pagewalk.enumerate_runs import TableReader
from pagewalk.formats.base import PagingMode
from pagewalk.formats.model import PERMS
from pagewalk.view.walkdata import acc_number, walk_data

#: a named VA range ``(start, end, name)`` drawn over the map
Region = tuple[int, int, str]
#: defaults for what one report embeds
MAX_RUNS = 1 << 21
MAX_ENTRIES = 1 << 21
#: lint reads every run as an object; above this many runs it is left to ``pagewalk lint``
LINT_RUNS = 1 << 17


@dataclass
class Section:
    """One address space of a report: JSON metadata plus named little-endian arrays."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)


def _hex(value: int) -> str:
    return f"{value:#x}"


def collect_runs(
    mem: TableReader, mode: PagingMode, roots: Sequence[int], max_runs: int
) -> tuple[RunColumns, bool]:
    """The merged runs, at most ``max_runs`` (and whether there were more)."""
    kept: list[RunColumns] = []
    n = 0
    for batch in mapping_columns(mem, mode, roots):
        if n + len(batch) > max_runs:
            kept.append(batch.take(slice(0, max_runs - n)))
            return concat(kept), True
        kept.append(batch)
        n += len(batch)
    return concat(kept), False


def mode_meta(mode: PagingMode, roots: Sequence[int]) -> dict[str, Any]:
    """The mode as the page's walker needs it: halves, levels, selection, early faults."""
    halves = []
    for half in mode.halves:
        early = mode.root_fault(roots[half.root], half)
        halves.append({
            "name": half.name, "root": half.root, "root_pa": _hex(roots[half.root]),
            "va_start": _hex(half.va_start), "va_end": _hex(half.va_end),
            "levels": [
                {"name": lv.name, "number": lv.number, "shift": lv.shift, "bits": lv.bits,
                 "leaf_size": lv.leaf_size}
                for lv in half.levels
            ],
            "root_fault": None if early is None else list(early),
        })  # fmt: skip
    top = mode.halves[0].levels[0]
    width = top.shift + top.bits
    sign = mode.canonical(1 << (width - 1)) != 1 << (width - 1) if width < 64 else False
    return {
        "mode": mode.name,
        "describe": mode.describe(),
        "entry_size": mode.entry_size,
        "va_bits": mode.facts.va_bits,
        "canon": {"bits": width, "sign": sign},
        "select_bit": mode.facts.half_select_bit,
        "tbi": list(mode.tbi),
        "noncanon": {"kind": mode.non_canonical_kind, "level": mode.non_canonical_level},
        "walk_start": acc_number(mode.walk_start()),
        "halves": halves,
        "page_size": mode.page_size,
        "perm_letters": [p.letters() for p in PERMS],
        "root_names": list(mode.root_names),
        "roots": [_hex(r) for r in roots],
    }


def section(
    name: str,
    mem: TableReader,
    mode: PagingMode,
    roots: Sequence[int],
    *,
    regions: Sequence[Region] = (),
    max_runs: int = MAX_RUNS,
    max_entries: int = MAX_ENTRIES,
    inspect: bool = True,
) -> Section:
    """Everything the page shows about one address space.

    Args:
        name: the label of the space (the image, "kernel", "pid 1"...).
        regions: named VA ranges to draw (from ``pagewalk.inspect.regions`` when present).
        max_runs, max_entries: caps on the runs and table entries embedded.
        inspect: add the stats and lint findings.
    """
    runs, runs_capped = collect_runs(mem, mode, roots, max_runs)
    walks = walk_data(mem, mode, roots, max_entries=max_entries)
    meta = mode_meta(mode, roots)
    half_of = np.zeros(len(runs), np.uint8)
    for i, half in enumerate(mode.halves):
        if i:
            half_of[runs.va >= np.uint64(half.va_start)] = i
    pages = runs.page_size
    log2 = np.zeros(len(runs), np.uint8) if not len(runs) else np.log2(pages).astype(np.uint8)
    arrays: dict[str, np.ndarray[Any, Any]] = {
        "r_va": runs.va, "r_size": runs.size, "r_pa": runs.pa, "r_pg": log2, "r_perm": runs.perm,
        "r_half": half_of,
    }  # fmt: skip
    arrays.update(walks.arrays)
    meta.update({
        "name": name,
        "runs": {"count": len(runs), "capped": runs_capped, "max": max_runs},
        "walk": {
            "tables": walks.tables, "entries": walks.entries, "capped": walks.capped,
            "max": max_entries, "shapes": walks.shapes, "zero": walks.zero_shape,
            "partial": {str(k): v for k, v in walks.partial.items()},
            "outside": [_hex(pa) for pa in walks.outside], "events": walks.events,
        },
        "regions": [[_hex(a), _hex(b), label] for a, b, label in regions],
    })  # fmt: skip
    if inspect:
        meta["stats"], meta["lint"] = _inspect(mem, mode, roots, len(runs))
    return Section(meta, arrays)


def _inspect(
    mem: TableReader, mode: PagingMode, roots: Sequence[int], runs: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stats report, and the lint findings (skipped, and said so, for huge spaces)."""
    from pagewalk.inspect.lint import lint
    from pagewalk.inspect.stats import stats

    report = stats(mem, mode, roots).to_json()
    if runs > LINT_RUNS:
        return report, {"skipped": f"{runs} runs: run `pagewalk lint` for the findings"}
    found = lint(mem, mode, roots)
    return report, {"findings": [f.to_json() for f in found[:1000]], "total": len(found)}
