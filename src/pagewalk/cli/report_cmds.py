"""Commands that report on page tables: ``diff``, ``lint``, ``stats`` and ``find-roots``. Each
prints rich tables by default and JSON with ``--json`` (``--hex``: addresses, sizes and raw
entries as ``"0x..."`` strings, see :func:`pagewalk.cli.common.hexed`).

The reports are the inspectors' (:mod:`pagewalk.inspect`), run over a machine opened by
:func:`pagewalk.open`; they follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged
spec. ``diff`` streams both enumerations through one sweep and counts each side against
``--max-mappings`` first; ``lint`` and ``stats`` visit each distinct table once; ``lint`` exits 1
when it reports an error or a warning (``--fail-on`` changes the threshold). Tables partly
outside the image get a ``pagewalk: warning:`` line on stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress

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
from pagewalk.cli.listing import layout_option
from pagewalk.cli.machine import INT, given_cpu, image_argument, machine_options
from pagewalk.cli.render import (
    diff_line,
    diff_table,
    lint_table,
    print_listing,
    roots_table,
    stats_table,
)
from pagewalk.enumerate_runs import EnumStats
from pagewalk.errors import ConfigError, hx
from pagewalk.formats import MODE_NAMES, make_mode
from pagewalk.inspect import diff as diff_mod
from pagewalk.inspect import lint as lint_mod
from pagewalk.inspect.regions import detect as detect_layout
from pagewalk.inspect.roots import find_roots
from pagewalk.inspect.stats import stats as stats_of
from pagewalk.machine import load_machine, open_image, parse_int
from pagewalk.machine.machine import live_machine
from pagewalk.memory.dump import FileMemory


@click.command(name="diff")
@image_argument("image_a")
@click.argument("image_b", type=click.Path(dir_okay=False), required=False)
@machine_options
@click.option("--root-b", type=INT, help="Root register for side B (default: B's own).")
@click.option("--cpu-b", type=click.IntRange(min=0), help="CPU of B's core (default: --cpu).")
@click.option("--json", "as_json", is_flag=True, help="Changes as JSON.")
@hex_option
@max_mappings_option
def diff_cmd(
    image_a: str,
    image_b: str | None,
    root_b: int | None,
    cpu_b: int | None,
    as_json: bool,
    hex_numbers: bool,
    max_mappings: int | None,
    **kwargs: Any,
) -> int:
    """Diff two address spaces: two roots of one dump (--root-b), or two dumps.

    Both enumerations stream through one sweep; each side is counted against --max-mappings
    before anything is printed. Exits 1 when the spaces differ, 0 when they do not (as
    diff(1) does).
    """
    check_hex(hex_numbers, as_json)
    a = machine_from(image_a, kwargs)
    if image_b is None and root_b is None:
        raise ConfigError("give IMAGE_B, or --root-b to compare two roots of one image")
    opts = {k: v for k, v in kwargs.items() if v is not None}
    if root_b is not None:
        opts["root"] = root_b
    if image_b is None and a.live is not None:  # the same live memory: no second connection
        b = live_machine(a.live, opts)
    else:
        b = load_machine(image_b or image_a, opts, cpu=given_cpu() if cpu_b is None else cpu_b)
    limit = listing_limit(max_mappings)
    st_a, st_b = EnumStats(), EnumStats()
    rows_a = primed(a.maps(stats=st_a, limit=limit))
    rows_b = primed(b.maps(stats=st_b, limit=limit))
    tally = diff_mod.Tally()
    changes = (tally.add(c) for c in diff_mod.iter_diff(rows_a, rows_b))
    if as_json:
        sys.stdout.write('{\n  "changes": ')
        items = (c.to_json() for c in changes)
        write_json_list((hexed(c) for c in items) if hex_numbers else items, indent=4, end="")
        totals = hexed(tally.totals) if hex_numbers else tally.totals
        rest = json.dumps(totals, indent=2)[1:]
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
    warn_partial([*st_a.partial.values(), *st_b.partial.values()])
    return 1 if tally.count else 0


#: the severities that make ``lint`` exit 1, by --fail-on
_FAILING = {"error": ("error",), "warning": ("error", "warning"), "never": ()}


@click.command()
@image_argument()
@machine_options
@click.option("--json", "as_json", is_flag=True, help="Findings as JSON.")
@hex_option
@click.option(
    "--fail-on",
    type=click.Choice(tuple(_FAILING)),
    default="warning",
    show_default=True,
    help="Exit 1 when a finding this severe or worse is reported (info never fails).",
)
@layout_option
def lint(
    image: str, as_json: bool, hex_numbers: bool, fail_on: str, layout_name: str, **kwargs: Any
) -> None:
    """Find risky permissions and malformed entries or trees; each finding names the entry.

    Exits 1 when it reports an error or a warning (see --fail-on), 0 otherwise.
    """
    check_hex(hex_numbers, as_json)
    machine = machine_from(image, kwargs)
    layout = detect_layout(machine, layout_name)
    findings = lint_mod.lint(machine.mem, machine.mode, machine.roots, layout)
    counts = lint_mod.summary(findings)
    if as_json:
        findings_json = [f.to_json(with_region=layout is not None) for f in findings]
        emit_json({"findings": findings_json, "summary": counts}, hex_numbers=hex_numbers)
    else:
        out = console()
        out.print(machine.describe(), style="dim")
        for line in layout.why if layout is not None else ():
            out.print(f"  {line}", style="dim")
        out.print(lint_table(findings))
        out.print(", ".join(f"{n} {k}(s)" for k, n in counts.items()), style="dim")
    if any(counts[s] for s in _FAILING[fail_on]):
        raise click.exceptions.Exit(1)


@click.command()
@image_argument()
@machine_options
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@hex_option
def stats(image: str, as_json: bool, hex_numbers: bool, **kwargs: Any) -> None:
    """Tables per level and their bytes, leaves per size, and what huge pages would save."""
    check_hex(hex_numbers, as_json)
    machine = machine_from(image, kwargs)
    report = stats_of(machine.mem, machine.mode, machine.roots)
    if as_json:
        data = report.to_json()
        if hex_numbers:  # page sizes are keys there: those too
            data = hexed(data)
            data["leaves_by_size"] = {hx(int(k)): n for k, n in data["leaves_by_size"].items()}
            data["savings"] = {hx(int(k)): hx(n) for k, n in data["savings"].items()}
        emit_json(data)
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
    warn_partial(report.partial)


@click.command(name="find-roots")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--mode", type=click.Choice(MODE_NAMES, case_sensitive=False))
@click.option("--cpu", type=click.IntRange(min=0), help="CPU whose registers to mark.")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Candidates as JSON.")
@hex_option
def find_roots_cmd(
    image: str, mode: str | None, cpu: int | None, limit: int, as_json: bool, hex_numbers: bool
) -> None:
    """Scan IMAGE for plausible top-level tables and rank them (for dumps without registers)."""
    check_hex(hex_numbers, as_json)
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
        emit_json([c.to_json() for c in found], hex_numbers=hex_numbers)
        return
    out = console()
    out.print(f"{image}: {len(found)} candidate root(s) as {paging.name}", style="dim")
    out.print(roots_table(found, known))


COMMANDS = [diff_cmd, lint, stats, find_roots_cmd]
