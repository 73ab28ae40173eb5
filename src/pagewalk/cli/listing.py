"""Where a listing goes: stdout in large binary chunks, a progress bar, and the ``maps`` table.

A listing is written as the enumeration produces it, a batch of lines at a time
(:mod:`pagewalk.cli.writers`). While it runs, a bar on a terminal's stderr shows the VA covered
(Intel SDM vol. 3A ch. 4, Arm ARM D8, RISC-V privileged spec: the halves of the address space);
it lasts until the last line is written, so it never vanishes before the slow part.

The table view prints a header (the machine, then the column names, drawn by rich: coloured on
a terminal) and then the rows in bulk in the same fixed layout; with a layout
(:mod:`pagewalk.inspect.regions`) its lines say how it was found and a last ``region`` column
names each range's region. To a pipe it is plain text. On a
terminal, the rows are gathered until they fill the screen: a listing that fits is printed as
it is, a longer one goes through the pager (``$PAGER``, else ``less``, with colours), which reads
the rest of the listing as the enumeration goes.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from pagewalk.cli.writers import table_lines
from pagewalk.formats.base import Perm
from pagewalk.textcols import Chunk

F = TypeVar("F", bound=Callable[..., Any])
#: every ``--layout`` value (:data:`pagewalk.inspect.regions.CHOICES`, kept here so that
#: ``--help`` does not import the layouts)
LAYOUTS = ("auto", "linux", "powernex", "redox", "comus", "sel4", "atos", "none")


def layout_option(func: F) -> F:
    """``--layout auto|linux|NAME|none``: which layout names the regions."""
    return click.option(
        "--layout",
        "layout_name",
        type=click.Choice(LAYOUTS, case_sensitive=False),
        default="auto",
        show_default=True,
        help="Name each range's region by this kernel layout (auto: from the core's "
        "VMCOREINFO, the image's boot profile, or the tables; none: no region column).",
    )(func)


if TYPE_CHECKING:  # rich is imported where something is drawn, never for JSON to a pipe
    from rich.console import Console
    from rich.progress import Progress

    from pagewalk.columns import RunColumns
    from pagewalk.enumerate_runs import EnumStats
    from pagewalk.inspect.regions import Layout
    from pagewalk.machine import Machine


class _TextSink:
    """A binary stream over a text stream that has none (a test's ``StringIO``)."""

    def __init__(self, text: IO[str]) -> None:
        self.text = text

    def write(self, data: Chunk) -> int:
        self.text.write(str(data, "utf-8"))
        return len(data)

    def flush(self) -> None:
        self.text.flush()


def binary_stdout() -> IO[bytes]:
    """stdout for bytes, after what was written to it as text."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    return buffer if buffer is not None else _TextSink(sys.stdout)  # type: ignore[return-value]


def write_out(chunks: Iterable[Chunk]) -> None:
    """Write the chunks to stdout as they come."""
    out = binary_stdout()
    for chunk in chunks:
        out.write(chunk)
    out.flush()


class Bar:
    """A bar on stderr showing the VA the batches have reached, while they are used.

    Args:
        show: draw it; default: when stderr is a terminal and stdout is not (a listing that
            streams to the terminal shows itself).
    """

    def __init__(self, machine: Machine, show: bool | None = None) -> None:
        if show is None:
            show = sys.stderr.isatty() and not sys.stdout.isatty()
        self.halves = machine.mode.halves
        self.bar: Progress | None = None
        if show:
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("walking tables", total=len(self.halves))
            self.bar.start()

    def track(self, batches: Iterable[RunColumns]) -> Iterator[RunColumns]:
        """The batches, moving the bar past each."""
        for b in batches:
            if self.bar is not None and len(b):
                va = int(b.va[-1])
                for i, h in enumerate(self.halves):
                    if h.contains(va):
                        done = i + (va - h.va_start) / (h.va_end - h.va_start)
                        self.bar.update(self.task, completed=done)
            yield b

    def stop(self) -> None:
        """Remove the bar (again: nothing)."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def write_listing(
    machine: Machine,
    batches: Iterable[RunColumns],
    writer: Callable[[Iterable[RunColumns]], Iterable[Chunk]],
) -> None:
    """``writer``'s text of the batches to stdout, under a :class:`Bar`."""
    bar = Bar(machine)
    try:
        write_out(writer(bar.track(batches)))
    finally:
        bar.stop()


def summary(count: int, stats: EnumStats) -> str:
    """The line after a ``maps`` table: ranges, leaves, tables, and what was skipped."""
    notes = []
    if stats.memo_hits:
        notes.append(f"{stats.memo_hits} identical subtree(s) memoised, not walked again")
    if stats.pruned:
        notes.append(f"{stats.pruned} subtree(s) pruned by the filters")
    if stats.faulty_entries:
        notes.append(f"{stats.faulty_entries} faulting entr(ies) skipped (see lint)")
    extra = "".join(f", {n}" for n in notes)
    return f"{count} range(s) from {stats.leaves} leaves in {stats.tables} tables{extra}"


def _printed(console: Console, *items: object, style: str | None = None) -> str:
    with console.capture() as cap:
        for item in items:
            console.print(item, style=style)
    return cap.get()


def show_table(
    machine: Machine,
    batches: Iterable[RunColumns],
    stats: EnumStats,
    console: Console,
    layout: Layout | None = None,
) -> int:
    """The ``maps`` table of the batches, then the summary line; returns the rows listed."""
    from pagewalk.cli.render import mappings_table

    mode = machine.mode
    why = [*machine.why, *(layout.why if layout is not None else ())]
    head = _printed(console, machine.describe(), *(f"  {w}" for w in why), style="dim")
    console.width = max(console.width, 200)  # the header as wide as the rows, never squeezed
    columns = _printed(console, mappings_table([], mode, fixed=True))
    head += columns if layout is None else _with_region(columns)
    count = 0

    def counted(items: Iterable[RunColumns]) -> Iterator[RunColumns]:
        nonlocal count
        for b in items:
            count += len(b)
            yield b

    def tail() -> str:
        return _printed(console, summary(count, stats), style="dim")

    terminal = console.is_terminal
    bar = Bar(machine, show=sys.stderr.isatty() if terminal else None)
    try:
        perm = _perm_text(console) if terminal else Perm.letters
        lines = iter(table_lines(counted(bar.track(batches)), mode, perm, layout))
        if not terminal:
            write_out(itertools.chain([head.encode()], lines))
            bar.stop()
            write_out([tail().encode()])
            return count
        first: list[str] = []  # until the screen is full (or the listing ends)
        for chunk in lines:
            first.append(str(chunk, "utf-8"))
            if count + head.count("\n") >= console.height - 1:
                break
        else:
            bar.stop()
            sys.stdout.write(head + "".join(first) + tail())
            return count
        bar.stop()
        with click.get_pager_file() as pager:
            pager.write(head)
            for text in itertools.chain(first, (str(c, "utf-8") for c in lines)):
                pager.write(text)
            pager.write(tail())
        return count
    finally:
        bar.stop()


def _with_region(header: str) -> str:
    """The column header with a ``region`` column after the last: the names line gets
    ``┃ region``, the rule under it ``╇━━━━━━━━``."""
    lines = header.split("\n")
    for i, line in enumerate(lines):
        if "━" in line:
            lines[i - 1] += "┃ region"
            lines[i] += "╇" + "━" * 8
            break
    return "\n".join(lines)


def _perm_text(console: Console) -> Callable[[Perm], str]:
    """Permission letters in their colour, as escape codes for this console."""
    from rich.text import Text

    from pagewalk.cli.render import perm_style

    styled = {p: _printed(console, Text(Perm(p).letters(), style=perm_style(Perm(p))))
              for p in range(32)}  # fmt: skip
    return lambda perm: styled[int(perm)].rstrip("\n")
