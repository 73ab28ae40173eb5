"""Commands that list and walk one address space: ``walk``, ``maps`` and ``p2v``. Each prints
rich tables by default and JSON with ``--json`` (``--hex``: addresses as ``"0x..."`` strings);
the reports (``diff``, ``lint``, ``stats``, ``find-roots``) are in :mod:`pagewalk.cli.report_cmds`.

The work is the library's (:class:`pagewalk.machine.Machine`: ``walk``, ``maps``, ``aliases``);
enumeration and walks follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec,
and the QEMU texts follow QEMU's x86 monitor (see :mod:`pagewalk.inspect.qemu`). ``maps``
writes its listing in bulk, a batch of runs at a time (:mod:`pagewalk.cli.writers`, and
:mod:`pagewalk.cli.listing` for the table, paged on a terminal); a long scan shows a progress bar
on stderr when it is a terminal, and nothing otherwise.

A dump is untrusted input, so every command costs what the distinct tables cost: listings
stream their output and are counted before the first line, and a listing of more than
``--max-mappings`` ranges stops with exit status 2 and prints nothing (see
:mod:`pagewalk.cli.common`). Tables partly outside the image are used as walks use them, with a
``pagewalk: warning:`` line on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import click

from pagewalk.cli import writers
from pagewalk.cli.common import (
    check_hex,
    console,
    emit_json,
    hex_option,
    hexed,
    listing_limit,
    machine_from,
    max_mappings_option,
    primed,
    warn_partial,
    write_json_list,
)
from pagewalk.cli.listing import layout_option, show_table, write_listing
from pagewalk.cli.machine import INT, image_argument, machine_options
from pagewalk.cli.nested_opts import nested_flag, nested_options, open_nested
from pagewalk.columns import RunColumns
from pagewalk.enumerate import count_runs
from pagewalk.enumerate_filter import Filter
from pagewalk.enumerate_runs import EnumStats
from pagewalk.errors import ConfigError, hx
from pagewalk.formats.base import PagingMode
from pagewalk.inspect import lint as lint_mod
from pagewalk.inspect.filters import parse_perm, parse_sizes
from pagewalk.inspect.qemu import info_mem_text, info_tlb_text, needs_raw_attrs
from pagewalk.inspect.regions import Layout
from pagewalk.inspect.regions import detect as detect_layout
from pagewalk.machine import Machine, check_window, parse_int
from pagewalk.textcols import Chunk

FORMATS = ("table", "json", "csv", "qemu-info-mem", "qemu-info-tlb", "ptdump")
_U64 = 1 << 64


def _pa(text: str) -> int:
    pa = parse_int(text, "PA")
    if not 0 <= pa < _U64:
        raise ConfigError(f"PA {text} is outside 0..{hx(_U64 - 1)} (physical addresses are 64-bit)")
    return pa


def _filter(perm: str | None, phys: tuple[int, int] | None, sizes: str | None) -> Filter:
    need, forbid = parse_perm(perm) if perm else (Filter().need, Filter().forbid)
    phys = check_window(phys, "--phys", "PA")
    return Filter(need, forbid, phys, parse_sizes(sizes) if sizes else None)


@click.command(name="walk")
@image_argument()
@machine_options
@nested_options
@click.option("--json", "as_json", is_flag=True, help="Every step as JSON.")
@hex_option
@click.argument("va")
def walk_cmd(image: str, va: str, as_json: bool, hex_numbers: bool, **kwargs: Any) -> None:
    """Show every level of the walk of VA: entry PA, raw value, fields, permission so far.

    With a stage-2 option (--ept, --vttbr/--vtcr, --hgatp, --ncr3) VA is a guest's: both
    stages' steps are shown, each stage-1 table read with its stage-2 walk.
    """
    check_hex(hex_numbers, as_json)
    machine, nested = open_nested(image, kwargs)
    if nested is not None:
        from pagewalk.cli.nested_render import nested_walks

        nested_walks(nested, [parse_int(va, "VA")], as_json, hex_numbers, single=True)
        return
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
                "fields": {
                    f.name: hx(f.value) if hex_numbers and f.width >= 32 else f.value
                    for f in machine.mode.fields(s.raw, s.level)
                },
                "perm": s.perm.letters(),
            }
            for s in result.steps
        ]
        out = result.to_json()
        out["steps"] = steps
        if result.fault is not None:
            out["fault"]["reason"] = result.fault.reason
        emit_json(out, hex_numbers=hex_numbers)
        return
    from pagewalk.cli.render import print_walk  # rich: only for the table

    print_walk(console(), result, machine.mode)


@click.command()
@image_argument()
@machine_options
@click.option("--range", "va_range", type=(INT, INT), help="Only VAs in [A, B).")
@click.option("--has", "has", type=INT, help="Only the merged range holding this VA.")
@click.option("--perm", help="Permissions to need or refuse: w,x,u,k,!x,ro ...")
@click.option("--phys", type=(INT, INT), help="Only leaves overlapping PAs [A, B).")
@click.option("--level-sizes", "sizes", help="Only leaves of these sizes: 4K,2M,1G.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option(
    "--hex",
    "hex_numbers",
    is_flag=True,
    help='With --json or --format csv: addresses and sizes as "0x..." (hex) text.',
)
@max_mappings_option
@layout_option
@nested_options
@nested_flag
def maps(
    image: str,
    va_range: tuple[int, int] | None,
    has: int | None,
    perm: str | None,
    phys: tuple[int, int] | None,
    sizes: str | None,
    fmt: str,
    as_json: bool,
    hex_numbers: bool,
    max_mappings: int | None,
    layout_name: str,
    nested_flag: bool,
    **kwargs: Any,
) -> None:
    """List every mapping of IMAGE, merged into ranges with effective permissions.

    Filters prune during the walk: subtrees that cannot match are never read. The listing
    streams; one of more than --max-mappings ranges is refused before anything is printed.
    With a stage-2 option (--nested is then implied) it lists guest VA -> GPA -> host PA.
    """
    fmt = "json" if as_json else fmt
    check_hex(hex_numbers, fmt in ("json", "csv"), "--json and --format csv")
    given = {"--has": has, "--perm": perm, "--phys": phys, "--level-sizes": sizes}
    machine, nested = open_nested(image, kwargs, require=nested_flag)
    if nested is not None:
        from pagewalk.cli.nested_render import list_nested

        list_nested(nested, fmt, hex_numbers, va_range, given, listing_limit(max_mappings))
        return
    noted = _root_note(machine)
    filt = _filter(perm, phys, sizes)
    va_range = check_window(va_range, "--range", "VA")
    stats = EnumStats()
    raw = needs_raw_attrs(fmt, machine.mode)
    found = machine.map_columns(
        va_range, has=has, filt=filt, stats=stats, raw_attrs=raw, limit=listing_limit(max_mappings)
    )
    listed = 0

    def counted(batches: Iterator[RunColumns]) -> Iterator[RunColumns]:
        nonlocal listed
        for b in batches:
            listed += len(b)
            yield b

    batches = counted(primed(found))
    layout = detect_layout(machine, layout_name) if fmt in ("table", "json", "csv") else None
    if fmt == "table":
        show_table(machine, batches, stats, console(), layout)
    else:
        write_listing(machine, batches, _writer(fmt, machine.mode, hex_numbers, layout))
    warn_partial(stats.partial.values())
    if noted and not listed:
        click.echo("maps: nothing listed, for the reason noted above (exit 1)", err=True)
        raise click.exceptions.Exit(1)


def _writer(
    fmt: str, mode: PagingMode, hex_numbers: bool, layout: Layout | None = None
) -> Callable[[Iterable[RunColumns]], Iterable[Chunk]]:
    """The writer of a ``--format`` other than the table (JSON and CSV name each run's region
    when there is a layout; the QEMU and ptdump texts mimic their tools and never do)."""
    texts: dict[str, Callable[[Iterable[RunColumns]], Iterable[Chunk]]] = {
        "json": lambda b: writers.json_list(b, hexed=hex_numbers, layout=layout),
        "csv": lambda b: writers.csv_table(b, hexed=hex_numbers, layout=layout),
        "qemu-info-mem": lambda b: info_mem_text(b, mode),
        "qemu-info-tlb": lambda b: info_tlb_text(b, mode),
        "ptdump": lambda b: writers.ptdump(b, mode),
    }
    return texts[fmt]


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


@click.command()
@image_argument()
@machine_options
@click.option("--json", "as_json", is_flag=True, help="A JSON list of aliases per PA.")
@hex_option
@max_mappings_option
@click.argument("pas", nargs=-1, required=True)
def p2v(
    image: str,
    pas: tuple[str, ...],
    as_json: bool,
    hex_numbers: bool,
    max_mappings: int | None,
    **kwargs: Any,
) -> None:
    """Every virtual address that maps each PA.

    Each PA is looked up with one walk filtered by PA as it goes (nothing is indexed), so
    memory stays flat; every PA's aliases are counted against --max-mappings first. Each
    alias names the page that maps it.
    """
    check_hex(hex_numbers, as_json)
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
            shown = f'"{hx(pa)}"' if hex_numbers else pa
            sys.stdout.write(f'{", " if k else ""}{{"pa": {shown}, "vas": ')
            items = (
                {"va": va, **_without_va(m.to_json()), "page_va": m.va}
                for va, m in machine.aliases(pa, stats=stats)
            )
            write_json_list((hexed(i) for i in items) if hex_numbers else items, end="}")
        sys.stdout.write("]\n")
    else:
        from pagewalk.cli.render import print_lines  # rich: only for the table

        out = console()
        for pa in values:
            out.print(f"{hx(pa)}:", style="bold")
            lines = (
                f"  {hx(va)}  {m.perm.letters()}  in the {writers.size_text(m.page_size)} page "
                f"{hx(m.va)}-{hx(m.end - 1)} -> {hx(m.pa)}"
                for va, m in machine.aliases(pa, stats=stats)
            )
            out.print(f"  {print_lines(out, lines)} virtual address(es)", style="dim")
    warn_partial(stats.partial.values())


def _without_va(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "va"}


COMMANDS = [walk_cmd, maps, p2v]
