"""Views people would rather look at: a self-contained HTML report of an address space.

:func:`machine_report` builds the page for an opened dump (:class:`pagewalk.Machine`): the runs
of the columnar enumeration drawn as a zoomable map, walks drawn level by level from table data
decoded in Python (:mod:`pagewalk.view.walkdata`), the table tree, the stats and lint findings.
``pagewalk boot --html`` adds the boot timeline (:mod:`pagewalk.view.timeline`). Walks follow
Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pagewalk.view.page import render, write_report
from pagewalk.view.space import MAX_ENTRIES, MAX_RUNS, Region, Section, section

if TYPE_CHECKING:
    from pagewalk.machine.machine import Machine

__all__ = ["Section", "machine_report", "region_hook", "render", "section", "write_report"]


def region_hook(machine: Machine, layout: str = "auto") -> list[Region]:
    """Named VA ranges for the map: the kernel layout ``layout`` names
    (:func:`pagewalk.inspect.regions.detect`; ``auto`` finds it, ``none`` draws none).

    Raises:
        ConfigError: an unknown layout name.
    """
    from pagewalk.inspect.regions import detect

    found = detect(machine, layout)
    if found is None:
        return []
    return [(r.start, r.end, r.name) for r in found.regions]


def machine_report(
    machine: Machine,
    *,
    max_runs: int = MAX_RUNS,
    max_entries: int = MAX_ENTRIES,
    layout: str = "auto",
) -> bytes:
    """The HTML report of ``machine``'s address space, its regions named by ``layout``."""
    sec = section(
        str(machine.source), machine.mem, machine.mode, machine.roots,
        regions=region_hook(machine, layout), max_runs=max_runs, max_entries=max_entries,
    )  # fmt: skip
    return render([sec], f"pagewalk view: {machine.source}")
