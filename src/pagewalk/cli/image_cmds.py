"""Commands on images: ``translate`` (every step of a walk, or a file of addresses streamed
through the batch walker) and ``build`` (an image from a spec). Their output files go through
:mod:`pagewalk.safeio`; the batch path refuses the options it cannot honour (``--access``,
``--user``, ``--json``) instead of ignoring them.

Walk semantics follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec; the JSON
shape is the contract in ``docs/cli.md``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Protocol

import click
import numpy as np

from pagewalk.batch import BatchResult, Translator
from pagewalk.cli.common import check_hex, console, emit_json, hex_option
from pagewalk.cli.machine import image_argument, machine_options
from pagewalk.cli.nested_opts import NESTED_OPTIONS, nested_options, open_nested
from pagewalk.cli.render import print_walk
from pagewalk.errors import DumpError, PageFault
from pagewalk.image import build, load_spec, save
from pagewalk.machine import Machine, parse_int, sidecar_path
from pagewalk.mmu import check_access
from pagewalk.safeio import Source, check_stream, check_target, replacing
from pagewalk.walk import Walk

#: addresses per chunk when streaming (512 KiB in, 512 KiB out: the buffers stay in the CPU's
#: caches, from the read through the walk to the write)
STREAM_CHUNK = 1 << 16


@click.command()
@image_argument()
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
    "stdout. Never over an input, a link or a device; over a file only with --force.",
)
@click.option(
    "--access",
    type=click.Choice(["read", "write", "exec"]),
    help="Check this access with the full permission rules (faults carry the CPU's code).",
)
@click.option("--user", is_flag=True, help="Check the access at user level (CPL3, EL0, U).")
@click.option("--force", is_flag=True, help="Let --to-file replace an existing file.")
@hex_option
@nested_options
@click.argument("vas", nargs=-1)
def translate(
    image: str,
    vas: tuple[str, ...],
    as_json: bool,
    from_file: str | None,
    to_file: str | None,
    access: str | None,
    user: bool,
    force: bool,
    hex_numbers: bool,
    **kwargs: Any,
) -> None:
    """Translate each VA through IMAGE's tables and show every step of the walk.

    With --from-file/--to-file it translates a file of addresses in chunks instead, so any
    number of addresses fits in bounded memory. With a stage-2 option (--ept, --vttbr/--vtcr,
    --hgatp, --ncr3) each VA is a guest's, walked through both stages.
    """
    if (from_file is None) != (to_file is None):
        raise click.UsageError("--from-file and --to-file go together")
    if from_file is None and not vas:
        raise click.UsageError("give VAs, or --from-file ADDRS --to-file OUT")
    if from_file is not None and vas:
        raise click.UsageError("give VAs or --from-file, not both")
    check_hex(hex_numbers, as_json)
    if from_file is not None:
        _batch_options(as_json=as_json, access=access, user=user)
    elif force:
        raise click.UsageError("--force only applies to --to-file")
    if from_file is not None and to_file == "-":
        check_stream(1, "standard output", _inputs(image, from_file))
    elif from_file is not None and to_file is not None:
        check_target(to_file, inputs=_inputs(image, from_file), force=force)  # before any work
    if from_file is not None and any(kwargs.get(k) is not None for k in NESTED_OPTIONS):
        raise click.UsageError(
            "a stage 2 cannot be used with --from-file/--to-file: the batch walker walks one "
            "stage; give the VAs as arguments"
        )
    machine, nested = open_nested(image, kwargs)
    if nested is not None:
        from pagewalk.cli.nested_render import nested_walks

        vas_ = [parse_int(v, "VA") for v in vas]
        nested_walks(nested, vas_, as_json, hex_numbers, access=access or "read", user=user)
        return
    if from_file is not None and to_file is not None:
        n, faults = stream_translate(machine, from_file, to_file, force=force)
        where = "stdout" if to_file == "-" else to_file
        click.echo(f"translated {n} address(es) to {where}: {faults} fault(s)", err=to_file == "-")
        return
    addresses = [parse_int(v, "VA") for v in vas]
    results = [machine.walk(va) for va in addresses]
    checks = None
    if access is not None or user:
        kind = access or "read"
        checks = [
            check_access(machine.mem, machine.mode, machine.roots, va, kind, user)
            for va in addresses
        ]
    if as_json:
        rows = [_access_json(r, c) for r, c in zip(results, checks or results, strict=True)]
        emit_json(rows, hex_numbers=hex_numbers)
        return
    out = console()
    out.print(machine.describe(), style="dim")
    for i, result in enumerate(results):
        print_walk(out, result, machine.mode)
        if checks is not None:
            out.print(_access_text(checks[i], access or "read", user))


def _batch_options(*, as_json: bool, access: str | None, user: bool) -> None:
    """Refuse the options the batch path cannot honour, rather than ignore them."""
    if access is not None or user:
        given = " and ".join(o for o, on in (("--access", access), ("--user", user)) if on)
        raise click.UsageError(
            f"{given} cannot be used with --from-file/--to-file: the batch walker translates "
            "without checking permissions; give the VAs as arguments to check an access"
        )
    if as_json:
        raise click.UsageError(
            "--json cannot be used with --from-file/--to-file: the output is binary, one "
            "little-endian u64 PA per VA; give the VAs as arguments for JSON"
        )


def _inputs(image: str, from_file: str) -> list[Source]:
    """What a translation reads: the image, its register file, and the addresses."""
    return [image, sidecar_path(image), 0 if from_file == "-" else from_file]


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
@click.option("--force", is_flag=True, help="Replace an existing OUT and OUT.json.")
def build_cmd(spec: str, out: str, force: bool) -> None:
    """Write an image (and OUT.json with its registers) from a TOML spec."""
    for target in (out, sidecar_path(out)):
        check_target(target, inputs=[spec], force=force)  # before any work
    built = build(load_spec(spec), source=spec)
    side = save(out, built.mem, built.mode, built.space.roots, overwrite=force, inputs=[spec])
    names = built.mode.root_names
    roots = ", ".join(f"{n}={r:#x}" for n, r in zip(names, built.space.roots, strict=False))
    click.echo(f"wrote {out} ({built.mem.end:#x} bytes) and {side}: {built.mode.name}, {roots}")


def stream_translate(
    machine: Machine, src: str, dst: str, *, force: bool = False
) -> tuple[int, int]:
    """Translate the u64 VAs in ``src`` into u64 PAs in ``dst``, a chunk at a time.

    ``-`` stands for standard input or output. A file ``dst`` is written through
    :func:`pagewalk.safeio.replacing` (a temporary file renamed at the end), so an error or a
    signal never leaves half an output, or spoils an old one. A fault is written as
    ``0xFFFFFFFFFFFFFFFF``.

    Args:
        force: let ``dst`` replace an existing file (never an input, a link or a device).

    Returns:
        ``(addresses, faults)``.

    Raises:
        DumpError: the input is not a whole number of 8-byte addresses (checked before any
            work for a file, at the end for a pipe).
        OutputError: ``dst`` may not be written (an input of the run: the image, its register
            file or the addresses; a link, a device, a FIFO; an existing file without
            ``force``), or a write fails.
    """
    if src != "-":
        size = Path(src).stat().st_size
        if size % 8:
            raise DumpError(f"{src}: {size} bytes is not a whole number of 8-byte addresses")
    # nothing writes the image while it streams: the walker may keep its table cache
    translator = Translator(machine.mem, machine.mode, machine.roots, static=True)
    if dst == "-":
        return _stream(translator, src, sys.stdout.buffer)
    with replacing([dst], inputs=_inputs(machine.source, src), force=force) as (out,):
        return _stream(translator, src, out)


class _Sink(Protocol):
    def write(self, data: memoryview, /) -> int | None: ...


def _stream(translator: Translator, src: str, fout: _Sink) -> tuple[int, int]:
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
