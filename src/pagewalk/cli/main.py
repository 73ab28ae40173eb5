"""The ``pagewalk`` command: a thin layer that parses arguments and calls the library.

Every command prints human output by default and machine output with ``--json``. Bad input
(a missing file, an unknown mode, a VA that is not a number, a root outside the image) gets one
line on stderr, ``pagewalk: error: ...``, and exit status 2, never a traceback. The JSON shapes
are a contract other tools script against; see ``docs/cli.md``. Walk semantics follow Intel SDM
vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click
from rich.console import Console

from pagewalk.cli.machine import INT, Machine, load_machine, machine_options, parse_int
from pagewalk.cli.render import mappings_table, print_walk
from pagewalk.errors import PagingError
from pagewalk.image import build, load_spec, save
from pagewalk.inspect.mappings import EnumStats, mappings
from pagewalk.walk import walk

_MACHINE_KEYS = (
    "mode", "root", "ttbr0", "ttbr1", "tcr", "mair", "cr0", "cr4", "efer", "maxphyaddr",
)  # fmt: skip


def _console() -> Console:
    """A console that never truncates addresses: wide when piped, the terminal's width else."""
    probe = Console()
    width = None if probe.is_terminal else 200
    return Console(highlight=False, soft_wrap=False, width=width)


def _machine(image: str, kwargs: dict[str, Any]) -> Machine:
    return load_machine(image, {k: kwargs.pop(k) for k in _MACHINE_KEYS})


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=None if isinstance(data, list) else 2))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pagewalk")
def cli() -> None:
    """Bit-exact page tables for every common paging mode, and an inspector for real ones."""


@cli.command()
@click.argument("image", type=click.Path(dir_okay=False))
@machine_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per VA, in a list.")
@click.argument("vas", nargs=-1, required=True)
def translate(image: str, vas: tuple[str, ...], as_json: bool, **kwargs: Any) -> None:
    """Translate each VA through IMAGE's tables and show every step of the walk."""
    machine = _machine(image, kwargs)
    addresses = [parse_int(v, "VA") for v in vas]
    results = [walk(machine.mem, machine.mode, machine.roots, va) for va in addresses]
    if as_json:
        _emit_json([r.to_json() for r in results])
        return
    console = _console()
    console.print(machine.describe(), style="dim")
    for result in results:
        print_walk(console, result, machine.mode)


@cli.command(name="walk")
@click.argument("image", type=click.Path(dir_okay=False))
@machine_options
@click.option("--json", "as_json", is_flag=True, help="Every step as JSON.")
@click.argument("va")
def walk_cmd(image: str, va: str, as_json: bool, **kwargs: Any) -> None:
    """Show every level of the walk of VA: entry PA, raw value, fields, permission so far."""
    machine = _machine(image, kwargs)
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
        _emit_json(out)
        return
    print_walk(_console(), result, machine.mode)


@cli.command()
@click.argument("image", type=click.Path(dir_okay=False))
@machine_options
@click.option("--range", "va_range", type=(INT, INT), help="Only VAs in [A, B).")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of merged ranges.")
def maps(image: str, va_range: tuple[int, int] | None, as_json: bool, **kwargs: Any) -> None:
    """List every mapping of IMAGE, merged into ranges with effective permissions."""
    machine = _machine(image, kwargs)
    stats = EnumStats()
    rows = list(mappings(machine.mem, machine.mode, machine.roots, va_range=va_range, stats=stats))
    if as_json:
        _emit_json([m.to_json() for m in rows])
        return
    console = _console()
    console.print(machine.describe(), style="dim")
    console.print(mappings_table(rows, machine.mode))
    memo = f", {stats.memo_hits} shared subtree(s) reused" if stats.memo_hits else ""
    bad = f", {stats.faulty_entries} faulting entr(ies) skipped" if stats.faulty_entries else ""
    console.print(
        f"{len(rows)} range(s) from {stats.leaves} leaves in {stats.tables} tables{memo}{bad}",
        style="dim",
    )


@cli.command(name="build")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Image file.")
def build_cmd(spec: str, out: str) -> None:
    """Write an image (and OUT.json with its registers) from a TOML spec."""
    built = build(load_spec(spec))
    side = save(out, built.mem, built.mode, built.space.roots)
    names = built.mode.root_names
    roots = ", ".join(f"{n}={r:#x}" for n, r in zip(names, built.space.roots, strict=False))
    click.echo(f"wrote {out} ({built.mem.end:#x} bytes) and {side}: {built.mode.name}, {roots}")


def _register_optional() -> None:
    """Commands that live in their own modules, added when present."""
    try:
        from pagewalk.cli.memmap_cmd import memmap
    except ImportError:  # pragma: no cover - the allocator issue adds it
        return
    cli.add_command(memmap)


_register_optional()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning our errors into one line and exit status 2."""
    try:
        cli.main(args=argv, prog_name="pagewalk", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("pagewalk: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "pagewalk"
        click.echo(f"pagewalk: error: {exc.format_message()} (see {where} --help)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"pagewalk: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except PagingError as exc:
        click.echo(f"pagewalk: error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"pagewalk: error: {exc.strerror or exc}: {exc.filename or ''}", err=True)
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("PAGEWALK_DEBUG"):
            raise
        click.echo(
            f"pagewalk: internal error: {type(exc).__name__}: {exc} "
            "(set PAGEWALK_DEBUG=1 for a traceback, and please report it)",
            err=True,
        )
        sys.exit(70)
