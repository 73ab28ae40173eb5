"""The ``pagewalk`` command: a thin layer that parses arguments and calls the library.

Every command prints human output by default and machine output with ``--json``. The exit
status is a contract (``docs/cli.md``, "Exit status"): 0 the command ran, 1 it ran and found
something (a failed boot check, lint findings), 2 bad input (a missing file, an unknown mode or
option, a VA that is not a number, a root outside the image), 70 an internal error (a bug), 130
interrupted. Bad input gets one line on stderr, ``pagewalk: error: ...``, never a traceback.
Commands report findings by returning an int status or raising ``click.exceptions.Exit``; this
module turns both into the process's status. The JSON shapes are a contract other tools script
against. Start-up counts too: a command's module is imported only when that command runs
(:class:`LazyGroup`), so ``maps --json`` does not pay for ``boot``'s kernel model or the other
commands. Walk semantics follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged
spec.
"""

from __future__ import annotations

import importlib
import os
import sys

# The CLI does no linear algebra: starting OpenBLAS's thread pool when numpy loads cost about
# 60 ms of every command's start-up here (and spun threads during walks). Set before any import
# of numpy; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click

from pagewalk.errors import PagingError

#: every command: its name, where it lives (``module:function``, imported only when the command
#: runs or shows its own help) and the first paragraph of its help, for ``pagewalk --help``
#: (``tests/cli/test_startup.py`` checks these against the commands themselves)
COMMANDS: dict[str, tuple[str, str]] = {
    "boot": (
        "pagewalk.cli.boot_cmd:boot",
        "Boot a seed kernel's memory manager on a simulated machine and show what it built.",
    ),
    "build": (
        "pagewalk.cli.image_cmds:build_cmd",
        "Write an image (and OUT.json with its registers) from a TOML spec.",
    ),
    "diff": (
        "pagewalk.cli.report_cmds:diff_cmd",
        "Diff two address spaces: two roots of one dump (--root-b), or two dumps.",
    ),
    "find-roots": (
        "pagewalk.cli.report_cmds:find_roots_cmd",
        "Scan IMAGE for plausible top-level tables and rank them (for dumps without registers).",
    ),
    "lint": (
        "pagewalk.cli.report_cmds:lint",
        "Find risky permissions and malformed entries or trees; each finding names the entry.",
    ),
    "maps": (
        "pagewalk.cli.inspect_cmds:maps",
        "List every mapping of IMAGE, merged into ranges with effective permissions.",
    ),
    "memmap": (
        "pagewalk.cli.memmap_cmd:memmap",
        "Read the memory map FILE and print it as a table with totals.",
    ),
    "p2v": ("pagewalk.cli.inspect_cmds:p2v", "Every virtual address that maps each PA."),
    "plot": (
        "pagewalk.cli.plot_cmd:plot",
        "Draw IMAGE's page sizes, table memory or TLB hit rates as a PNG or SVG (matplotlib).",
    ),
    "search": (
        "pagewalk.cli.search_cmd:search_cmd",
        "Search mapped virtual memory for bytes, a string, an integer or pointers into a range.",
    ),
    "stats": (
        "pagewalk.cli.report_cmds:stats",
        "Tables per level and their bytes, leaves per size, and what huge pages would save.",
    ),
    "translate": (
        "pagewalk.cli.image_cmds:translate",
        "Translate each VA through IMAGE's tables and show every step of the walk.",
    ),
    "view": (
        "pagewalk.cli.view_cmd:view",
        "Write IMAGE's address space as an interactive HTML page: map, walks, tables, lint.",
    ),
    "walk": (
        "pagewalk.cli.inspect_cmds:walk_cmd",
        "Show every level of the walk of VA: entry PA, raw value, fields, permission so far.",
    ),
}


def load_command(name: str) -> click.Command:
    """Import the module of command ``name`` and return the command (KeyError if unknown)."""
    module, _, attr = COMMANDS[name][0].partition(":")
    command = getattr(importlib.import_module(module), attr)
    assert isinstance(command, click.Command), COMMANDS[name][0]
    return command


class LazyGroup(click.Group):
    """A group whose commands are imported when one runs, so a command pays only for its own
    imports; ``--help`` lists them all from :data:`COMMANDS` without importing any."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load_command(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        stand_ins = click.Group(
            commands=[
                self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])
                for name in self.list_commands(ctx)
            ]
        )
        stand_ins.format_commands(ctx, formatter)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pagewalk")
def cli() -> None:
    """Bit-exact page tables for every common paging mode, and an inspector for real ones."""


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
