"""The register options of every command that reads an image, as click options.

The options (``--mode``, ``--root``, ``--ttbr0``/``--ttbr1``, ``--satp``, ``--cr0``/``--cr4``/
``--efer``, ``--tcr``/``--mair``, ``--strict``, ``--cpu``) are those of :func:`pagewalk.open`,
which does the work: this module only parses them (a value wider than its register is a usage
error naming the option) and hands them over. Their meanings follow Intel SDM vol. 3A §2.5 and
ch. 4, Arm ARM D19 and the RISC-V privileged spec (satp). The library's names are re-exported
here for the code and tests that import them from the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from pagewalk.errors import hx
from pagewalk.formats import MODE_NAMES
from pagewalk.image import shown
from pagewalk.machine import (
    REGISTER_BITS,
    Machine,
    Opened,
    load_machine,
    open_image,
    parse_int,
    read_sidecar,
    sidecar_path,
)

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "INT",
    "REGISTER_BITS",
    "IntParam",
    "Machine",
    "Opened",
    "given_cpu",
    "load_machine",
    "machine_options",
    "open_image",
    "parse_int",
    "read_sidecar",
    "sidecar_path",
]


class IntParam(click.ParamType[int]):
    """A click parameter for hex or decimal integers that fit in ``bits`` bits (unsigned), so
    a value wider than its register is a usage error naming the option."""

    name = "int"

    def __init__(self, bits: int = REGISTER_BITS) -> None:
        self.bits = bits

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).replace("_", ""), 0)
            except ValueError:
                self.fail(
                    f"{shown(value)} is not a number (use hex like 0x1000 or decimal)", param, ctx
                )
        if not 0 <= number < 1 << self.bits:
            self.fail(
                f"{shown(number)} does not fit in {self.bits} bits (0..{hx((1 << self.bits) - 1)})",
                param,
                ctx,
            )
        return number


INT = IntParam()


def machine_options(func: F) -> F:
    """The register options shared by every command that reads an image."""
    options = [
        click.option("--mode", type=click.Choice(MODE_NAMES, case_sensitive=False)),
        click.option(
            "--root", type=INT, help="CR3 value, or the root table PA (satp's root); not AArch64."
        ),
        click.option("--ttbr0", type=INT, help="TTBR0_EL1 (AArch64 only)."),
        click.option("--ttbr1", type=INT, help="TTBR1_EL1 (AArch64 only)."),
        click.option(
            "--tcr", type=INT, help="TCR_EL1 (AArch64 only; default 4K granules, 48-bit)."
        ),
        click.option("--mair", type=INT, help="MAIR_EL1 (AArch64 only)."),
        click.option(
            "--satp",
            type=INT,
            help="satp as written (RISC-V only): sets the mode (MODE) and root (PPN); "
            "default for a RISC-V core: Linux's swapper_pg_dir, found in the dump.",
        ),
        click.option("--cr0", type=INT, help="CR0 (x86 only; default PG|WP|PE)."),
        click.option("--cr4", type=INT, help="CR4 (x86 only; default PSE, plus PAE/LA57 by mode)."),
        click.option("--efer", type=INT, help="IA32_EFER (x86 only; default LME|NXE)."),
        click.option("--maxphyaddr", type=INT, help="MAXPHYADDR (x86 only; default 52)."),
        click.option(
            "--strict",
            is_flag=True,
            default=None,
            help="x86 only: PAE PDPTE bits 2:1 and 8:5 are reserved, as the manual says "
            "(default: accepted, as QEMU's walker does, which sets bit 5 there).",
        ),
        click.option(
            "--cpu",
            type=click.IntRange(min=0),
            expose_value=False,
            callback=_remember_cpu,
            help="Which CPU's registers to use from an ELF core (default 0; cores only).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _remember_cpu(ctx: click.Context, _param: click.Parameter, value: int | None) -> None:
    ctx.meta["pagewalk.cpu"] = value


def given_cpu() -> int | None:
    """The ``--cpu`` of the running command, or None when it was not given."""
    ctx = click.get_current_context(silent=True)
    value = ctx.meta.get("pagewalk.cpu") if ctx is not None else None
    return int(value) if value is not None else None
