"""What every CLI command shares: consoles, opening the machine, listing limits, JSON output.

The register options and their meaning are in :mod:`pagewalk.cli.machine` and
:func:`pagewalk.open` (Intel SDM vol. 3A §2.5, Arm ARM D19, RISC-V privileged spec satp).
A dump is untrusted input, so a listing of more than ``--max-mappings`` ranges
(``PAGEWALK_MAX_MAPPINGS``, default :data:`DEFAULT_MAX_MAPPINGS`, 0 for none) is refused before
anything is printed, and a table partly outside the image gets a ``pagewalk: warning:`` line.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import click
from rich.console import Console

from pagewalk.cli.machine import given_cpu
from pagewalk.enumerate_runs import PartialTable
from pagewalk.errors import ConfigError
from pagewalk.machine import OPTIONS, Machine, load_machine

#: ranges one listing may describe unless --max-mappings or PAGEWALK_MAX_MAPPINGS say otherwise
DEFAULT_MAX_MAPPINGS = 1 << 22
MAX_MAPPINGS_ENV = "PAGEWALK_MAX_MAPPINGS"
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def console() -> Console:
    """A console that never truncates addresses: wide when piped, the terminal's width else."""
    probe = Console()
    width = None if probe.is_terminal else 200
    return Console(highlight=False, soft_wrap=False, width=width)


def machine_from(image: str, kwargs: dict[str, Any]) -> Machine:
    """Pop the register options from ``kwargs`` and open the machine (``--cpu``, when given,
    must name a CPU of an ELF core)."""
    return load_machine(image, {k: kwargs.pop(k) for k in OPTIONS}, cpu=given_cpu())


def emit_json(data: Any) -> None:
    """Print JSON: a list on one line, an object indented."""
    click.echo(json.dumps(data, indent=None if isinstance(data, list) else 2))


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
