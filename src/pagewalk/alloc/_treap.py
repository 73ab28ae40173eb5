"""An ordered map of int keys to int values in a treap, each subtree knowing its largest value.

It is the balanced structure under the virtual-range allocator: expected O(log n) insert,
delete, floor and ceiling, plus "the first key at or after K whose value is at least V" in one
descent, which is first fit over address-ordered holes with sizes as values (the augmented tree
behind Redox's hole list and Linux's ``vm_area`` gap search). Priorities come from a seeded
generator, so runs are reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Iterator


class _Node:
    __slots__ = ("best", "key", "left", "prio", "right", "value")

    def __init__(self, key: int, value: int, prio: float) -> None:
        self.key = key
        self.value = value
        self.prio = prio
        self.best = value
        self.left: _Node | None = None
        self.right: _Node | None = None


def _fix(node: _Node) -> _Node:
    best = node.value
    if node.left is not None and node.left.best > best:
        best = node.left.best
    if node.right is not None and node.right.best > best:
        best = node.right.best
    node.best = best
    return node


def _split(node: _Node | None, key: int) -> tuple[_Node | None, _Node | None]:
    """Keys below ``key``, and keys at or above it."""
    if node is None:
        return None, None
    if node.key < key:
        node.right, rest = _split(node.right, key)
        return _fix(node), rest
    below, node.left = _split(node.left, key)
    return below, _fix(node)


def _merge(a: _Node | None, b: _Node | None) -> _Node | None:
    """Join two treaps whose keys are all smaller in ``a``."""
    if a is None:
        return b
    if b is None:
        return a
    if a.prio > b.prio:
        a.right = _merge(a.right, b)
        return _fix(a)
    b.left = _merge(a, b.left)
    return _fix(b)


def _first(node: _Node | None, key: int, need: int) -> _Node | None:
    """Leftmost node with ``node.key >= key`` and ``node.value >= need``."""
    while node is not None and node.best >= need:
        if node.key < key:
            node = node.right
            continue
        found = _first(node.left, key, need)
        if found is not None:
            return found
        if node.value >= need:
            return node
        node = node.right
    return None


class Treap:
    """Int keys to int values, ordered by key."""

    def __init__(self, seed: int = 0) -> None:
        self._root: _Node | None = None
        self._size = 0
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: int) -> bool:
        return self.get(key) is not None

    def get(self, key: int) -> int | None:
        """The value at ``key``, or None."""
        node = self._root
        while node is not None:
            if key == node.key:
                return node.value
            node = node.left if key < node.key else node.right
        return None

    def insert(self, key: int, value: int) -> None:
        """Add a key that is not present."""
        below, rest = _split(self._root, key)
        node = _Node(key, value, self._rng.random())
        self._root = _merge(_merge(below, node), rest)
        self._size += 1

    def delete(self, key: int) -> None:
        """Remove a key that is present."""
        below, rest = _split(self._root, key)
        _, above = _split(rest, key + 1)
        self._root = _merge(below, above)
        self._size -= 1

    def floor(self, key: int) -> tuple[int, int] | None:
        """The entry with the largest key at or below ``key``."""
        node, found = self._root, None
        while node is not None:
            if node.key <= key:
                found, node = node, node.right
            else:
                node = node.left
        return None if found is None else (found.key, found.value)

    def ceiling(self, key: int) -> tuple[int, int] | None:
        """The entry with the smallest key at or above ``key``."""
        node, found = self._root, None
        while node is not None:
            if node.key >= key:
                found, node = node, node.left
            else:
                node = node.right
        return None if found is None else (found.key, found.value)

    def first_at_least(self, need: int, key: int = 0) -> tuple[int, int] | None:
        """The entry with the smallest key at or above ``key`` whose value is at least ``need``."""
        node = _first(self._root, key, need)
        return None if node is None else (node.key, node.value)

    def items(self) -> Iterator[tuple[int, int]]:
        """Entries in key order."""
        stack: list[_Node] = []
        node = self._root
        while stack or node is not None:
            while node is not None:
                stack.append(node)
                node = node.left
            node = stack.pop()
            yield node.key, node.value
            node = node.right
