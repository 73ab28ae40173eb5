"""What every CLI command shares: consoles, machine options, JSON output.

The register options and their meaning are in :mod:`pagewalk.cli.machine` (Intel SDM vol. 3A
§2.5, Arm ARM D19, RISC-V privileged spec satp).
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console

from pagewalk.cli.machine import Machine, given_cpu, load_machine

_MACHINE_KEYS = (
    "mode", "root", "ttbr0", "ttbr1", "tcr", "mair", "cr0", "cr4", "efer", "maxphyaddr",
    "strict", "satp",
)  # fmt: skip


def console() -> Console:
    """A console that never truncates addresses: wide when piped, the terminal's width else."""
    probe = Console()
    width = None if probe.is_terminal else 200
    return Console(highlight=False, soft_wrap=False, width=width)


def machine_from(image: str, kwargs: dict[str, Any]) -> Machine:
    """Pop the register options from ``kwargs`` and open the machine (``--cpu``, when given,
    must name a CPU of an ELF core)."""
    return load_machine(image, {k: kwargs.pop(k) for k in _MACHINE_KEYS}, cpu=given_cpu())


def emit_json(data: Any) -> None:
    """Print JSON: a list on one line, an object indented."""
    click.echo(json.dumps(data, indent=None if isinstance(data, list) else 2))
