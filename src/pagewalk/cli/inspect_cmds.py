"""Commands that inspect tables: ``maps`` (merged ranges) and ``walk`` (one VA, every level).

Enumeration and walks follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec.
"""

from __future__ import annotations

from typing import Any

import click

from pagewalk.cli.common import console, emit_json, machine_from
from pagewalk.cli.machine import INT, machine_options, parse_int
from pagewalk.cli.render import mappings_table, print_walk
from pagewalk.inspect.mappings import EnumStats, mappings
from pagewalk.walk import walk


@click.command(name="walk")
@click.argument("image", type=click.Path(dir_okay=False))
@machine_options
@click.option("--json", "as_json", is_flag=True, help="Every step as JSON.")
@click.argument("va")
def walk_cmd(image: str, va: str, as_json: bool, **kwargs: Any) -> None:
    """Show every level of the walk of VA: entry PA, raw value, fields, permission so far."""
    machine = machine_from(image, kwargs)
    result = walk(machine.mem, machine.mode, machine.roots, parse_int(va, "VA"))
    if as_json:
        steps = [
            {
                "level": s.level.number,
                "name": s.level.name,
                "index": s.index,
                "entry_pa": s.entry_pa,
                "raw": s.raw,
                "kind": s.entry.kind.value,
                "fields": {f.name: f.value for f in machine.mode.fields(s.raw, s.level)},
                "perm": s.perm.letters(),
            }
            for s in result.steps
        ]
        out = result.to_json()
        out["steps"] = steps
        if result.fault is not None:
            out["fault"]["reason"] = result.fault.reason
        emit_json(out)
        return
    print_walk(console(), result, machine.mode)


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@machine_options
@click.option("--range", "va_range", type=(INT, INT), help="Only VAs in [A, B).")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of merged ranges.")
def maps(image: str, va_range: tuple[int, int] | None, as_json: bool, **kwargs: Any) -> None:
    """List every mapping of IMAGE, merged into ranges with effective permissions."""
    machine = machine_from(image, kwargs)
    stats = EnumStats()
    rows = list(mappings(machine.mem, machine.mode, machine.roots, va_range=va_range, stats=stats))
    if as_json:
        emit_json([m.to_json() for m in rows])
        return
    out = console()
    out.print(machine.describe(), style="dim")
    out.print(mappings_table(rows, machine.mode))
    memo = f", {stats.memo_hits} shared subtree(s) reused" if stats.memo_hits else ""
    bad = f", {stats.faulty_entries} faulting entr(ies) skipped" if stats.faulty_entries else ""
    out.print(
        f"{len(rows)} range(s) from {stats.leaves} leaves in {stats.tables} tables{memo}{bad}",
        style="dim",
    )


COMMANDS = [walk_cmd, maps]
