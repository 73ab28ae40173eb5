"""Commands that list and walk one address space: ``walk``, ``maps`` and ``p2v``. Each prints
rich tables by default and JSON with ``--json``; the reports (``diff``, ``lint``, ``stats``,
``find-roots``) are in :mod:`pagewalk.cli.report_cmds`.

The work is the library's (:class:`pagewalk.machine.Machine`: ``walk``, ``maps``, ``aliases``);
enumeration and walks follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec,
and the QEMU texts follow QEMU's x86 monitor (see :mod:`pagewalk.inspect.qemu`). Long scans show
a progress bar on stderr when it is a terminal, and nothing otherwise.

A dump is untrusted input, so every command costs what the distinct tables cost: listings
stream their output and are counted before the first line, and a listing of more than
``--max-mappings`` ranges stops with exit status 2 and prints nothing (see
:mod:`pagewalk.cli.common`). Tables partly outside the image are used as walks use them, with a
``pagewalk: warning:`` line on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress

from pagewalk.cli.common import (
    console,
    emit_json,
    listing_limit,
    machine_from,
    max_mappings_option,
    primed,
    warn_partial,
)
from pagewalk.cli.machine import INT, machine_options
from pagewalk.cli.render import (
    mapping_line,
    mappings_table,
    print_lines,
    print_listing,
    print_walk,
    ptdump_lines,
    size_text,
    write_json_list,
)
from pagewalk.enumerate import count_runs
from pagewalk.enumerate_filter import Filter
from pagewalk.enumerate_runs import EnumStats, Mapping
from pagewalk.errors import ConfigError, hx
from pagewalk.inspect import lint as lint_mod
from pagewalk.inspect.filters import parse_perm, parse_sizes
from pagewalk.inspect.qemu import info_mem, info_tlb, needs_raw_attrs
from pagewalk.machine import Machine, check_window, parse_int

FORMATS = ("table", "json", "qemu-info-mem", "qemu-info-tlb", "ptdump")
_U64 = 1 << 64


def _pa(text: str) -> int:
    pa = parse_int(text, "PA")
    if not 0 <= pa < _U64:
        raise ConfigError(f"PA {text} is outside 0..{hx(_U64 - 1)} (physical addresses are 64-bit)")
    return pa


def _progress_rows(machine: Machine, rows: Iterator[Mapping]) -> Iterator[Mapping]:
    """Pass rows through, drawing a bar (by VA covered) on a terminal's stderr (not when stdout
    is that terminal too: the listing streams there while it is walked)."""
    if not sys.stderr.isatty() or sys.stdout.isatty():
        yield from rows
        return
    halves = machine.mode.halves
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("walking tables", total=len(halves))
        for m in rows:
            for i, h in enumerate(halves):
                if h.contains(m.va):
                    bar.update(task, completed=i + (m.va - h.va_start) / (h.va_end - h.va_start))
            yield m


def _filter(perm: str | None, phys: tuple[int, int] | None, sizes: str | None) -> Filter:
    need, forbid = parse_perm(perm) if perm else (Filter().need, Filter().forbid)
    phys = check_window(phys, "--phys", "PA")
    return Filter(need, forbid, phys, parse_sizes(sizes) if sizes else None)


@click.command(name="walk")
@click.argument("image", type=click.Path(dir_okay=False))
@machine_options
@click.option("--json", "as_json", is_flag=True, help="Every step as JSON.")
@click.argument("va")
def walk_cmd(image: str, va: str, as_json: bool, **kwargs: Any) -> None:
    """Show every level of the walk of VA: entry PA, raw value, fields, permission so far."""
    machine = machine_from(image, kwargs)
    result = machine.walk(parse_int(va, "VA"))
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
@click.option("--has", "has", type=INT, help="Only the merged range holding this VA.")
@click.option("--perm", help="Permissions to need or refuse: w,x,u,k,!x,ro ...")
@click.option("--phys", type=(INT, INT), help="Only leaves overlapping PAs [A, B).")
@click.option("--level-sizes", "sizes", help="Only leaves of these sizes: 4K,2M,1G.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@max_mappings_option
def maps(
    image: str,
    va_range: tuple[int, int] | None,
    has: int | None,
    perm: str | None,
    phys: tuple[int, int] | None,
    sizes: str | None,
    fmt: str,
    as_json: bool,
    max_mappings: int | None,
    **kwargs: Any,
) -> None:
    """List every mapping of IMAGE, merged into ranges with effective permissions.

    Filters prune during the walk: subtrees that cannot match are never read. The listing
    streams; one of more than --max-mappings ranges is refused before anything is printed.
    """
    machine = machine_from(image, kwargs)
    noted = _root_note(machine)
    fmt = "json" if as_json else fmt
    filt = _filter(perm, phys, sizes)
    va_range = check_window(va_range, "--range", "VA")
    limit = listing_limit(max_mappings)
    stats = EnumStats()
    raw = needs_raw_attrs(fmt, machine.mode)
    if has is not None:
        rows = machine.maps(has=has, filt=filt, stats=stats, raw_attrs=raw, limit=limit)
    else:
        found = machine.maps(va_range, filt=filt, stats=stats, raw_attrs=raw, limit=limit)
        rows = primed(_progress_rows(machine, found))
    listed = 0

    def counted(items: Iterator[Mapping]) -> Iterator[Mapping]:
        nonlocal listed
        for item in items:
            listed += 1
            yield item

    rows = counted(rows)
    if fmt == "json":
        write_json_list(m.to_json() for m in rows)
    elif fmt in ("qemu-info-mem", "qemu-info-tlb", "ptdump"):
        render = {"qemu-info-mem": info_mem, "qemu-info-tlb": info_tlb, "ptdump": ptdump_lines}
        for line in render[fmt](rows, machine.mode):
            click.echo(line)
    else:
        _print_maps(machine, rows, stats)
    warn_partial(stats.partial.values())
    if noted and not listed:
        click.echo("maps: nothing listed, for the reason noted above (exit 1)", err=True)
        raise click.exceptions.Exit(1)


def _root_note(machine: Machine) -> bool:
    """Refuse an unusable root (exit 2, naming the entry and the reason); say on stderr when
    its table is empty or partly faulting, and return whether it was said."""
    problem = lint_mod.root_problem(machine.mem, machine.mode, machine.roots)
    if problem is None:
        return False
    if problem.unusable:
        raise ConfigError(f"{machine.source}: {problem.message}")
    click.echo(f"note: {problem.message}", err=True)
    return True


def _print_maps(machine: Machine, rows: Iterator[Mapping], stats: EnumStats) -> None:
    out = console()
    out.print(machine.describe(), style="dim")
    for line in machine.why:
        out.print(f"  {line}", style="dim")
    mode = machine.mode
    count = print_listing(
        out,
        rows,
        lambda chunk, fixed: mappings_table(chunk, mode, fixed=fixed),
        lambda m: mapping_line(m, mode),
    )
    notes = []
    if stats.memo_hits:
        notes.append(f"{stats.memo_hits} identical subtree(s) memoised, not walked again")
    if stats.pruned:
        notes.append(f"{stats.pruned} subtree(s) pruned by the filters")
    if stats.faulty_entries:
        notes.append(f"{stats.faulty_entries} faulting entr(ies) skipped (see lint)")
    extra = "".join(f", {n}" for n in notes)
    out.print(
        f"{count} range(s) from {stats.leaves} leaves in {stats.tables} tables{extra}",
        style="dim",
    )


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@machine_options
@click.option("--json", "as_json", is_flag=True, help="A JSON list of aliases per PA.")
@max_mappings_option
@click.argument("pas", nargs=-1, required=True)
def p2v(
    image: str, pas: tuple[str, ...], as_json: bool, max_mappings: int | None, **kwargs: Any
) -> None:
    """Every virtual address that maps each PA.

    Each PA is looked up with one walk filtered by PA as it goes (nothing is indexed), so
    memory stays flat; every PA's aliases are counted against --max-mappings first. Each
    alias names the page that maps it.
    """
    machine = machine_from(image, kwargs)
    values = [_pa(p) for p in pas]
    limit = listing_limit(max_mappings)
    if limit is not None:
        for pa in dict.fromkeys(values):
            at = Filter(pa_range=(pa, pa + 1))
            count_runs(machine.mem, machine.mode, machine.roots, filt=at, limit=limit)
    stats = EnumStats()
    if as_json:
        sys.stdout.write("[")
        for k, pa in enumerate(values):
            sys.stdout.write(f'{", " if k else ""}{{"pa": {pa}, "vas": ')
            write_json_list(
                (
                    {"va": va, **_without_va(m.to_json()), "page_va": m.va}
                    for va, m in machine.aliases(pa, stats=stats)
                ),
                end="}",
            )
        sys.stdout.write("]\n")
    else:
        out = console()
        for pa in values:
            out.print(f"{hx(pa)}:", style="bold")
            lines = (
                f"  {hx(va)}  {m.perm.letters()}  in the {size_text(m.page_size)} page "
                f"{hx(m.va)}-{hx(m.end - 1)} -> {hx(m.pa)}"
                for va, m in machine.aliases(pa, stats=stats)
            )
            out.print(f"  {print_lines(out, lines)} virtual address(es)", style="dim")
    warn_partial(stats.partial.values())


def _without_va(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "va"}


COMMANDS = [walk_cmd, maps, p2v]
