"""Human output: walks and mapping lists as rich tables, coloured by permission class.

Colours follow the permission class people scan for first: writable+executable (red, the W^X
finding), executable (yellow), writable (green), read-only (plain); user pages are marked. The
fields shown per entry are the manual's names (Intel SDM vol. 3A tables 4-4..4-20, Arm ARM D8
descriptor fields, RISC-V PTE bits) as the mode's codec reports them. The inspectors' reports
(lint, diff, stats, find-roots) are drawn here too.

Listings stream: a diff longer than :data:`CHUNK` rows is drawn as one table with fixed column
widths, then as lines in the same layout (:func:`print_listing`), and a JSON list is written
item by item, so output of any length costs constant memory. The ``maps`` table is drawn in
bulk (:mod:`pagewalk.cli.writers`, :mod:`pagewalk.cli.listing`): this module gives it its header
(:func:`mappings_table` with no rows) and its layout (:func:`mapping_line`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pagewalk.cli.writers import memtype_text, size_text
from pagewalk.errors import hx
from pagewalk.formats.base import PagingMode, Perm

if TYPE_CHECKING:
    from pagewalk.enumerate_runs import Mapping
    from pagewalk.inspect.diff import Change
    from pagewalk.inspect.lint import Finding
    from pagewalk.inspect.roots import Candidate
    from pagewalk.inspect.stats import Stats
    from pagewalk.walk import Walk

__all__ = ["memtype_text", "size_text"]  # kept here for their importers

T = TypeVar("T")
#: rows per table when a listing is drawn in pieces
CHUNK = 2048


def perm_style(perm: Perm) -> str:
    """The colour of a permission class."""
    w, x = bool(perm & Perm.WRITE), bool(perm & Perm.EXEC)
    if w and x:
        return "bold red"
    if x:
        return "yellow"
    if w:
        return "green"
    return ""


def walk_table(result: Walk, mode: PagingMode) -> Table:
    """Every step of a walk: level, index, entry PA, raw value, decoded fields, permission."""
    table = Table(show_edge=False, header_style="bold")
    for col in ("level", "index", "entry PA", "raw", "fields", "perm so far"):
        table.add_column(col, no_wrap=col != "fields")
    for step in result.steps:
        shown = mode.fields(step.raw, step.level) if step.raw & mode.present_mask else []
        fields = " ".join(s for f in shown if (s := str(f))) or "(invalid)"
        perm = step.perm.letters() if step.entry.fault is None else "-"
        table.add_row(
            step.level.name,
            str(step.index),
            hx(step.entry_pa),
            f"{step.raw:#0{2 + 2 * mode.entry_size}x}",
            fields,
            Text(perm, style=perm_style(step.perm)),
        )
    return table


def print_walk(console: Console, result: Walk, mode: PagingMode) -> None:
    """The headline and the step table of one walk."""
    if result.fault is None:
        assert result.pa is not None and result.page_size is not None
        head = Text(f"{hx(result.va)} -> {hx(result.pa)}  ")
        head.append(f"{size_text(result.page_size)} page, ")
        head.append(result.perm.letters(), style=perm_style(result.perm))
        leaf = result.leaf
        if leaf is not None and leaf.memtype is not None:
            head.append(f", {memtype_text(leaf.memtype)}")
    else:
        fault = result.fault
        where = "" if fault.level is None else f" at level {fault.level}"
        head = Text(f"{hx(result.va)} -> ", style="")
        head.append(f"{fault.kind} fault{where}", style="bold red")
        head.append(f": {fault.reason}")
    console.print(head)
    if result.steps:
        console.print(walk_table(result, mode))


def _mapping_widths(mode: PagingMode) -> dict[str, int]:
    """The widest each column of a mapping listing can be (its fixed width)."""
    width = 18 if mode.entry_size == 8 else 10
    return {
        "virtual": width, "end": width, "size": 9, "physical": 18, "page": 5, "perm": 5,
        "memtype": 18,
    }  # fmt: skip


def mappings_table(
    rows: Iterable[Mapping], mode: PagingMode, *, header: bool = True, fixed: bool = False
) -> Table:
    """Merged ranges with effective permissions.

    Args:
        header: draw the column names.
        fixed: give every column its widest possible width (the layout of :func:`mapping_line`).
    """
    width = 18 if mode.entry_size == 8 else 10
    widths = _mapping_widths(mode)
    table = Table(show_edge=False, header_style="bold", show_header=header)
    for col in ("virtual", "end", "size", "physical", "page", "perm", "memtype"):
        table.add_column(
            col,
            no_wrap=True,
            justify="right" if col == "size" else "left",
            min_width=widths[col] if fixed else None,
        )
    for m in rows:
        table.add_row(
            f"{m.va:#0{width}x}",
            f"{m.end - 1:#0{width}x}",
            size_text(m.size),
            hx(m.pa),
            size_text(m.page_size),
            Text(m.perm.letters(), style=perm_style(m.perm)),
            memtype_text(m.memtype),
        )
    return table


def mapping_line(m: Mapping, mode: PagingMode) -> Text:
    """One range as a row of ``mappings_table(fixed=True)``, without the table machinery."""
    w = _mapping_widths(mode)
    text = Text(
        f" {m.va:#0{w['virtual']}x} │ {m.end - 1:#0{w['end']}x} │ "
        f"{size_text(m.size):>{w['size']}} │ {hx(m.pa):<{w['physical']}} │ "
        f"{size_text(m.page_size):<{w['page']}} │ "
    )
    text.append(m.perm.letters(), style=perm_style(m.perm))
    text.append(f" │ {memtype_text(m.memtype):<{w['memtype']}} ")
    return text


def print_listing(
    console: Console,
    rows: Iterable[T],
    table: Callable[[list[T], bool], Table],
    line: Callable[[T], Text],
    chunk: int = CHUNK,
) -> int:
    """Print rows as one table when they fit in ``chunk``; else the first ``chunk`` as a table
    with fixed widths (``table(rows, fixed)``), then every other row as a ``line`` in the same
    layout: a rich table costs about half a millisecond a row, a plain line microseconds.

    Returns:
        How many rows were printed.
    """
    it = iter(rows)
    first = list(itertools.islice(it, chunk + 1))
    console.print(table(first[:chunk], len(first) > chunk))
    if len(first) <= chunk:
        return len(first)
    return chunk + print_lines(console, (line(r) for r in itertools.chain(first[chunk:], it)))


def print_lines(console: Console, lines: Iterable[Text | str]) -> int:
    """Print lines: styled through ``console`` on a terminal, else as plain text written in
    batches (what rich would print there, a hundred times faster). Returns how many."""
    n = 0
    out: list[str] = []
    for line in lines:
        n += 1
        if console.is_terminal:
            console.print(line)
            continue
        out.append(line.plain if isinstance(line, Text) else line)
        if len(out) >= 1024:
            console.file.write("\n".join(out) + "\n")
            out.clear()
    if out:
        console.file.write("\n".join(out) + "\n")
    return n


# ------------------------------------------------------------------ reports of the inspectors
_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def lint_table(findings: Iterable[Finding]) -> Table:
    """Findings: severity, code, VA, level, entry PA, raw entry, message."""
    table = Table(show_edge=False, header_style="bold")
    for col in ("severity", "code", "va", "level", "entry PA", "raw", "finding"):
        table.add_column(col, no_wrap=col != "finding")
    for f in findings:
        table.add_row(
            Text(f.severity, style=_SEVERITY_STYLE[f.severity]),
            f.code,
            "" if f.va is None else hx(f.va),
            f.level or "",
            "" if f.entry_pa is None else hx(f.entry_pa),
            "" if f.raw is None else f"{f.raw:#x}",
            f.message,
        )
    return table


_DIFF_WIDTHS = {"": 1, "virtual": 18, "size": 9, "A": 5, "B": 5}
_DIFF_MARKS = {"added": ("+", "green"), "removed": ("-", "red"), "changed": ("~", "yellow")}


def diff_table(changes: Iterable[Change], *, header: bool = True, fixed: bool = False) -> Table:
    """Added, removed and changed ranges, permission changes called out."""
    table = Table(show_edge=False, header_style="bold", show_header=header)
    for col in ("", "virtual", "size", "A", "B", "what"):
        table.add_column(col, no_wrap=True, min_width=_DIFF_WIDTHS.get(col) if fixed else None)
    for c in changes:
        mark, style = _DIFF_MARKS[c.kind]
        perm_a = Text(c.perm_a.letters(), style=perm_style(c.perm_a)) if c.perm_a else Text("")
        perm_b = Text(c.perm_b.letters(), style=perm_style(c.perm_b)) if c.perm_b else Text("")
        table.add_row(
            Text(mark, style=style), hx(c.va), size_text(c.size), perm_a, perm_b, _diff_what(c)
        )
    return table


def diff_line(c: Change) -> Text:
    """One change as a row of ``diff_table(fixed=True)``, without the table machinery."""
    w = _DIFF_WIDTHS
    mark, style = _DIFF_MARKS[c.kind]
    text = Text(" ")
    text.append(mark, style=style)
    text.append(f" │ {hx(c.va):<{w['virtual']}} │ {size_text(c.size):<{w['size']}} │ ")
    for perm in (c.perm_a, c.perm_b):
        text.append(f"{perm.letters() if perm else '':<5}", style=perm_style(perm) if perm else "")
        text.append(" │ ")
    text.append(_diff_what(c))
    return text


def _diff_what(c: Change) -> str:
    what = ", ".join(c.what)
    if c.perm_change:
        what = f"PERM {c.perm_change}" + (f"; {what}" if what != "perm" else "")
    if "pa" in c.what:
        what += f" (PA {hx(c.pa_a or 0)} -> {hx(c.pa_b or 0)})"
    return what


def stats_table(report: Stats) -> Table:
    """Tables and leaves per level, bytes, promotable tables."""
    table = Table(show_edge=False, header_style="bold")
    for col in ("level", "tables", "bytes", "valid entries", "leaves", "leaf size", "promotable"):
        table.add_column(col, justify="left" if col == "level" else "right")
    for s in report.levels.values():
        promo = f"{s.promotable} -> {size_text(s.promote_to)}" if s.promotable else "0"
        table.add_row(
            s.name,
            str(s.tables),
            size_text(s.bytes),
            str(s.valid_entries),
            str(s.leaves),
            size_text(s.leaf_size) if s.leaf_size else "",
            promo,
        )
    return table


def roots_table(cands: Iterable[Candidate], known: dict[int, str]) -> Table:
    """Root candidates, best first, marking the ones the registers name."""
    table = Table(show_edge=False, header_style="bold")
    for col in ("rank", "PA", "as", "score", "valid", "low/high", "leaf+empty/walks", "note"):
        table.add_column(col, no_wrap=True)
    for i, c in enumerate(cands, 1):
        note = ("recursive slot; " if c.self_ref else "") + known.get(c.pa, "")
        table.add_row(
            str(i), hx(c.pa), c.half, f"{c.score:.2f}", str(c.valid),
            f"{c.low}/{c.high}", f"{c.good}+{c.empty}/{c.walks}", note,
        )  # fmt: skip
    return table
