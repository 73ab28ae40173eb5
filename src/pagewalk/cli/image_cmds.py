"""Commands on images: ``translate`` (every step of a walk) and ``build`` (an image from a spec).

Walk semantics follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec; the JSON
shape is the contract in ``docs/cli.md``.
"""

from __future__ import annotations

from typing import Any

import click

from pagewalk.cli.common import console, emit_json, machine_from
from pagewalk.cli.machine import machine_options, parse_int
from pagewalk.cli.render import print_walk
from pagewalk.image import build, load_spec, save
from pagewalk.walk import walk


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@machine_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per VA, in a list.")
@click.argument("vas", nargs=-1, required=True)
def translate(image: str, vas: tuple[str, ...], as_json: bool, **kwargs: Any) -> None:
    """Translate each VA through IMAGE's tables and show every step of the walk."""
    machine = machine_from(image, kwargs)
    addresses = [parse_int(v, "VA") for v in vas]
    results = [walk(machine.mem, machine.mode, machine.roots, va) for va in addresses]
    if as_json:
        emit_json([r.to_json() for r in results])
        return
    out = console()
    out.print(machine.describe(), style="dim")
    for result in results:
        print_walk(out, result, machine.mode)


@click.command(name="build")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Image file.")
def build_cmd(spec: str, out: str) -> None:
    """Write an image (and OUT.json with its registers) from a TOML spec."""
    built = build(load_spec(spec))
    side = save(out, built.mem, built.mode, built.space.roots)
    names = built.mode.root_names
    roots = ", ".join(f"{n}={r:#x}" for n, r in zip(names, built.space.roots, strict=False))
    click.echo(f"wrote {out} ({built.mem.end:#x} bytes) and {side}: {built.mode.name}, {roots}")


COMMANDS = [translate, build_cmd]
