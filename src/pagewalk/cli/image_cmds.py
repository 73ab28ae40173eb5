"""Commands on images: ``translate`` (every step of a walk, or a file of addresses streamed
through the batch walker) and ``build`` (an image from a spec).

Walk semantics follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec; the JSON
shape is the contract in ``docs/cli.md``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

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
    type=click.Path(dir_okay=False, exists=True, allow_dash=True),
    help="Read VAs as little-endian u64 from this file, or - for stdin (needs --to-file).",
)
@click.option(
    "--to-file",
    "to_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write PAs as little-endian u64 (0xFFFFFFFFFFFFFFFF for a fault), one per VA; - for "
    "stdout.",
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
        where = "stdout" if to_file == "-" else to_file
        click.echo(f"translated {n} address(es) to {where}: {faults} fault(s)", err=to_file == "-")
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

    ``-`` stands for standard input or output. A file ``dst`` is written under a temporary name
    and renamed at the end, so an error never leaves half an output (or spoils an old one).

    Returns:
        ``(addresses, faults)``.

    Raises:
        DumpError: the input is not a whole number of 8-byte addresses (checked before any
            work for a file, at the end for a pipe), or ``dst`` is the input file itself.
    """
    if src != "-":
        size = Path(src).stat().st_size
        if size % 8:
            raise DumpError(f"{src}: {size} bytes is not a whole number of 8-byte addresses")
        if dst != "-" and Path(dst).exists() and os.path.samefile(src, dst):
            raise DumpError(f"{dst} is the input file: writing it would destroy the addresses")
    translator = Translator(machine.mem, machine.mode, machine.roots)
    if dst == "-":
        return _stream(translator, src, sys.stdout.buffer)
    out = Path(dst)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fout:
            counts = _stream(translator, src, fout)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return counts


def _stream(translator: Translator, src: str, fout: BinaryIO) -> tuple[int, int]:
    """The chunk loop: whole 8-byte words only, whatever sizes the reads return (pipes)."""
    buf = np.empty(STREAM_CHUNK, dtype="<u8")
    raw = buf.data.cast("B")
    results = BatchResult.empty(STREAM_CHUNK)  # filled in place chunk after chunk
    n = faults = carry = 0
    with contextlib.ExitStack() as stack:
        fin: Any = sys.stdin.buffer if src == "-" else stack.enter_context(open(src, "rb"))
        while True:
            got = fin.readinto(raw[carry:]) or 0
            if not got:
                break
            have = carry + got
            words = have // 8
            if words:
                result = translator.translate(buf[:words], out=results.head(words))
                fout.write(result.pa.astype("<u8", copy=False).data)
                n += words
                faults += int(np.count_nonzero(result.fault))
            carry = have - words * 8
            raw[:carry] = raw[words * 8 : have]
    if carry:
        raise DumpError(f"{src}: {n * 8 + carry} bytes is not a whole number of 8-byte addresses")
    return n, faults


COMMANDS = [translate, build_cmd]
