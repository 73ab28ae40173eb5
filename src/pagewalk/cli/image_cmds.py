"""Commands on images: ``translate`` (every step of a walk, or a file of addresses streamed
through the batch walker) and ``build`` (an image from a spec).

Walk semantics follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec; the JSON
shape is the contract in ``docs/cli.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np

from pagewalk.batch import BatchResult, Translator
from pagewalk.cli.common import console, emit_json, machine_from
from pagewalk.cli.machine import Machine, machine_options, parse_int
from pagewalk.cli.render import print_walk
from pagewalk.errors import DumpError, PageFault
from pagewalk.image import build, load_spec, save
from pagewalk.mmu import check_access
from pagewalk.walk import Walk, walk

#: addresses per chunk when streaming (8 MiB in, 8 MiB out)
STREAM_CHUNK = 1 << 20


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@machine_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per VA, in a list.")
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(dir_okay=False, exists=True),
    help="Read VAs as little-endian u64 from this file (batch mode; needs --to-file).",
)
@click.option(
    "--to-file",
    "to_file",
    type=click.Path(dir_okay=False),
    help="Write PAs as little-endian u64 (0xFFFFFFFFFFFFFFFF for a fault), one per VA.",
)
@click.option(
    "--access",
    type=click.Choice(["read", "write", "exec"]),
    help="Check this access with the full permission rules (faults carry the CPU's code).",
)
@click.option("--user", is_flag=True, help="Check the access at user level (CPL3, EL0, U).")
@click.argument("vas", nargs=-1)
def translate(
    image: str,
    vas: tuple[str, ...],
    as_json: bool,
    from_file: str | None,
    to_file: str | None,
    access: str | None,
    user: bool,
    **kwargs: Any,
) -> None:
    """Translate each VA through IMAGE's tables and show every step of the walk.

    With --from-file/--to-file it translates a file of addresses in chunks instead, so any
    number of addresses fits in bounded memory.
    """
    if (from_file is None) != (to_file is None):
        raise click.UsageError("--from-file and --to-file go together")
    if from_file is None and not vas:
        raise click.UsageError("give VAs, or --from-file ADDRS --to-file OUT")
    if from_file is not None and vas:
        raise click.UsageError("give VAs or --from-file, not both")
    machine = machine_from(image, kwargs)
    if from_file is not None and to_file is not None:
        n, faults = stream_translate(machine, from_file, to_file)
        click.echo(f"translated {n} address(es) to {to_file}: {faults} fault(s)")
        return
    addresses = [parse_int(v, "VA") for v in vas]
    results = [walk(machine.mem, machine.mode, machine.roots, va) for va in addresses]
    checks = None
    if access is not None or user:
        kind = access or "read"
        checks = [
            check_access(machine.mem, machine.mode, machine.roots, va, kind, user)
            for va in addresses
        ]
    if as_json:
        emit_json([_access_json(r, c) for r, c in zip(results, checks or results, strict=True)])
        return
    out = console()
    out.print(machine.describe(), style="dim")
    for i, result in enumerate(results):
        print_walk(out, result, machine.mode)
        if checks is not None:
            out.print(_access_text(checks[i], access or "read", user))


def _access_json(result: Walk, check: int | PageFault | Walk) -> dict[str, Any]:
    """The JSON object of one VA: the walk's, or the access check's when one was asked."""
    if isinstance(check, Walk):
        return result.to_json()
    if isinstance(check, PageFault):
        return {"va": result.va, "pa": None, "page_size": None, "fault": check.to_json()}
    return {"va": result.va, "pa": check, "page_size": result.page_size, "fault": None}


def _access_text(check: int | PageFault, access: str, user: bool) -> str:
    who = "user" if user else "supervisor"
    if isinstance(check, PageFault):
        code = "" if check.code is None else f", code {check.code:#x}"
        return f"[bold red]{who} {access}: {check.kind} fault{code}[/]: {check.reason}"
    return f"[green]{who} {access}: allowed[/] -> {check:#x}"


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


def stream_translate(machine: Machine, src: str, dst: str) -> tuple[int, int]:
    """Translate the u64 VAs in ``src`` into u64 PAs in ``dst``, a chunk at a time.

    Returns:
        ``(addresses, faults)``.

    Raises:
        DumpError: ``src`` is not a whole number of 8-byte addresses.
    """
    size = Path(src).stat().st_size
    if size % 8:
        raise DumpError(f"{src}: {size} bytes is not a whole number of 8-byte addresses")
    translator = Translator(machine.mem, machine.mode, machine.roots)
    buf = np.empty(STREAM_CHUNK, dtype="<u8")
    results = BatchResult.empty(STREAM_CHUNK)  # filled in place chunk after chunk
    n = faults = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while True:
            got = fin.readinto(buf.data.cast("B")) or 0
            if not got:
                break
            result = translator.translate(buf[: got // 8], out=results.head(got // 8))
            fout.write(result.pa.astype("<u8", copy=False).tobytes())
            n += got // 8
            faults += int(np.count_nonzero(result.fault))
    return n, faults


COMMANDS = [translate, build_cmd]
