"""Views people would rather look at: a self-contained HTML report of an address space.

:func:`machine_report` builds the page for an opened dump (:class:`pagewalk.Machine`): the runs
of the columnar enumeration drawn as a zoomable map, walks drawn level by level from table data
decoded in Python (:mod:`pagewalk.view.walkdata`), the table tree, the stats and lint findings.
``pagewalk boot --html`` adds the boot timeline (:mod:`pagewalk.view.timeline`). Walks follow
Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pagewalk.view.page import render, write_report
from pagewalk.view.space import MAX_ENTRIES, MAX_RUNS, Region, Section, section

if TYPE_CHECKING:
    from pagewalk.machine.machine import Machine

__all__ = ["Section", "machine_report", "region_hook", "render", "section", "write_report"]


def region_hook(machine: Machine) -> list[Region]:
    """Named VA ranges for the map, from ``pagewalk.inspect.regions`` when it exists (else none).

    The one call site of that module: adapt here when its interface settles.
    """
    try:
        from pagewalk.inspect import regions as found  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return []
    finder: Callable[..., list[Region]] | None = getattr(found, "regions", None)
    if finder is None:
        return []
    return [
        (int(a), int(b), str(n)) for a, b, n in finder(machine.mem, machine.mode, machine.roots)
    ]


def machine_report(
    machine: Machine, *, max_runs: int = MAX_RUNS, max_entries: int = MAX_ENTRIES
) -> bytes:
    """The HTML report of ``machine``'s address space."""
    sec = section(
        str(machine.source), machine.mem, machine.mode, machine.roots,
        regions=region_hook(machine), max_runs=max_runs, max_entries=max_entries,
    )  # fmt: skip
    return render([sec], f"pagewalk view: {machine.source}")
