"""How ``walk``, ``translate`` and ``maps`` show a guest walked through stage 2: both stages'
steps, the fault with the registers the hardware fills, and guest VA -> GPA -> host PA runs.

The walk and its fault come from :mod:`pagewalk.nested` (Intel SDM vol. 3C §29.3, AMD APM vol. 2
§15.25, Arm ARM D8 stage 2, the RISC-V hypervisor chapter); this module only lays them out. The
table shows each stage-1 step with the stage-2 walk of its table read on one line under it
(``stage 2: entry PAs -> host PA``), then the stage-2 walk of the final GPA; JSON carries the
same (``docs/cli.md``, ``docs/nested.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import click

from pagewalk.cli.common import console, emit_json, hexed
from pagewalk.cli.writers import memtype_text, size_text
from pagewalk.enumerate_runs import EnumStats
from pagewalk.errors import LimitError, hx
from pagewalk.formats.base import PagingMode, Rights
from pagewalk.machine import check_window
from pagewalk.nested import NestedWalk, S2Result
from pagewalk.nested_machine import NestedMachine, NestedMapping
from pagewalk.walk import Step

if TYPE_CHECKING:
    from rich.console import Console

#: JSON keys that ``--hex`` writes as ``"0x..."`` here (beyond the common ones)
NESTED_HEX_KEYS = frozenset(
    {"va", "gva", "gpa", "ipa", "pa", "size", "page_size", "entry_pa", "raw", "gla", "stval",
     "htval", "far_el1", "far_el2", "hpfar_el2", "exitinfo2", "cr2"}
)  # fmt: skip


def hex_nested(data: Any) -> Any:
    """``data`` with the numbers under :data:`NESTED_HEX_KEYS` as ``"0x..."`` text."""
    return hexed(data, keys=NESTED_HEX_KEYS)


def _rights(r: Rights | None) -> str | None:
    return None if r is None else r.letters()


def _steps_json(steps: Iterable[Step], mode: PagingMode) -> list[dict[str, Any]]:
    return [
        {
            "level": s.level.number, "name": s.level.name, "index": s.index,
            "entry_pa": s.entry_pa, "raw": s.raw, "kind": s.entry.kind.value,
            "fields": {f.name: f.value for f in mode.fields(s.raw, s.level)},
        }
        for s in steps
    ]  # fmt: skip


def _s2_json(r: S2Result, mode: PagingMode) -> dict[str, Any]:
    return {
        "ipa": r.ipa, "pa": r.pa, "page_size": r.size, "rights": _rights(r.rights),
        "fault": r.fault, "level": r.level, "steps": _steps_json(r.steps, mode),
    }  # fmt: skip


def walk_json(w: NestedWalk, nm: NestedMachine) -> dict[str, Any]:
    """One two-stage walk as JSON: both stages' steps (each stage-1 step with the stage-2 walk
    of its table read), the GPA, host PA, rights, and the fault with its registers."""
    s2mode = nm.s2.mode
    s1 = _steps_json(w.s1_steps, nm.mode)
    for step, table in zip(s1, w.s1_tables, strict=False):
        step["s2"] = _s2_json(table, s2mode)
    fault = None
    if w.fault is not None:
        fault = {**w.fault.to_json(), "reason": w.fault.reason}
        if len(w.s1_tables) > len(w.s1_steps):  # the stage-1 table read stage 2 refused
            fault["s2"] = _s2_json(w.s1_tables[-1], s2mode)
    return {
        "va": w.gva, "access": w.access, "user": w.user, "gpa": w.gpa, "pa": w.pa,
        "page_size": w.page_size, "s1_rights": _rights(w.s1_rights),
        "s2_rights": _rights(w.s2_rights), "rights": _rights(w.rights), "s1_steps": s1,
        "s2": None if w.s2 is None else _s2_json(w.s2, s2mode), "fault": fault,
    }  # fmt: skip


def _s2_line(r: S2Result, *, raw: bool = False) -> str:
    """A stage-2 walk on one line: the entries read (with their values when ``raw``), then the
    host PA or the fault: ``0x..00 > 0x..18 -> 0x1300000``."""
    hops = " > ".join(f"{hx(s.entry_pa)}={s.raw:#x}" if raw else hx(s.entry_pa) for s in r.steps)
    end = hx(r.pa) if r.pa is not None else f"{r.fault} fault at level {r.level}: {r.reason}"
    return f"{hops} -> {end}" if hops else f"-> {end}"


def print_walk(console: Console, w: NestedWalk, nm: NestedMachine) -> None:
    """The headline, the stage-1 steps (each with its table read's stage-2 walk), the final
    GPA's stage-2 steps, and on a fault the registers the hardware reports."""
    from rich.table import Table
    from rich.text import Text

    f = w.fault
    who = f"{'user' if w.user else 'supervisor'} {w.access}"
    head = Text(f"{hx(w.gva)} -> ")
    if f is None:
        assert w.gpa is not None and w.pa is not None and w.page_size is not None
        head.append(f"GPA {hx(w.gpa)} -> PA {hx(w.pa)}  {size_text(w.page_size)} page, ")
        head.append(_rights(w.rights) or "-", style="bold")
        head.append(f" ({who} allowed)")
    else:
        where = "" if f.level is None else f" at level {f.level}"
        table = f" on the stage-1 level-{f.s1_level} table read" if f.on_table else ""
        head.append(f"stage-{f.stage} {f.kind} fault{where}{table}", style="bold red")
        head.append(f" ({who}): {f.reason}")
    console.print(head)
    console.print(f"stage 1: {nm.mode.describe()}", style="dim")
    t1 = Table(show_edge=False, header_style="bold")
    for col in ("level", "index", "entry GPA", "raw", "fields"):
        t1.add_column(col, no_wrap=col != "fields")
    for k, step in enumerate(w.s1_steps):
        fields = " ".join(s for fl in nm.mode.fields(step.raw, step.level) if (s := str(fl)))
        raw = f"{step.raw:#0{2 + 2 * nm.mode.entry_size}x}"
        t1.add_row(step.level.name, str(step.index), hx(step.entry_pa), raw, fields or "-")
        if k < len(w.s1_tables):
            line = Text("stage 2: " + _s2_line(w.s1_tables[k]), style="dim")
            t1.add_row("", "", "", "", line)
    if len(w.s1_tables) > len(w.s1_steps):
        line = Text("stage 2: " + _s2_line(w.s1_tables[-1], raw=True), style="red")
        t1.add_row("", "", hx(w.s1_tables[-1].ipa), "(not read)", line)
    if w.s1_tables:
        console.print(t1)
    if w.s2 is not None:
        console.print(f"stage 2 of GPA {hx(w.s2.ipa)}: {nm.s2.register}", style="dim")
        console.print("  " + _s2_line(w.s2, raw=True))
    if f is not None and f.report:
        regs = ", ".join(f"{k}={hx(v) if isinstance(v, int) and not isinstance(v, bool) else v}"
                         for k, v in f.report.items())  # fmt: skip
        console.print(f"reported: {regs}")


def maps_table(console: Console, rows: Iterable[NestedMapping], nm: NestedMachine) -> int:
    """Guest VA -> GPA -> host PA runs as a table; returns how many."""
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for col in ("virtual", "end", "size", "guest-physical", "physical", "page", "perm",
                "memtype", "s2 memtype"):  # fmt: skip
        table.add_column(col, no_wrap=True, justify="right" if col == "size" else "left")
    n = 0
    for m in rows:
        n += 1
        table.add_row(hx(m.va), hx(m.va + m.size - 1), size_text(m.size), hx(m.gpa), hx(m.pa),
                      size_text(m.page_size), m.perm.letters(), memtype_text(m.memtype),
                      memtype_text(m.s2_memtype))  # fmt: skip
    console.print(nm.describe(), style="dim")
    console.print(table)
    return n


def nested_walks(
    nm: NestedMachine,
    vas: list[int],
    as_json: bool,
    hex_numbers: bool,
    *,
    single: bool = False,
    access: str = "read",
    user: bool = False,
) -> None:
    """``walk``/``translate`` of guest VAs through stage 2: tables, or JSON (one object with
    ``single``, else a list)."""
    walks = [nm.walk(va, access, user) for va in vas]
    if as_json:
        rows = [walk_json(w, nm) for w in walks]
        data: Any = rows[0] if single else rows
        emit_json(hex_nested(data) if hex_numbers else data)
        return
    out = console()
    out.print(nm.describe(), style="dim")
    for w in walks:
        print_walk(out, w, nm)


def list_nested(
    nm: NestedMachine | None,
    fmt: str,
    hex_numbers: bool,
    va_range: tuple[int, int] | None,
    filters: Mapping[str, object],
    limit: int | None,
) -> None:
    """``maps --nested``: guest VA -> GPA -> host PA runs as a table or JSON.

    Raises:
        click.UsageError: an option the nested listing does not take.
        LimitError: more than ``limit`` runs (before anything is printed).
    """
    assert nm is not None, "open_nested(require=True) refuses --nested without a stage 2"
    used = [name for name, value in filters.items() if value is not None]
    if used:
        raise click.UsageError(
            f"{', '.join(used)} cannot be used with a stage 2 (maps --nested takes --range)"
        )
    if fmt not in ("table", "json"):
        raise click.UsageError(f"--format {fmt} cannot be used with a stage 2 (table or json)")
    window = check_window(va_range, "--range", "VA")
    rows: list[NestedMapping] = []
    for m in nm.maps(window, stats=EnumStats()):
        rows.append(m)
        if limit is not None and len(rows) > limit:
            raise LimitError(
                f"the guest's tables describe more than {limit} nested mapping ranges (the "
                "limit). Raise it with --max-mappings N or PAGEWALK_MAX_MAPPINGS=N (0: no "
                "limit), or narrow the listing with --range"
            )
    if fmt == "json":
        data = [m.to_json() for m in rows]
        emit_json(hex_nested(data) if hex_numbers else data)
        return
    maps_table(console(), rows, nm)
