"""Parse the inspectors' filter options (``--perm``, ``--level-sizes``) into a Filter.

The filter itself (:class:`~pagewalk.enumerate_filter.Filter`, re-exported here) prunes the
enumeration while it walks; tables only take permissions away (Intel SDM vol. 3A §4.6.1, Arm ARM
D8.4.2 hierarchical controls, RISC-V leaves only), so a table's permission bounds its leaves.
"""

from __future__ import annotations

from collections.abc import Iterable

from pagewalk.enumerate_filter import Filter
from pagewalk.errors import ConfigError
from pagewalk.formats.base import Perm

__all__ = ["Filter", "parse_perm", "parse_sizes"]

_LETTERS = {"r": Perm.READ, "w": Perm.WRITE, "x": Perm.EXEC, "u": Perm.USER, "g": Perm.GLOBAL}


def parse_perm(text: str) -> tuple[Perm, Perm]:
    """``w,x,u,!x,k`` to (need, forbid). ``k`` (kernel) means ``!u``; ``ro`` means ``!w``.

    Raises:
        ConfigError: an unknown word.
    """
    need, forbid = Perm.NONE, Perm.NONE
    for word in (w.strip().lower() for w in text.replace("+", ",").split(",")):
        if not word:
            continue
        neg = word.startswith(("!", "_", "-"))
        word = word.lstrip("!_-")
        if word in ("k", "s", "kernel"):
            neg, word = not neg, "u"
        elif word == "ro":
            neg, word = not neg, "w"
        elif word == "user":
            word = "u"
        if word not in _LETTERS:
            raise ConfigError(f"unknown permission {word!r} in {text!r} (use r w x u g k, !x)")
        if neg:
            forbid |= _LETTERS[word]
        else:
            need |= _LETTERS[word]
    if need & forbid:
        raise ConfigError(f"permission filter {text!r} both needs and forbids {need & forbid!r}")
    return need, forbid


def parse_sizes(text: str | Iterable[str]) -> frozenset[int]:
    """``4K,2M,1G`` to sizes in bytes."""
    from pagewalk.memory.physical import parse_size

    words = text.split(",") if isinstance(text, str) else list(text)
    return frozenset(parse_size(w) for w in words if w.strip())
