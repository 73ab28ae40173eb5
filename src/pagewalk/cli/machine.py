"""The register options of every command that reads an image, as click options.

The options (``--mode``, ``--root``, ``--ttbr0``/``--ttbr1``, ``--satp``, ``--cr0``/``--cr4``/
``--efer``, ``--tcr``/``--mair``, ``--strict``, ``--cpu``) are those of :func:`pagewalk.open`,
which does the work: this module only parses them (a value wider than its register is a usage
error naming the option) and hands them over. Their meanings follow Intel SDM vol. 3A §2.5 and
ch. 4, Arm ARM D19 and the RISC-V privileged spec (satp). The library's names are re-exported
here for the code and tests that import them from the CLI.
"""

from __future__ import annotations

import importlib
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
    "ImageArgument",
    "IntParam",
    "Machine",
    "Opened",
    "given_cpu",
    "given_live",
    "image_argument",
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


#: how click marks a value that was not given (a sentinel in click 8.2+, None before)
_UNSET: object = getattr(importlib.import_module("click._utils"), "UNSET", None)


def _missing(value: Any) -> bool:
    return value is None or value is _UNSET


#: ``ctx.meta`` keys of the live-machine options
_LIVE_KEYS = {"gdb": "pagewalk.gdb", "qmp": "pagewalk.qmp"}


class ImageArgument(click.Argument):
    """IMAGE, optional when ``--gdb`` or ``--qmp`` names a running machine instead.

    With a live machine the positional values move one place on (``walk --gdb H:P VA``: the
    first value is VA, not IMAGE), and IMAGE becomes ``gdb:HOST:PORT`` or ``qmp:SOCKET``, the
    machine's name in messages; giving both an image and a live machine is a usage error.
    """

    def handle_parse_result(
        self, ctx: click.Context, opts: Any, args: list[str]
    ) -> tuple[Any, list[str]]:
        live = [(k, opts[k]) for k in _LIVE_KEYS if not _missing(opts.get(k))]
        if len(live) > 1:
            raise click.UsageError("give --gdb or --qmp, not both", ctx)
        if live:
            key, where = live[0]
            _shift(ctx, self, opts)
            opts[self.name] = f"{key}:{where}"
        elif _missing(opts.get(self.name)) and self.name is not None:
            raise click.MissingParameter(ctx=ctx, param=self)
        return super().handle_parse_result(ctx, opts, args)


def _shift(ctx: click.Context, image: click.Argument, opts: dict[str, Any]) -> None:
    """Move the positional values after IMAGE one place towards it (see ImageArgument)."""
    after = [p for p in ctx.command.params if isinstance(p, click.Argument)]
    after = after[after.index(image) + 1 :]
    flat: list[Any] = []
    for p in [image, *after]:
        value = opts.get(p.name) if p.name else None
        if _missing(value):
            continue
        flat.extend(value if isinstance(value, (tuple, list)) else [value])
    for p in after:
        if p.nargs == -1:
            opts[p.name] = tuple(flat)
            flat = []
        else:
            opts[p.name] = flat.pop(0) if flat else _UNSET
    if flat:
        raise click.UsageError(
            f"give IMAGE or --gdb/--qmp, not both (extra argument {flat[0]!r})", ctx
        )


def _remember_live(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if param.name is not None:
        ctx.meta[_LIVE_KEYS[param.name]] = value


def image_argument(name: str = "image") -> Callable[[F], F]:
    """IMAGE (a dump) or ``--gdb HOST:PORT`` / ``--qmp SOCKET`` (a running QEMU): exactly one.

    Use it in place of ``@click.argument("image", ...)`` on a command that opens a machine
    with :func:`pagewalk.cli.common.machine_from`.
    """

    def add(func: F) -> F:
        func = click.argument(
            name, cls=ImageArgument, required=False, type=click.Path(dir_okay=False)
        )(func)
        func = click.option(
            "--qmp",
            metavar="SOCKET",
            expose_value=False,
            callback=_remember_live,
            help="Read a running QEMU through its QMP Unix socket instead of IMAGE "
            "(-qmp unix:SOCKET,server=on,wait=off); see docs/live.md.",
        )(func)
        return click.option(
            "--gdb",
            metavar="HOST:PORT",
            expose_value=False,
            callback=_remember_live,
            help="Read a running QEMU through its gdbstub (-gdb tcp::PORT) instead of IMAGE: "
            "memory and registers live; the VM is paused for the command (docs/live.md).",
        )(func)

    return add


def given_live() -> dict[str, str | None]:
    """``{"gdb": ..., "qmp": ...}`` of the running command (None when not given)."""
    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx is not None else {}
    return {k: meta.get(v) for k, v in _LIVE_KEYS.items()}
