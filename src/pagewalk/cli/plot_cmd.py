"""``pagewalk plot``: draw an address space's page sizes, table memory or TLB hit rates.

A thin layer over :mod:`pagewalk.view.plot` (matplotlib, the ``plot`` extra): the format comes
from the output's suffix (``.png`` or ``.svg``), and the file is written atomically, never over
the input and never over an existing file without ``--force``. Sizes, levels and the TLB model
follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pagewalk.cli.common import machine_from
from pagewalk.cli.listing import layout_option
from pagewalk.cli.machine import image_argument, machine_options
from pagewalk.errors import ConfigError

_FORMATS = {".png": "png", ".svg": "svg"}


@click.command("plot")
@image_argument()
@machine_options
@layout_option
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False),
    help="The picture to write: FILE.png or FILE.svg.",
)  # fmt: skip
@click.option(
    "--kind",
    type=click.Choice(["page-sizes", "table-memory", "tlb"]),
    default="page-sizes",
    show_default=True,
    help="Pages by size per region or VA half; table bytes per level; TLB hit rate against "
    "working set and stride on a synthetic trace.",
)
@click.option("--force", is_flag=True, help="Let --out replace an existing file.")
def plot(image: str, out: str, kind: str, force: bool, layout_name: str, **kwargs: Any) -> None:
    """Draw IMAGE's page sizes, table memory or TLB hit rates as a PNG or SVG (matplotlib)."""
    from pagewalk.safeio import check_target
    from pagewalk.view import region_hook, write_report
    from pagewalk.view.plot import render_plot

    fmt = _FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise ConfigError(f"--out {out}: give a .png or .svg file name")
    check_target(out, inputs=[image] if image else [], force=force)
    machine = machine_from(image, kwargs)
    data = render_plot(machine, kind, fmt, region_hook(machine, layout_name))
    write_report(out, data, inputs=[image] if image else [], force=force)
    click.echo(f"wrote {out} ({len(data)} bytes)", err=True)


COMMANDS = [plot]
