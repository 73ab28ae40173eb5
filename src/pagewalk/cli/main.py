"""The ``pagewalk`` command: a thin layer that parses arguments and calls the library.

Every command prints human output by default and machine output with ``--json``. The exit
status is a contract (``docs/cli.md``, "Exit status"): 0 the command ran, 1 it ran and found
something (a failed boot check, lint findings), 2 bad input (a missing file, an unknown mode or
option, a VA that is not a number, a root outside the image), 70 an internal error (a bug), 130
interrupted. Bad input gets one line on stderr, ``pagewalk: error: ...``, never a traceback.
Commands report findings by returning an int status or raising ``click.exceptions.Exit``; this
module turns both into the process's status. The JSON shapes are a contract other tools script
against. Walk semantics follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged
spec.
"""

from __future__ import annotations

import os
import sys

import click

from pagewalk.errors import PagingError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pagewalk")
def cli() -> None:
    """Bit-exact page tables for every common paging mode, and an inspector for real ones."""


def _register() -> None:
    """Add the commands, each area in its own module."""
    from pagewalk.cli import boot_cmd, image_cmds, inspect_cmds, memmap_cmd, report_cmds

    for module in (image_cmds, inspect_cmds, report_cmds, memmap_cmd, boot_cmd):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and exit with its status (see the module docstring).

    Raises:
        SystemExit: always, with the status: a command's int result or ``Exit`` code, 2 for
            bad input, 70 for an internal error, 130 for an interrupt.
    """
    try:
        status = cli.main(args=argv, prog_name="pagewalk", standalone_mode=False)
    except click.exceptions.Exit as exc:  # raised outside a command (e.g. by --help)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("pagewalk: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "pagewalk"
        click.echo(f"pagewalk: error: {exc.format_message()} (see {where} --help)", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"pagewalk: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except PagingError as exc:
        click.echo(f"pagewalk: error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"pagewalk: error: {exc.strerror or exc}{where}", err=True)
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("PAGEWALK_DEBUG"):
            raise
        click.echo(
            f"pagewalk: internal error: {type(exc).__name__}: {exc} "
            "(set PAGEWALK_DEBUG=1 for a traceback, and please report it)",
            err=True,
        )
        sys.exit(70)
    sys.exit(status if isinstance(status, int) and not isinstance(status, bool) else 0)
