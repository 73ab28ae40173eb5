"""Commands that inspect tables: ``maps``, ``walk``, ``p2v``, ``diff``, ``lint``, ``stats`` and
``find-roots``. Each prints rich tables by default and JSON with ``--json``.

Enumeration and walks follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec;
the QEMU texts follow QEMU's x86 monitor (see :mod:`pagewalk.inspect.qemu`). Long scans show a
progress bar on stderr when it is a terminal, and nothing otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress

from pagewalk.cli.common import console, emit_json, machine_from
from pagewalk.cli.machine import INT, Machine, load_machine, machine_options, open_image, parse_int
from pagewalk.cli.render import (
    diff_table,
    lint_table,
    mappings_table,
    print_walk,
    ptdump_lines,
    roots_table,
    stats_table,
)
from pagewalk.errors import ConfigError, hx
from pagewalk.formats import MODE_NAMES, make_mode
from pagewalk.inspect import diff as diff_mod
from pagewalk.inspect import lint as lint_mod
from pagewalk.inspect.filters import Filter, parse_perm, parse_sizes
from pagewalk.inspect.mappings import EnumStats, Mapping, mappings
from pagewalk.inspect.qemu import info_mem, info_tlb
from pagewalk.inspect.reverse import ReverseMap
from pagewalk.inspect.roots import find_roots
from pagewalk.inspect.stats import stats as stats_of
from pagewalk.memory.dump import data_extents
from pagewalk.walk import walk

FORMATS = ("table", "json", "qemu-info-mem", "qemu-info-tlb", "ptdump")


def _progress_rows(machine: Machine, rows: Iterator[Mapping]) -> Iterator[Mapping]:
    """Pass rows through, drawing a bar (by VA covered) on a terminal's stderr."""
    if not sys.stderr.isatty():
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
def maps(
    image: str,
    va_range: tuple[int, int] | None,
    has: int | None,
    perm: str | None,
    phys: tuple[int, int] | None,
    sizes: str | None,
    fmt: str,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """List every mapping of IMAGE, merged into ranges with effective permissions.

    Filters prune during the walk: subtrees that cannot match are never read.
    """
    machine = machine_from(image, kwargs)
    fmt = "json" if as_json else fmt
    filt = _filter(perm, phys, sizes)
    stats = EnumStats()
    raw = fmt == "qemu-info-tlb"
    if has is not None:
        rows = _containing(machine, has, filt, stats, raw)
    else:
        found = mappings(
            machine.mem, machine.mode, machine.roots,
            va_range=va_range, stats=stats, filt=filt, raw_attrs=raw,
        )  # fmt: skip
        rows = list(_progress_rows(machine, found))
    if fmt == "json":
        emit_json([m.to_json() for m in rows])
    elif fmt in ("qemu-info-mem", "qemu-info-tlb", "ptdump"):
        render = {"qemu-info-mem": info_mem, "qemu-info-tlb": info_tlb, "ptdump": ptdump_lines}
        for line in render[fmt](rows, machine.mode):
            click.echo(line)
    else:
        _print_maps(machine, rows, stats)


def _containing(
    machine: Machine, va: int, filt: Filter, stats: EnumStats, raw: bool
) -> list[Mapping]:
    """The merged range holding ``va``: enumerate a window around it, widening as needed."""
    half = machine.mode.check_virtual(va)
    span = 1 << half.levels[-1].shift
    while True:
        lo = max(half.va_start, va & ~(span - 1))
        hi = min(half.va_end, lo + span)
        window = mappings(
            machine.mem, machine.mode, machine.roots,
            va_range=(lo, hi), stats=stats, filt=filt, raw_attrs=raw,
        )  # fmt: skip
        hit = [m for m in window if m.va <= va < m.end]
        edge = bool(hit) and (hit[0].va == lo or hit[0].end == hi)
        if not edge or (lo, hi) == (half.va_start, half.va_end):
            return hit
        span <<= 1


def _print_maps(machine: Machine, rows: list[Mapping], stats: EnumStats) -> None:
    out = console()
    out.print(machine.describe(), style="dim")
    for line in machine.why:
        out.print(f"  {line}", style="dim")
    out.print(mappings_table(rows, machine.mode))
    notes = []
    if stats.memo_hits:
        notes.append(f"{stats.memo_hits} identical subtree(s) memoised, not walked again")
    if stats.pruned:
        notes.append(f"{stats.pruned} subtree(s) pruned by the filters")
    if stats.faulty_entries:
        notes.append(f"{stats.faulty_entries} faulting entr(ies) skipped (see lint)")
    extra = "".join(f", {n}" for n in notes)
    out.print(
        f"{len(rows)} range(s) from {stats.leaves} leaves in {stats.tables} tables{extra}",
        style="dim",
    )


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@machine_options
@click.option("--json", "as_json", is_flag=True, help="A JSON list of aliases per PA.")
@click.argument("pas", nargs=-1, required=True)
def p2v(image: str, pas: tuple[str, ...], as_json: bool, **kwargs: Any) -> None:
    """Every virtual address that maps each PA (the reverse map is built once)."""
    machine = machine_from(image, kwargs)
    rev = ReverseMap(_progress_rows(machine, mappings(machine.mem, machine.mode, machine.roots)))
    results = [(pa, rev.lookup(pa)) for pa in (parse_int(p, "PA") for p in pas)]
    if as_json:
        emit_json(
            [
                {"pa": pa, "vas": [{"va": a.va, **a.mapping.to_json()} for a in hits]}
                for pa, hits in results
            ]
        )
        return
    out = console()
    for pa, hits in results:
        out.print(f"{hx(pa)}: {len(hits)} virtual address(es)", style="bold")
        out.print(mappings_table([a.mapping for a in hits], machine.mode))
        for a in hits:
            out.print(f"  {hx(a.va)}  ({a.mapping.perm.letters()})")


@click.command(name="diff")
@click.argument("image_a", type=click.Path(dir_okay=False))
@click.argument("image_b", type=click.Path(dir_okay=False), required=False)
@machine_options
@click.option("--root-b", type=INT, help="Root register for side B (default: B's own).")
@click.option("--cpu-b", type=click.IntRange(min=0), help="CPU of B's core (default: --cpu).")
@click.option("--json", "as_json", is_flag=True, help="Changes as JSON.")
def diff_cmd(
    image_a: str,
    image_b: str | None,
    root_b: int | None,
    cpu_b: int | None,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Diff two address spaces: two roots of one dump (--root-b), or two dumps."""
    a = machine_from(image_a, kwargs)
    if image_b is None and root_b is None:
        raise ConfigError("give IMAGE_B, or --root-b to compare two roots of one image")
    opts = {k: v for k, v in kwargs.items() if v is not None}
    if root_b is not None:
        opts["root"] = root_b
    b = load_machine(image_b or image_a, opts, cpu=cpu_b)
    rows_a = list(mappings(a.mem, a.mode, a.roots))
    rows_b = list(mappings(b.mem, b.mode, b.roots))
    changes = diff_mod.diff(rows_a, rows_b)
    if as_json:
        emit_json({"changes": [c.to_json() for c in changes], **diff_mod.summary(changes)})
        return
    out = console()
    out.print(f"A: {a.describe()}\nB: {b.describe()}", style="dim")
    out.print(diff_table(changes))
    s = diff_mod.summary(changes)
    out.print(
        f"{len(changes)} change(s): {hx(s['added'])} bytes added, {hx(s['removed'])} removed, "
        f"{hx(s['changed'])} changed, {s['perm_changes']} permission change(s)",
        style="dim",
    )


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@machine_options
@click.option("--json", "as_json", is_flag=True, help="Findings as JSON.")
def lint(image: str, as_json: bool, **kwargs: Any) -> None:
    """Find risky permissions and malformed entries or trees; each finding names the entry."""
    machine = machine_from(image, kwargs)
    findings = lint_mod.lint(machine.mem, machine.mode, machine.roots)
    if as_json:
        emit_json(
            {"findings": [f.to_json() for f in findings], "summary": lint_mod.summary(findings)}
        )
        return
    out = console()
    out.print(machine.describe(), style="dim")
    out.print(lint_table(findings))
    counts = lint_mod.summary(findings)
    out.print(", ".join(f"{n} {k}(s)" for k, n in counts.items()), style="dim")


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
        return
    out = console()
    out.print(machine.describe(), style="dim")
    out.print(stats_table(report))
    leaves = ", ".join(f"{n} x {hx(size)}" for size, n in sorted(report.leaves_by_size.items()))
    out.print(f"tables use {hx(report.table_bytes)} bytes; leaves: {leaves or 'none'}")
    for size, saved in sorted(report.savings().items()):
        out.print(f"using {hx(size)}-byte pages where tables are full and contiguous saves "
                  f"{hx(saved)} bytes")  # fmt: skip


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
    extents = None
    if opened.core is None and not opened.why:  # a plain raw file: scan only where it has data
        with open(image, "rb") as f:
            extents = [(o, s) for o, s in data_extents(f) if s >= 4096]
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
