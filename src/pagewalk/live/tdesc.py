"""A stub's target description: which registers it has, their numbers, sizes and features.

One idea: the XML a stub serves through ``qXfer:features:read`` (GDB manual, "Target
Descriptions", §G.2 "Target Description Format" and §G.3 "Predefined Target Types") -> a table
of registers. ``target.xml`` names the architecture and includes the feature documents
(``<xi:include href=...>``); each ``<reg>`` has a ``name`` and ``bitsize`` and, when ``regnum``
is absent, the number one past the register before it, across the documents in order.

Comments are dropped first (QEMU's x86-64 description comments out ``ss_base`` and two more,
which must not take numbers). The XML comes from the peer, so it is read with regular
expressions over its tags (no entity expansion, no DTD), with a bound on the documents.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from pagewalk.errors import LiveError

#: the most documents (target.xml and its includes) one description may take
MAX_DOCUMENTS = 64
_TAG = re.compile(rb"<(xi:include|reg|architecture|feature)\b([^>]*)>(?:([^<]*)</architecture>)?")
_COMMENT = re.compile(rb"<!--.*?(-->|$)", re.DOTALL)
_ATTR = re.compile(rb'([A-Za-z_:-]+)\s*=\s*"([^"]*)"')


@dataclass(frozen=True)
class Register:
    """One register: its name, GDB number, width in bits and the feature that defines it."""

    name: str
    number: int
    bits: int
    feature: str


@dataclass
class Description:
    """The registers of a target, by lower-case name, and its architecture."""

    architecture: str
    registers: dict[str, Register]

    def find(self, name: str) -> Register | None:
        """The register called ``name`` (any case), or None."""
        return self.registers.get(name.lower())


def parse(fetch: Callable[[str], bytes], where: str) -> Description:
    """Read ``target.xml`` and every document it includes through ``fetch(annex)``.

    Raises:
        LiveError: more than :data:`MAX_DOCUMENTS` documents, or a ``<reg>`` without a name
            or with a bad number or size.
    """
    arch = ""
    regs: dict[str, Register] = {}
    number = 0
    pending = ["target.xml"]
    seen = 0
    feature = ""
    while pending:
        annex = pending.pop(0)
        seen += 1
        if seen > MAX_DOCUMENTS:
            raise LiveError(f"{where}: target description includes more than {MAX_DOCUMENTS}")
        doc = _COMMENT.sub(b"", fetch(annex))  # QEMU comments registers out
        includes = []
        for tag, attrs_text, text in _TAG.findall(doc):
            attrs = {k.decode(): v.decode(errors="replace") for k, v in _ATTR.findall(attrs_text)}
            if tag == b"architecture":
                arch = text.decode(errors="replace").strip()
            elif tag == b"xi:include" and "href" in attrs:
                includes.append(attrs["href"])
            elif tag == b"feature":
                feature = attrs.get("name", annex)
            elif tag == b"reg":
                number = _register(attrs, number, feature or annex, regs, where)
        pending[:0] = includes  # documents are numbered in include order
    return Description(arch, regs)


def _register(
    attrs: dict[str, str], number: int, feature: str, regs: dict[str, Register], where: str
) -> int:
    """Add one ``<reg>``; returns the number the next one takes by default."""
    name = attrs.get("name")
    try:
        if "regnum" in attrs:
            number = int(attrs["regnum"], 10)
        bits = int(attrs.get("bitsize", ""), 10)
    except ValueError:
        raise LiveError(f"{where}: target description register {name!r} has a bad number") from None
    if not name or bits <= 0 or bits > 4096 or not 0 <= number < 1 << 20:
        raise LiveError(f"{where}: target description register {name!r} is malformed")
    regs.setdefault(name.lower(), Register(name, number, bits, feature))
    return number + 1
