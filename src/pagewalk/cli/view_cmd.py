"""``pagewalk view``: write an address space as one self-contained, interactive HTML page.

The page (:mod:`pagewalk.view`) draws the runs of the columnar enumeration as a zoomable map,
walks any VA level by level from table data decoded in Python, and shows the table tree, the
stats and the lint findings. It is written atomically beside its target, never over the input
and never over an existing file without ``--force``. Walks follow Intel SDM vol. 3A ch. 4, Arm
ARM D8 and the RISC-V privileged spec.
"""

from __future__ import annotations

from typing import Any

import click

from pagewalk.cli.common import machine_from
from pagewalk.cli.listing import layout_option
from pagewalk.cli.machine import image_argument, machine_options
from pagewalk.view.space import MAX_ENTRIES, MAX_RUNS


@click.command("view")
@image_argument()
@machine_options
@layout_option
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False), help="The HTML file to write."
)
@click.option("--force", is_flag=True, help="Let --out replace an existing file.")
@click.option(
    "--max-runs", type=click.IntRange(min=1), default=MAX_RUNS, show_default=True,
    help="Draw at most this many runs (the page says when more were left out).",
)  # fmt: skip
@click.option(
    "--max-entries", type=click.IntRange(min=1), default=MAX_ENTRIES, show_default=True,
    help="Embed at most this many table entries (walks into tables left out say so).",
)  # fmt: skip
def view(
    image: str,
    out: str,
    force: bool,
    max_runs: int,
    max_entries: int,
    layout_name: str,
    **kwargs: Any,
) -> None:
    """Write IMAGE's address space as an interactive HTML page: map, walks, tables, lint."""
    from pagewalk.safeio import check_target
    from pagewalk.view import machine_report, write_report

    check_target(
        out, inputs=[image] if image else [], force=force
    )  # before the work, as again when writing
    machine = machine_from(image, kwargs)
    page = machine_report(machine, max_runs=max_runs, max_entries=max_entries, layout=layout_name)
    write_report(out, page, inputs=[image] if image else [], force=force)
    click.echo(f"wrote {out} ({len(page)} bytes)", err=True)


COMMANDS = [view]
