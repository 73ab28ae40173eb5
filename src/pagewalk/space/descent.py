"""The one descent over page tables that every table-walking operation of a space uses.

One idea: the tables form a tree (the paging structures of Intel SDM vol. 3A ch. 4, the
translation tables of Arm ARM D8.2, the page tables of the RISC-V privileged spec, Sv32-Sv57),
and every operation goes down it the same way. Each operation supplies one *visitor function*:
handed one table and the part of the VA range inside it (a :data:`Span`), it does its work on
that table's entries (runs of entries at once, with numpy) and yields the child tables to go
down into. Code after a ``yield`` runs once that child's whole subtree is done, which is where
post-order work goes (linking a new table, freeing one that emptied, retargeting a copy).

:func:`descend` is the only code that goes from a table to its children; the visitors never
call themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

#: One table to visit, and the part of the request that falls inside it, as a plain tuple
#: (built at every step of every walk, so no NamedTuple): ``(table, li, base, lo, hi)``.
#:
#: - ``table``: the table's PA; None for a table the plan pass of an operation has not allocated
#:   yet (every entry of it reads as invalid);
#: - ``li``: the table's index in ``Half.levels`` (0 = root);
#: - ``base``: the VA of the table's entry 0;
#: - ``lo``, ``hi``: the request inside the table, ``[lo, hi)``.
#:
#: Whole-tree visitors (clone, release, enumeration) cover every entry and leave the last three 0.
Span = tuple[int | None, int, int, int, int]


#: a visitor: given one table, does its work and yields the child tables to descend into
Visit = Callable[[Span], Iterator[Span]]


def descend(visit: Visit, span: Span) -> None:
    """Visit ``span`` and, depth first, every table the visits yield.

    Every step goes one level down (a visitor yields children at ``li + 1`` only), so the
    recursion is as deep as the mode has levels (at most 5), table loops included.
    """
    for child in visit(span):
        descend(visit, child)
