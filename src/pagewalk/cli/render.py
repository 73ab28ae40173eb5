"""Human output: walks and mapping lists as rich tables, coloured by permission class.

Colours follow the permission class people scan for first: writable+executable (red, the W^X
finding), executable (yellow), writable (green), read-only (plain); user pages are marked. The
fields shown per entry are the manual's names (Intel SDM vol. 3A tables 4-4..4-20, Arm ARM D8
descriptor fields, RISC-V PTE bits) as the mode's codec reports them.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pagewalk.errors import hx
from pagewalk.formats.base import MemType, PagingMode, Perm
from pagewalk.inspect.mappings import Mapping
from pagewalk.walk import Walk


def size_text(size: int) -> str:
    """``4K``, ``2M``, ``1G``, or bytes for odd sizes."""
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    for unit, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.1f}{unit}"
    return str(size)


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


def memtype_text(memtype: MemType | str | None) -> str:
    """Short memory-type text."""
    if memtype is None:
        return ""
    return memtype.value if isinstance(memtype, MemType) else memtype


def walk_table(result: Walk, mode: PagingMode) -> Table:
    """Every step of a walk: level, index, entry PA, raw value, decoded fields, permission."""
    table = Table(show_edge=False, header_style="bold")
    for col in ("level", "index", "entry PA", "raw", "fields", "perm so far"):
        table.add_column(col, no_wrap=col != "fields")
    for step in result.steps:
        shown = mode.fields(step.raw, step.level) if step.raw & 1 else []
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


def mappings_table(rows: Iterable[Mapping], mode: PagingMode) -> Table:
    """Merged ranges with effective permissions."""
    width = 18 if mode.entry_size == 8 else 10
    table = Table(show_edge=False, header_style="bold")
    for col in ("virtual", "end", "size", "physical", "page", "perm", "memtype"):
        table.add_column(col, no_wrap=True, justify="right" if col == "size" else "left")
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
