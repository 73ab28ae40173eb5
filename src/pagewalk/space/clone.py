"""Clone and release: whole-tree visitors that copy, share, count and prune a space's tables.

One idea: a clone shares the kernel half or copies it. Sharing means the new root points to the
very same kernel tables: the upper half of the root table where one root serves both halves
(x86-64 PML4, Intel SDM vol. 3A 4.5; RISC-V Sv39-Sv57 root, privileged spec), or the whole root
of the register that serves the kernel half by itself (AArch64 TTBR1_EL1, Arm ARM D8.2;
``mode.facts.kernel_root``). The source counts the clones sharing each root entry (see
:class:`~pagewalk.space.ownership.Ownership`) and, when the last one is destroyed, prunes the
owned tables that emptied below it meanwhile. Copying duplicates every table (leaves still
point to the same frames), with every frame allocated before anything is written. Table loops
(a recursive self-map) are followed once: a copied table that points back to a copied root
points to the new root.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from pagewalk.flush import Flush
from pagewalk.formats.base import EntryKind, Half, PagingMode
from pagewalk.space.descent import Span, Visit, descend
from pagewalk.space.ownership import Ownership
from pagewalk.space.tables import Tables, root_half, root_ids, table_base

#: what a clone does with one root entry
SKIP, SHARE, COPY = "skip", "share", "copy"


def kernel_indices(mode: PagingMode) -> range:
    """Root-table indices that form the kernel half (the upper half of the root table)."""
    top = mode.halves[0].levels[0]
    return range(top.entries // 2, top.entries)


class Cloner:
    """Clones of one space's tables, and the tables it shares with them."""

    def __init__(self, tables: Tables, own: Ownership) -> None:
        self.tables = tables
        self.own = own

    # ------------------------------------------------------------------ enumerating
    def table_frames(self, roots: tuple[int, ...]) -> list[int]:
        """Every table frame reachable from ``roots`` (each once; loops are cut)."""
        seen: set[int] = set()
        for r in root_ids(self.tables.mode):
            descend(
                self._frames_visit(root_half(self.tables.mode, r), seen),
                (roots[r], 0, 0, 0, 0),
            )
        return sorted(seen)

    def _frames_visit(self, half: Half, seen: set[int], acts: list[str] | None = None) -> Visit:
        """Add every table below a span to ``seen``; at the root, only entries to ``COPY``
        when ``acts`` is given (the root itself is then not counted)."""
        tables, last = self.tables, len(half.levels) - 1

        def visit(span: Span) -> Iterator[Span]:
            table, li = span[0], span[1]
            assert table is not None
            if acts is not None and li == 0:
                yield from self._copied_children(table, half, acts)
                return
            if table in seen or not tables.mem.is_ram(table, tables.table_bytes):
                return
            seen.add(table)
            if li == last:
                return
            for child in tables.child_tables(table, half.levels[li]):
                yield (child, li + 1, 0, 0, 0)

        return visit

    def _copied_children(self, root: int, half: Half, acts: list[str]) -> Iterator[Span]:
        """The tables below the root entries a clone copies."""
        top = half.levels[0]
        raws = self.tables.slice(root, 0, top.entries)
        for i, act in enumerate(acts):
            raw = int(raws[i])
            if act == COPY and raw & self.tables.mode.present_mask:
                entry = self.tables.mode.decode(raw, top)
                if entry.kind is EntryKind.TABLE and entry.fault is None:
                    yield (entry.address, 1, 0, 0, 0)

    # ---------------------------------------------------------------------- cloning
    def actions(self, r: int, share_kernel: bool, user: bool) -> list[str] | None:
        """Per root entry: ``skip``, ``share`` or ``copy``; None to share the whole root."""
        mode = self.tables.mode
        n = root_half(mode, r).levels[0].entries
        kernel_root = mode.facts.kernel_root
        if kernel_root is not None:  # one root register serves the kernel half by itself
            if r == kernel_root:
                return None if share_kernel else [COPY] * n
            return [COPY if user else SKIP] * n
        kernel = kernel_indices(mode)
        user_act = COPY if user else SKIP
        kernel_act = SHARE if share_kernel else COPY
        return [kernel_act if i in kernel else user_act for i in range(n)]

    def clone(
        self, roots: tuple[int, ...], share_kernel: bool, user: bool
    ) -> tuple[list[int], set[int], list[tuple[int, int]]]:
        """New roots for a clone, the table frames it owns, and the root entries it shares.

        The shared entries are counted here (the caller makes the clone).
        """
        mode = self.tables.mode
        actions = {r: self.actions(r, share_kernel, user) for r in root_ids(mode)}
        copied = [r for r, acts in actions.items() if acts is not None]
        # A table that points back to a copied root (a recursive "self-map") must point to the
        # new root, so the roots count as already seen and are copied first.
        seen = {roots[r] for r in copied}
        n_tables = len(copied)
        for r in copied:
            before = len(seen)
            visit = self._frames_visit(root_half(mode, r), seen, actions[r] or [])
            descend(visit, (roots[r], 0, 0, 0, 0))
            n_tables += len(seen) - before
        pool = self.own.alloc(n_tables, n_roots=len(copied))
        owned = set(pool)
        new_roots = list(roots)
        memo: dict[int, int] = {}
        firsts, pool = pool[: len(copied)], pool[len(copied) :]
        for r, frame in zip(copied, firsts, strict=True):
            new_roots[r] = memo[roots[r]] = frame
        for r in copied:
            visit = self._copy_visit(root_half(mode, r), actions[r] or [], pool, memo)
            descend(visit, (roots[r], 0, 0, 0, 0))
        assert not pool, "clone counted more tables than it copied"
        keys = [
            key
            for r, acts in actions.items()
            for key in (
                [(r, -1)] if acts is None else [(r, i) for i, a in enumerate(acts) if a == SHARE]
            )
        ]
        self.own.shared.update(keys)
        return new_roots, owned, keys

    def _copy_visit(
        self, half: Half, acts: list[str], pool: list[int], memo: dict[int, int]
    ) -> Visit:
        """Copy each table (once: ``memo`` maps old to new) into a frame from ``pool``."""
        tables, mode, last = self.tables, self.tables.mode, len(half.levels) - 1

        def visit(span: Span) -> Iterator[Span]:
            table, li = span[0], span[1]
            assert table is not None
            if li == 0:
                yield from self._copy_root(half, acts, table, memo)
                return
            if table in memo:
                return
            new = pool.pop()
            memo[table] = new
            level = half.levels[li]
            raws = tables.slice(table, 0, level.entries)
            if li < last:
                valid = np.flatnonzero(raws & np.uint64(mode.present_mask))
                for i in valid[~mode.np_is_leaf(raws[valid], level)].tolist():
                    old = int(mode.np_address(raws[i : i + 1], level, False)[0])
                    if not tables.mem.is_ram(old, tables.table_bytes):
                        continue
                    yield (old, li + 1, 0, 0, 0)
                    raws[i] = np.uint64(tables.retarget(int(raws[i]), level, old, memo[old]))
            tables.put(new, 0, raws)

        return visit

    def _copy_root(
        self, half: Half, acts: list[str], root: int, memo: dict[int, int]
    ) -> Iterator[Span]:
        """Fill the new root (``memo[root]``): entries shared, copied or skipped per ``acts``."""
        tables, mode = self.tables, self.tables.mode
        top = half.levels[0]
        new_root = memo[root]
        raws = tables.slice(root, 0, top.entries)
        out = np.zeros(top.entries, dtype=np.uint64)
        for i, act in enumerate(acts):
            raw = int(raws[i])
            if act == SKIP or not raw & mode.present_mask:
                continue
            entry = mode.decode(raw, top)
            if entry.kind is EntryKind.TABLE and entry.fault is None:
                if entry.address == root:
                    # A self-map entry follows its own space, shared half or not.
                    raw = tables.retarget(raw, top, entry.address, new_root)
                elif act == COPY and tables.mem.is_ram(entry.address, tables.table_bytes):
                    yield (entry.address, 1, 0, 0, 0)
                    raw = tables.retarget(raw, top, entry.address, memo[entry.address])
            out[i] = raw
        tables.put(new_root, 0, out)

    # -------------------------------------------------------------------- releasing
    def release(self, roots: tuple[int, ...], keys: list[tuple[int, int]]) -> Flush:
        """A clone stopped sharing ``keys``: free the tables below them that emptied meanwhile."""
        flush = Flush("release shared tables", tables_freed=True)
        for key in keys:
            if not self.own.unshare(key):
                continue
            r, i = key
            half = root_half(self.tables.mode, r)
            top = half.levels[0]
            base = table_base(half)
            present = self.tables.mode.present_mask
            if i >= 0 and not self.tables.read(roots[r] + i * self.tables.esize) & present:
                continue  # an empty root entry has nothing below it to free
            indices = range(top.entries) if i < 0 else range(i, i + 1)
            for j in self._prune(roots[r], half, indices):
                flush = flush | Flush("release", ((base + (j << top.shift), top.span),))
        return flush

    def _prune(self, root: int, half: Half, indices: range) -> list[int]:
        """Free the empty owned tables below root entries ``indices``; the entries where any
        went, in order."""
        tables, mode, own = self.tables, self.tables.mode, self.own
        last = len(half.levels) - 1
        freed = [0]  # tables freed so far
        hits: list[int] = []

        def visit(span: Span) -> Iterator[Span]:
            table, li = span[0], span[1]
            assert table is not None
            if li == last:
                return
            level, child_level = half.levels[li], half.levels[li + 1]
            first = indices.start if li == 0 else 0
            raws = tables.slice(table, first, len(indices) if li == 0 else level.entries)
            present = np.uint64(tables.mode.present_mask)
            for j in np.flatnonzero(raws & present).tolist():
                entry_pa = table + (first + j) * tables.esize
                raw = tables.read(entry_pa)  # fresh: a table loop may have cleared it since
                if not raw & tables.mode.present_mask:
                    continue
                entry = mode.decode(raw, level)
                if entry.kind is not EntryKind.TABLE or entry.fault is not None:
                    continue
                before = freed[0]
                yield (entry.address, li + 1, 0, 0, 0)
                children = tables.slice(entry.address, 0, child_level.entries)
                if entry.address in own.owned and not (children & present).any():
                    tables.write(entry_pa, 0)
                    own.free(entry.address)
                    freed[0] += 1
                if li == 0 and freed[0] != before:
                    hits.append(first + j)

        descend(visit, (root, 0, 0, 0, 0))
        return hits
