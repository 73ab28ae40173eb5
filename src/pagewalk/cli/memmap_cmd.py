"""``pagewalk memmap FILE``: read a firmware memory map in any supported form and show it.

The command only parses arguments and calls :mod:`pagewalk.memory.memmap` (which follows the
ACPI E820 interface, the Multiboot 2 memory-map tag and the UEFI ``GetMemoryMap`` descriptors).
It prints a table with totals, or JSON with ``--json``. Bad input prints one line on stderr and
exits with status 2 (``click.exceptions.Exit(2)``, which :mod:`pagewalk.cli.main` passes on).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from pagewalk.errors import MemoryMapError, hx
from pagewalk.memory.memmap import FRAME_SIZE, MemoryMap
from pagewalk.memory.memmap_readers import FORMS, load_memory_map

if TYPE_CHECKING:
    from rich.console import Console


def _size(n: int) -> str:
    """Bytes in the largest binary unit that keeps one decimal."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} B"


def render_table(memmap: MemoryMap, console: Console) -> None:
    """Print the regions, the totals per type and the warnings."""
    from rich.table import Table

    table = Table(title="Physical memory map")
    for column in ("Base", "End", "Size", "Type", "Firmware type"):
        table.add_column(column, justify="right" if column == "Size" else "left")
    for region in memmap:
        table.add_row(
            hx(region.base),
            hx(region.end - 1),
            _size(region.length),
            region.type.value,
            region.source_type,
        )
    console.print(table)
    totals = Table(title="Totals")
    totals.add_column("Type")
    totals.add_column("Bytes", justify="right")
    totals.add_column("Size", justify="right")
    for kind, n in memmap.totals().items():
        if n:
            totals.add_row(kind.value, str(n), _size(n))
    usable = memmap.usable_bytes()
    totals.add_row("usable, whole frames", str(usable), f"{usable // FRAME_SIZE} frames")
    console.print(totals)
    for warning in memmap.unaligned():
        console.print(f"warning: {warning}", markup=False, highlight=False)


@click.command("memmap")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "form",
    type=click.Choice(FORMS),
    default="auto",
    show_default=True,
    help="Form of FILE; auto detects E820 logs, JSON and TOML.",
)
@click.option("--strict", is_flag=True, help="Reject regions whose edges are not 4 KiB aligned.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def memmap(file: str, form: str, strict: bool, as_json: bool) -> None:
    """Read the memory map FILE and print it as a table with totals."""
    try:
        found = load_memory_map(file, form=form, strict=strict)
    except MemoryMapError as exc:  # here too, so the command alone (CliRunner) keeps status 2
        click.echo(f"pagewalk: error: {exc}", err=True)
        raise click.exceptions.Exit(2) from None
    if as_json:
        click.echo(json.dumps(found.to_json(), indent=2))
    else:
        from rich.console import Console

        render_table(found, Console(highlight=False, soft_wrap=True))


COMMANDS = [memmap]
