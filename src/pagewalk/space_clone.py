"""Cloning address spaces, and the bookkeeping of page tables two spaces share.

A clone shares the kernel half or copies it: sharing means the new root points to the very same
kernel tables (the x86-64 upper half of the PML4, AArch64's TTBR1 root, the upper half of the
root elsewhere; Intel SDM vol. 3A 4.5, Arm ARM D8.2), which the new space does not own. The
source counts the clones that share each root entry and frees no table below a shared entry
until the last sharer is destroyed; then it prunes the tables that emptied meanwhile. Copying
duplicates every table (leaves still point to the same frames), with every frame allocated
before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from pagewalk.flush import Flush
from pagewalk.formats.base import EntryKind, Half
from pagewalk.space_ops import TableEditor

if TYPE_CHECKING:
    from pagewalk.space import AddressSpace


class SharingEditor(TableEditor):
    """:class:`~pagewalk.space_ops.TableEditor` with clone and shared-table bookkeeping."""

    def clone(self, share_kernel: bool = True, user: bool = True) -> AddressSpace:
        """A new space: the kernel half shared (or copied), the user half copied (or empty).

        Sharing means the new root points to the very same kernel tables (the x86-64 upper
        half, AArch64's TTBR1 root, the upper half of the root elsewhere); the new space does
        not own them. Copying duplicates every table (leaves still point to the same frames).
        All table frames are allocated before anything is written.
        """
        from pagewalk.space import AddressSpace

        self._alive()
        actions = {r: self._clone_actions(r, share_kernel, user) for r in self._root_ids()}
        copied = [r for r, acts in actions.items() if acts is not None]
        # A table that points back to a copied root (a recursive "self-map") must point to the
        # new root, so the roots count as already seen and are copied first.
        seen = {self.roots[r] for r in copied}
        n_tables = len(copied)
        for r in copied:
            n_tables += sum(1 for _ in self._copied_subtrees(r, actions[r] or [], seen))
        pool = self._alloc_frames(n_tables, n_roots=len(copied))
        owned = set(pool)
        roots = list(self.roots)
        memo: dict[int, int] = {}
        new_roots, pool = pool[: len(copied)], pool[len(copied) :]
        for r, frame in zip(copied, new_roots, strict=True):
            roots[r] = memo[self.roots[r]] = frame
        for r in copied:
            self._copy_root(r, actions[r] or [], roots[r], pool, memo)
        assert not pool, "clone counted more tables than it copied"
        keys = [
            key
            for r, acts in actions.items()
            for key in (
                [(r, -1)] if acts is None else [(r, i) for i, a in enumerate(acts) if a == "share"]
            )
        ]
        self.shared.update(keys)
        child = AddressSpace(self.mode, self.mem, self.frames, roots=roots, owned=owned)
        child.bbm = self.bbm
        child.lender = (self, keys)
        return child

    def _release_shares(self, keys: list[tuple[int, int]]) -> Flush:
        """A clone stopped sharing ``keys``: free the tables below them that emptied meanwhile."""
        flush = Flush("release shared tables", tables_freed=True)
        for key in keys:
            self.shared[key] -= 1
            if self.shared[key] > 0:
                continue
            del self.shared[key]
            r, i = key
            half = self._root_half(r)
            top = half.levels[0]
            base = self._table_base(half)
            indices = range(top.entries) if i < 0 else [i]
            for j in indices:
                if self._prune(self.roots[r], half, 0, j):
                    flush = flush | Flush("release", ((base + (j << top.shift), top.span),))
        return flush

    def _prune(self, table: int, half: Half, depth: int, i: int) -> bool:
        """Free the empty owned tables below entry ``i`` of ``table``; True if any went."""
        level = half.levels[depth]
        entry_pa = table + i * self._esize
        raw = self._read(entry_pa)
        if not raw & 1 or depth == len(half.levels) - 1:
            return False
        entry = self.mode.decode(raw, level)
        if entry.kind is not EntryKind.TABLE or entry.fault is not None:
            return False
        child_level = half.levels[depth + 1]
        freed = False
        if depth + 1 < len(half.levels) - 1:
            raws = self._slice(entry.address, 0, child_level.entries)
            for j in np.flatnonzero(raws & np.uint64(1)).tolist():
                freed |= self._prune(entry.address, half, depth + 1, j)
        children = self._slice(entry.address, 0, child_level.entries)
        if entry.address in self.owned and not (children & np.uint64(1)).any():
            self._write(entry_pa, 0)
            self._free_table(entry.address)
            freed = True
        return freed

    def _root_ids(self) -> list[int]:
        return sorted({h.root for h in self.mode.halves})

    def _root_half(self, r: int) -> Half:
        return next(h for h in self.mode.halves if h.root == r)

    def kernel_indices(self) -> range:
        """Root-table indices that form the kernel half (the upper half of the root table).

        For AArch64 the kernel half is the whole TTBR1 root instead.
        """
        top = self.mode.halves[0].levels[0]
        return range(top.entries // 2, top.entries)

    def _clone_actions(self, r: int, share_kernel: bool, user: bool) -> list[str] | None:
        """Per root entry: ``skip``, ``share`` or ``copy``; None to share the whole root."""
        n = self._root_half(r).levels[0].entries
        if self.mode.name == "aarch64":
            if r == 1:
                return None if share_kernel else ["copy"] * n
            return ["copy" if user else "skip"] * n
        kernel = self.kernel_indices()
        acts = []
        for i in range(n):
            if i in kernel:
                acts.append("share" if share_kernel else "copy")
            else:
                acts.append("copy" if user else "skip")
        return acts

    def _copied_subtrees(self, r: int, acts: list[str], seen: set[int]) -> Iterator[int]:
        half = self._root_half(r)
        top = half.levels[0]
        raws = self._slice(self.roots[r], 0, top.entries)
        for i, act in enumerate(acts):
            raw = int(raws[i])
            if act == "copy" and raw & 1:
                entry = self.mode.decode(raw, top)
                if entry.kind is EntryKind.TABLE and entry.fault is None:
                    yield from self._subtree(entry.address, half, 1, seen)

    def _subtree(self, table: int, half: Half, depth: int, seen: set[int]) -> Iterator[int]:
        """Every table frame under ``table`` (itself included), each once."""
        if table in seen or not self.mem.is_ram(table, self.table_bytes):
            return
        seen.add(table)
        yield table
        if depth == len(half.levels) - 1:
            return
        level = half.levels[depth]
        raws = self._slice(table, 0, level.entries)
        valid = raws[(raws & np.uint64(1)) != 0]
        tables = valid[~self.mode.np_is_leaf(valid, level)]
        for child in self.mode.np_address(tables, level, False).tolist():
            yield from self._subtree(int(child), half, depth + 1, seen)

    def _copy_root(
        self, r: int, acts: list[str], new_root: int, pool: list[int], memo: dict[int, int]
    ) -> None:
        half = self._root_half(r)
        top = half.levels[0]
        raws = self._slice(self.roots[r], 0, top.entries)
        out = np.zeros(top.entries, dtype=np.uint64)
        for i, act in enumerate(acts):
            raw = int(raws[i])
            if act == "skip" or not raw & 1:
                continue
            entry = self.mode.decode(raw, top)
            if entry.kind is EntryKind.TABLE and entry.fault is None:
                if entry.address == self.roots[r]:
                    # A self-map entry follows its own space, shared half or not.
                    raw = self._retarget(raw, top, entry.address, new_root)
                elif act == "copy" and self.mem.is_ram(entry.address, self.table_bytes):
                    new = self._copy_table(entry.address, half, 1, pool, memo)
                    raw = self._retarget(raw, top, entry.address, new)
            out[i] = raw
        self.mem.write_table(new_root, out, self._esize)

    def _copy_table(
        self, table: int, half: Half, depth: int, pool: list[int], memo: dict[int, int]
    ) -> int:
        if table in memo:
            return memo[table]
        new = pool.pop()
        memo[table] = new
        level = half.levels[depth]
        raws = self._slice(table, 0, level.entries)
        if depth < len(half.levels) - 1:
            valid = np.flatnonzero(raws & np.uint64(1))
            for i in valid[~self.mode.np_is_leaf(raws[valid], level)].tolist():
                old = int(self.mode.np_address(raws[i : i + 1], level, False)[0])
                if not self.mem.is_ram(old, self.table_bytes):
                    continue
                child = self._copy_table(old, half, depth + 1, pool, memo)
                raws[i] = np.uint64(self._retarget(int(raws[i]), level, old, child))
        self.mem.write_table(new, raws, self._esize)
        return new
