"""The ``pagewalk`` command: a thin layer that parses arguments and calls the library.

Every command prints human output by default and machine output with ``--json``. Bad input
(a missing file, an unknown mode, a VA that is not a number, a root outside the image) gets one
line on stderr, ``pagewalk: error: ...``, and exit status 2, never a traceback. The JSON shapes
are a contract other tools script against; see ``docs/cli.md``. Walk semantics follow Intel SDM
vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec.
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
    import importlib

    for name in ("image_cmds", "inspect_cmds", "memmap_cmd", "mmu_cmds", "boot_cmd"):
        try:
            module = importlib.import_module(f"pagewalk.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"pagewalk.cli.{name}":
                raise
            continue
        commands = getattr(module, "COMMANDS", None)
        if commands is None:  # a module with one command named like the module
            commands = [getattr(module, name.removesuffix("_cmd"))]
        for command in commands:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning our errors into one line and exit status 2."""
    try:
        cli.main(args=argv, prog_name="pagewalk", standalone_mode=False)
    except click.exceptions.Exit as exc:
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
        click.echo(f"pagewalk: error: {exc.strerror or exc}: {exc.filename or ''}", err=True)
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
