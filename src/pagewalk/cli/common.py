"""What every CLI command shares: consoles, opening the machine, listing limits, JSON output.

The register options and their meaning are in :mod:`pagewalk.cli.machine` and
:func:`pagewalk.open` (Intel SDM vol. 3A §2.5, Arm ARM D19, RISC-V privileged spec satp).
A dump is untrusted input, so a listing of more than ``--max-mappings`` ranges
(``PAGEWALK_MAX_MAPPINGS``, default :data:`DEFAULT_MAX_MAPPINGS`, 0 for none) is refused before
anything is printed, and a table partly outside the image gets a ``pagewalk: warning:`` line.
JSON prints numbers; ``--hex`` prints addresses, sizes and raw entries as ``"0x..."`` strings
(:func:`hexed`), as ``memmap --json`` prints its bases.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pagewalk.cli.machine import given_cpu, given_live
from pagewalk.enumerate_runs import PartialTable
from pagewalk.errors import ConfigError, hx
from pagewalk.machine import OPTIONS, Machine, load_live, load_machine

if TYPE_CHECKING:
    from rich.console import Console

#: ranges one listing may describe unless --max-mappings or PAGEWALK_MAX_MAPPINGS say otherwise
DEFAULT_MAX_MAPPINGS = 1 << 22
MAX_MAPPINGS_ENV = "PAGEWALK_MAX_MAPPINGS"
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def console() -> Console:
    """A console that never truncates addresses: wide when piped, the terminal's width else.
    (rich is imported here, by the commands that draw, not by those that print JSON.)"""
    from rich.console import Console

    probe = Console()
    width = None if probe.is_terminal else 200
    return Console(highlight=False, soft_wrap=False, width=width)


def machine_from(image: str, kwargs: dict[str, Any], *, guest_physical: bool = False) -> Machine:
    """Pop the register options from ``kwargs`` and open the machine (``--cpu``, when given,
    must name a CPU of an ELF core); with ``--gdb``/``--qmp``, the running QEMU, let go
    (resumed if it was running) when the command ends, however it ends. ``guest_physical``:
    the roots are a guest's, behind a stage 2, so they need not lie in the image."""
    opts = {k: kwargs.pop(k) for k in OPTIONS}
    live = given_live()
    if live["gdb"] is None and live["qmp"] is None:
        return load_machine(image, opts, cpu=given_cpu(), guest_physical=guest_physical)
    if given_cpu() is not None:
        raise click.UsageError("--cpu applies only to ELF cores, not to --gdb/--qmp")
    machine = load_live(opts, gdb=live["gdb"], qmp=live["qmp"], guest_physical=guest_physical)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(machine.close)
    return machine


#: JSON keys whose numbers are addresses, sizes or raw entries (``"0x..."`` under ``--hex``)
HEX_KEYS = frozenset(
    {"va", "pa", "size", "page_size", "page_va", "entry_pa", "raw", "pa_a", "pa_b", "missing",
     "added", "removed", "changed", "bytes", "table_bytes", "leaf_size", "promote_to", "end",
     "gpa"}
)  # fmt: skip


def hexed(data: Any, key: str | None = None, keys: frozenset[str] = HEX_KEYS) -> Any:
    """``data`` with the numbers under ``keys`` (default :data:`HEX_KEYS`; at any depth, in
    lists too) as ``"0x..."`` strings; booleans, null and other keys as they are."""
    if isinstance(data, dict):
        return {k: hexed(v, k, keys) for k, v in data.items()}
    if isinstance(data, list):
        return [hexed(v, key, keys) for v in data]
    if key in keys and isinstance(data, int) and not isinstance(data, bool):
        return hx(data)
    return data


def emit_json(data: Any, *, hex_numbers: bool = False) -> None:
    """Print JSON: a list on one line, an object indented (addresses as hex strings with
    ``hex_numbers``, see :func:`hexed`)."""
    data = hexed(data) if hex_numbers else data
    click.echo(json.dumps(data, indent=None if isinstance(data, list) else 2))


def write_json_list(
    items: Iterable[Any], *, indent: int | None = None, end: str = "\n", step: int = 1024
) -> int:
    """Write a JSON list to stdout one item at a time; returns how many items were written.

    Without ``indent`` the text is what ``json.dumps(list)`` gives; with it, each item (on one
    line) starts a line indented by that many spaces, and the closing bracket two less.
    """
    if indent is None:
        head, sep, tail = "[", ", ", "]"
    else:
        head, sep = "[\n" + " " * indent, ",\n" + " " * indent
        tail = "\n" + " " * max(indent - 2, 0) + "]"
    out = sys.stdout
    parts: list[str] = []
    n = 0
    for item in items:
        parts.append((sep if n else head) + json.dumps(item))
        n += 1
        if len(parts) >= step:
            out.write("".join(parts))
            parts.clear()
    parts.append((tail if n else "[]") + end)
    out.write("".join(parts))
    return n


def hex_option(func: F) -> F:
    """``--hex``: addresses and sizes as ``"0x..."`` strings in the JSON."""
    return click.option(
        "--hex",
        "hex_numbers",
        is_flag=True,
        help='With --json: addresses, sizes and raw entries as "0x..." strings, not numbers.',
    )(func)


def check_hex(hex_numbers: bool, as_json: bool, what: str = "--json") -> None:
    """Refuse ``--hex`` without JSON (exit 2): it changes only JSON."""
    if hex_numbers and not as_json:
        raise click.UsageError(f"--hex applies only to {what}")


def max_mappings_option(func: F) -> F:
    """``--max-mappings N``: the limit on the ranges one listing may describe."""
    return click.option(
        "--max-mappings",
        type=click.IntRange(min=0),
        metavar="N",
        help=f"Refuse (exit 2, nothing printed) a listing of more than N ranges, counted before "
        f"merging across tables [default: ${MAX_MAPPINGS_ENV} or {DEFAULT_MAX_MAPPINGS}; "
        "0: no limit].",
    )(func)


def listing_limit(value: int | None) -> int | None:
    """The limit from the option, else the environment, else the default; None for none."""
    if value is None:
        text = os.environ.get(MAX_MAPPINGS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_MAPPINGS
        try:
            value = int(text.replace("_", ""), 0)
        except ValueError:
            value = -1
        if value < 0:
            raise ConfigError(
                f"{MAX_MAPPINGS_ENV}={text!r} is not a whole number of ranges (0: no limit)"
            )
    return value or None


def primed(rows: Iterator[T]) -> Iterator[T]:
    """Run ``rows`` to its first item now, so that a limit or input error comes before any
    output."""
    for first in rows:
        return itertools.chain((first,), rows)
    return iter(())


def warn_partial(parts: Iterable[PartialTable]) -> None:
    """One stderr warning per table partly outside the image."""
    for part in parts:
        click.echo(f"pagewalk: warning: {part.message()}", err=True)
