"""Commands that inspect tables: ``maps``, ``walk``, ``p2v``, ``diff``, ``lint``, ``stats`` and
``find-roots``. Each prints rich tables by default and JSON with ``--json``.

Enumeration and walks follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec;
the QEMU texts follow QEMU's x86 monitor (see :mod:`pagewalk.inspect.qemu`). Long scans show a
progress bar on stderr when it is a terminal, and nothing otherwise.

A dump is untrusted input, so every command costs what the distinct tables cost: listings
(``maps``, ``p2v``, ``diff``) stream their output and are counted before the first line, and a
listing of more than ``--max-mappings`` ranges (``PAGEWALK_MAX_MAPPINGS``, default
:data:`DEFAULT_MAX_MAPPINGS`, 0 for none) stops with exit status 2 and prints nothing; ``lint``
and ``stats`` visit each distinct table once. Tables partly outside the image are used as walks
use them, with a ``pagewalk: warning:`` line on stderr. ``lint`` exits 1 when it reports an
error or a warning (``--fail-on`` changes the threshold).
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import Progress

from pagewalk.cli.common import console, emit_json, machine_from
from pagewalk.cli.machine import INT, Machine, load_machine, machine_options, open_image, parse_int
from pagewalk.cli.render import (
    diff_line,
    diff_table,
    lint_table,
    mapping_line,
    mappings_table,
    print_lines,
    print_listing,
    print_walk,
    ptdump_lines,
    roots_table,
    size_text,
    stats_table,
    write_json_list,
)
from pagewalk.enumerate import EnumStats, Mapping, PartialTable, count_runs, mappings
from pagewalk.enumerate_filter import Filter
from pagewalk.errors import ConfigError, hx
from pagewalk.formats import MODE_NAMES, make_mode
from pagewalk.inspect import diff as diff_mod
from pagewalk.inspect import lint as lint_mod
from pagewalk.inspect.filters import parse_perm, parse_sizes
from pagewalk.inspect.qemu import info_mem, info_tlb, needs_raw_attrs
from pagewalk.inspect.roots import find_roots
from pagewalk.inspect.stats import stats as stats_of
from pagewalk.memory.dump import FileMemory
from pagewalk.walk import walk

FORMATS = ("table", "json", "qemu-info-mem", "qemu-info-tlb", "ptdump")
#: ranges one listing may describe unless --max-mappings or PAGEWALK_MAX_MAPPINGS say otherwise
DEFAULT_MAX_MAPPINGS = 1 << 22
MAX_MAPPINGS_ENV = "PAGEWALK_MAX_MAPPINGS"
_U64 = 1 << 64
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def max_mappings_option(func: F) -> F:
    """``--max-mappings N``: the limit on the ranges one listing may describe."""
    return click.option(
        "--max-mappings",
        type=click.IntRange(min=0),
        metavar="N",
        help=f"Refuse (exit 2, nothing printed) a listing of more than N ranges, counted before "
        f"merging across tables [default: ${MAX_MAPPINGS_ENV} or {DEFAULT_MAX_MAPPINGS}; "
        "0: no limit].",
    )(func)


def _limit(value: int | None) -> int | None:
    """The limit from the option, else the environment, else the default; None for none."""
    if value is None:
        text = os.environ.get(MAX_MAPPINGS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_MAPPINGS
        try:
            value = int(text.replace("_", ""), 0)
        except ValueError:
            value = -1
        if value < 0:
            raise ConfigError(
                f"{MAX_MAPPINGS_ENV}={text!r} is not a whole number of ranges (0: no limit)"
            )
    return value or None


def _primed(rows: Iterator[T]) -> Iterator[T]:
    """Run ``rows`` to its first item now, so that a limit or input error comes before any
    output."""
    for first in rows:
        return itertools.chain((first,), rows)
    return iter(())


def _warn(parts: Iterable[PartialTable]) -> None:
    """One stderr warning per table partly outside the image."""
    for part in parts:
        click.echo(f"pagewalk: warning: {part.message()}", err=True)


def _window(pair: tuple[int, int] | None, option: str, what: str) -> tuple[int, int] | None:
    """Check an ``A B`` option: 0 <= A < B <= 2^64."""
    if pair is None:
        return None
    lo, hi = pair
    if not 0 <= lo < hi <= _U64:
        raise ConfigError(
            f"{option} {hx(lo) if lo >= 0 else lo} {hx(hi) if hi >= 0 else hi}: give {what}s "
            f"A < B within 0..{hx(_U64)}"
        )
    return pair


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
    phys = _window(phys, "--phys", "PA")
    return Filter(need, forbid, phys, parse_sizes(sizes) if sizes else None)


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
    va_range = _window(va_range, "--range", "VA")
    limit = _limit(max_mappings)
    stats = EnumStats()
    raw = needs_raw_attrs(fmt, machine.mode)
    if has is not None:
        rows: Iterator[Mapping] = iter(_containing(machine, has, filt, stats, raw, limit))
    else:
        found = mappings(
            machine.mem, machine.mode, machine.roots,
            va_range=va_range, stats=stats, filt=filt, raw_attrs=raw, limit=limit,
        )  # fmt: skip
        rows = _primed(_progress_rows(machine, found))
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
    _warn(stats.partial.values())
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


def _containing(
    machine: Machine, va: int, filt: Filter, stats: EnumStats, raw: bool, limit: int | None
) -> list[Mapping]:
    """The merged range holding ``va``: enumerate a window around it, widening as needed."""
    half = machine.mode.check_virtual(va)
    span = 1 << half.levels[-1].shift
    while True:
        lo = max(half.va_start, va & ~(span - 1))
        hi = min(half.va_end, lo + span)
        window = mappings(
            machine.mem, machine.mode, machine.roots,
            va_range=(lo, hi), stats=stats, filt=filt, raw_attrs=raw, limit=limit,
        )  # fmt: skip
        hit = [m for m in window if m.va <= va < m.end]
        edge = bool(hit) and (hit[0].va == lo or hit[0].end == hi)
        if not edge or (lo, hi) == (half.va_start, half.va_end):
            return hit
        span <<= 1


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
    limit = _limit(max_mappings)
    if limit is not None:
        for pa in dict.fromkeys(values):
            count_runs(machine.mem, machine.mode, machine.roots, filt=_at(pa), limit=limit)
    stats = EnumStats()

    def aliases(pa: int) -> Iterator[tuple[int, Mapping]]:
        found = mappings(machine.mem, machine.mode, machine.roots, stats=stats, filt=_at(pa))
        return ((m.va + (pa - m.pa), m) for m in found)

    if as_json:
        sys.stdout.write("[")
        for k, pa in enumerate(values):
            sys.stdout.write(f'{", " if k else ""}{{"pa": {pa}, "vas": ')
            write_json_list(
                ({"va": va, **_without_va(m.to_json()), "page_va": m.va} for va, m in aliases(pa)),
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
                for va, m in aliases(pa)
            )
            out.print(f"  {print_lines(out, lines)} virtual address(es)", style="dim")
    _warn(stats.partial.values())


def _at(pa: int) -> Filter:
    return Filter(pa_range=(pa, pa + 1))


def _without_va(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "va"}


@click.command(name="diff")
@click.argument("image_a", type=click.Path(dir_okay=False))
@click.argument("image_b", type=click.Path(dir_okay=False), required=False)
@machine_options
@click.option("--root-b", type=INT, help="Root register for side B (default: B's own).")
@click.option("--cpu-b", type=click.IntRange(min=0), help="CPU of B's core (default: --cpu).")
@click.option("--json", "as_json", is_flag=True, help="Changes as JSON.")
@max_mappings_option
def diff_cmd(
    image_a: str,
    image_b: str | None,
    root_b: int | None,
    cpu_b: int | None,
    as_json: bool,
    max_mappings: int | None,
    **kwargs: Any,
) -> None:
    """Diff two address spaces: two roots of one dump (--root-b), or two dumps.

    Both enumerations stream through one sweep; each side is counted against --max-mappings
    before anything is printed.
    """
    a = machine_from(image_a, kwargs)
    if image_b is None and root_b is None:
        raise ConfigError("give IMAGE_B, or --root-b to compare two roots of one image")
    opts = {k: v for k, v in kwargs.items() if v is not None}
    if root_b is not None:
        opts["root"] = root_b
    b = load_machine(image_b or image_a, opts, cpu=cpu_b)
    limit = _limit(max_mappings)
    st_a, st_b = EnumStats(), EnumStats()
    rows_a = _primed(mappings(a.mem, a.mode, a.roots, stats=st_a, limit=limit))
    rows_b = _primed(mappings(b.mem, b.mode, b.roots, stats=st_b, limit=limit))
    tally = diff_mod.Tally()
    changes = (tally.add(c) for c in diff_mod.iter_diff(rows_a, rows_b))
    if as_json:
        sys.stdout.write('{\n  "changes": ')
        write_json_list((c.to_json() for c in changes), indent=4, end="")
        rest = json.dumps(tally.totals, indent=2)[1:]
        sys.stdout.write(f",{rest}\n")
    else:
        out = console()
        out.print(f"A: {a.describe()}\nB: {b.describe()}", style="dim")
        print_listing(out, changes, lambda chunk, fixed: diff_table(chunk, fixed=fixed), diff_line)
        s = tally.totals
        out.print(
            f"{tally.count} change(s): {hx(s['added'])} bytes added, {hx(s['removed'])} removed, "
            f"{hx(s['changed'])} changed, {s['perm_changes']} permission change(s)",
            style="dim",
        )
    _warn([*st_a.partial.values(), *st_b.partial.values()])


#: the severities that make ``lint`` exit 1, by --fail-on
_FAILING = {"error": ("error",), "warning": ("error", "warning"), "never": ()}


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@machine_options
@click.option("--json", "as_json", is_flag=True, help="Findings as JSON.")
@click.option(
    "--fail-on",
    type=click.Choice(tuple(_FAILING)),
    default="warning",
    show_default=True,
    help="Exit 1 when a finding this severe or worse is reported (info never fails).",
)
def lint(image: str, as_json: bool, fail_on: str, **kwargs: Any) -> None:
    """Find risky permissions and malformed entries or trees; each finding names the entry.

    Exits 1 when it reports an error or a warning (see --fail-on), 0 otherwise.
    """
    machine = machine_from(image, kwargs)
    findings = lint_mod.lint(machine.mem, machine.mode, machine.roots)
    counts = lint_mod.summary(findings)
    if as_json:
        emit_json({"findings": [f.to_json() for f in findings], "summary": counts})
    else:
        out = console()
        out.print(machine.describe(), style="dim")
        out.print(lint_table(findings))
        out.print(", ".join(f"{n} {k}(s)" for k, n in counts.items()), style="dim")
    if any(counts[s] for s in _FAILING[fail_on]):
        raise click.exceptions.Exit(1)


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@machine_options
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
def stats(image: str, as_json: bool, **kwargs: Any) -> None:
    """Tables per level and their bytes, leaves per size, and what huge pages would save."""
    machine = machine_from(image, kwargs)
    report = stats_of(machine.mem, machine.mode, machine.roots)
    if as_json:
        emit_json(report.to_json())
    else:
        out = console()
        out.print(machine.describe(), style="dim")
        out.print(stats_table(report))
        leaves = ", ".join(f"{n} x {hx(size)}" for size, n in sorted(report.leaves_by_size.items()))
        out.print(f"tables use {hx(report.table_bytes)} bytes; leaves: {leaves or 'none'}")
        for size, saved in sorted(report.savings().items()):
            out.print(f"using {hx(size)}-byte pages where tables are full and contiguous saves "
                      f"{hx(saved)} bytes")  # fmt: skip
        if report.shared_tables or report.recursive_entries:
            out.print(
                f"{report.shared_tables} table(s) reached through more than one entry (counted "
                f"once); {report.recursive_entries} entr(ies) point to their own table",
                style="dim",
            )
    _warn(report.partial)


@click.command(name="find-roots")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--mode", type=click.Choice(MODE_NAMES, case_sensitive=False))
@click.option("--cpu", type=click.IntRange(min=0), help="CPU whose registers to mark.")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Candidates as JSON.")
def find_roots_cmd(
    image: str, mode: str | None, cpu: int | None, limit: int, as_json: bool
) -> None:
    """Scan IMAGE for plausible top-level tables and rank them (for dumps without registers)."""
    opened = open_image(image, cpu)
    # scan only where the file holds data: sparse raw files, cores and inflated dumps alike
    extents = opened.mem.data_spans() if isinstance(opened.mem, FileMemory) else None
    regs = opened.saved.get("registers", {})
    name = mode or regs.get("mode") or opened.saved.get("mode") or "x86_64"
    paging = make_mode(name)
    known = {}
    for key in ("root", "ttbr0", "ttbr1"):
        if regs.get(key) is not None:
            known[paging.root_from_register(parse_int(regs[key]))] = f"= {key} in the image"
    with Progress(
        console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty()
    ) as bar:
        task = bar.add_task("scanning", total=1.0)
        found = find_roots(
            opened.mem, paging, limit=limit, extents=extents,
            progress=lambda done, total: bar.update(task, completed=done / max(total, 1)),
        )  # fmt: skip
    if as_json:
        emit_json([c.to_json() for c in found])
        return
    out = console()
    out.print(f"{image}: {len(found)} candidate root(s) as {paging.name}", style="dim")
    out.print(roots_table(found, known))


COMMANDS = [walk_cmd, maps, p2v, diff_cmd, lint, stats, find_roots_cmd]
