"""``pagewalk search``: find bytes, strings, integers or pointers in mapped virtual memory.

The work is :func:`pagewalk.search.search` over a machine opened like every command's
(:func:`pagewalk.open`, or a running QEMU with ``--gdb``/``--qmp``): the mappings are walked
once (Intel SDM vol. 3A ch. 4, Arm ARM D8, RISC-V privileged spec), each mapped range is read
by PA in large blocks and searched as part of its virtually contiguous stretch, and every VA
of a match is a hit (a frame mapped twice gives two hits with the same PA). Hits stream to
stdout, one per line (``VA PA perm page-size``) or as one JSON list; the machine and a summary
go to stderr. Like grep, it exits 0 when something was found, 1 when nothing was, 2 on bad
input.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from typing import Any

import click

from pagewalk.cli import writers
from pagewalk.cli.common import check_hex, hexed, machine_from, write_json_list
from pagewalk.cli.machine import INT, image_argument, machine_options
from pagewalk.enumerate_filter import Filter
from pagewalk.errors import ConfigError, hx
from pagewalk.inspect.filters import parse_perm
from pagewalk.machine import check_window, parse_int
from pagewalk.search import Hit, Pattern, SearchStats, search


def _window(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    if not sep:
        raise ConfigError(f"--pointer-to {text!r}: give a window A:B (e.g. 0xffff888000000000:"
                          "0xffffc88000000000)")  # fmt: skip
    return parse_int(lo.strip(), "--pointer-to A"), parse_int(hi.strip(), "--pointer-to B")


def _pattern(given: dict[str, Any], align: int | None, word: int) -> Pattern:
    chosen = {k: v for k, v in given.items() if v is not None}
    if len(chosen) != 1:
        names = ", ".join(f"--{k.replace('_', '-')}" for k in given)
        raise click.UsageError(f"give exactly one of {names}")
    ((kind, value),) = chosen.items()
    if kind == "pointer_to":
        if align not in (None, word):
            raise click.UsageError(f"--pointer-to searches aligned {word}-byte words: no --align")
        return Pattern.pointer(*_window(value), word)
    step = align or 1
    if kind == "bytes":
        return Pattern.hex_bytes(value, step)
    if kind == "string":
        return Pattern.string(value, step)
    return Pattern.integer(value, 8 if kind == "u64" else 4, step)


@click.command(name="search")
@image_argument()
@machine_options
@click.option("--bytes", "bytes_", metavar="HEX", help="Bytes in hex: 'de ad be ef'.")
@click.option("--string", metavar="S", help="A UTF-8 string (no terminator).")
@click.option("--u64", type=INT, metavar="V", help="A 64-bit little-endian value.")
@click.option("--u32", type=INT, metavar="V", help="A 32-bit little-endian value.")
@click.option(
    "--pointer-to",
    metavar="A:B",
    help="Aligned pointers (8-byte; 4-byte in 32-bit modes) with A <= value < B.",
)
@click.option("--align", type=click.IntRange(min=1), help="Only hits at VAs that are multiples.")
@click.option("--perm", help="Only mappings with these permissions: w,x,u,k,!x,ro ...")
@click.option("--range", "va_range", type=(INT, INT), help="Only matches inside VAs [A, B).")
@click.option("--max", "max_hits", type=click.IntRange(min=1), help="Stop after N hits.")
@click.option("--json", "as_json", is_flag=True, help="The hits as one JSON list.")
@click.option("--hex", "hex_numbers", is_flag=True, help='With --json: addresses as "0x...".')
def search_cmd(
    image: str | None,
    bytes_: str | None,
    string: str | None,
    u64: int | None,
    u32: int | None,
    pointer_to: str | None,
    align: int | None,
    perm: str | None,
    va_range: tuple[int, int] | None,
    max_hits: int | None,
    as_json: bool,
    hex_numbers: bool,
    **kwargs: Any,
) -> int:
    """Search mapped virtual memory for bytes, a string, an integer or pointers into a range.

    Every VA that maps a match is listed (aliases too), with its PA and the mapping's
    permissions and page size. Exits 0 when something is found, 1 when nothing is.
    """
    check_hex(hex_numbers, as_json)
    machine = machine_from(image or "", kwargs)
    word = 4 if machine.mode.facts.va_bits <= 32 else 8
    given = {"bytes": bytes_, "string": string, "u64": u64, "u32": u32, "pointer_to": pointer_to}
    pattern = _pattern(given, align, word)
    va_range = check_window(va_range, "--range", "VA")
    filt = Filter(*parse_perm(perm)) if perm else None
    stats = SearchStats()
    hits: Iterator[Hit] = search(machine, pattern, va_range=va_range, filt=filt, stats=stats)
    if max_hits is not None:
        hits = itertools.islice(hits, max_hits)
    click.echo(f"{machine.describe()}: searching for {pattern.text}", err=True)
    if as_json:
        items = (h.to_json() for h in hits)
        count = write_json_list((hexed(i) for i in items) if hex_numbers else items)
    else:
        count = _write_lines(hits, 16 if machine.mode.entry_size == 8 else 8)
    note = f", {hx(stats.skipped)} mapped bytes outside memory skipped" if stats.skipped else ""
    click.echo(
        f"{count} hit(s){' (--max reached)' if count == max_hits else ''}; read "
        f"{hx(stats.bytes_read)} bytes of {stats.ranges} mapped range(s){note}",
        err=True,
    )
    return 0 if count else 1


def _write_lines(hits: Iterator[Hit], digits: int) -> int:
    out = sys.stdout
    count = 0
    lines: list[str] = []
    for h in hits:
        lines.append(
            f"{h.va:#0{digits + 2}x}  {h.pa:#018x}  {h.perm.letters()}  "
            f"{writers.size_text(h.page_size):<4}\n"
        )
        count += 1
        if len(lines) >= 256:
            out.write("".join(lines))
            lines.clear()
    out.write("".join(lines))
    out.flush()
    return count


COMMANDS = [search_cmd]
