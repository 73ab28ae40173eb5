"""The one error tree of pagewalk, rooted at :class:`PagingError`.

Every failure a user can cause (a bad address, a mapping conflict, an exhausted allocator, a
corrupt dump) raises a subclass of :class:`PagingError` whose message names the address, the
entry, the level or the file offset, printed in hex. Foreign exceptions are translated into these
at the boundary. A hardware page fault is :class:`PageFault` (Intel SDM vol. 3A §4.7 for the x86
error code, Arm ARM D8 for fault status codes, RISC-V privileged spec §12 for page-fault causes).
"""

from __future__ import annotations

from typing import Any


def hx(value: int) -> str:
    """Format an address or raw entry the way every message prints it."""
    return f"{value:#x}"


class PagingError(Exception):
    """Base class of every error pagewalk raises on purpose."""


class ConfigError(PagingError):
    """A paging mode, register value or option that cannot be used."""


class AddressError(PagingError):
    """An address that the mode cannot accept."""


class NonCanonicalAddressError(AddressError):
    """A virtual address outside the mode's canonical ranges."""


class MisalignedAddressError(AddressError):
    """An address or size that is not aligned as the operation requires."""


class PhysicalAddressTooWideError(AddressError):
    """A physical address wider than the mode (or MAXPHYADDR) can encode."""


class PhysicalMemoryError(PagingError):
    """A read or write of physical memory that is not RAM."""


class MappingError(PagingError):
    """A map, unmap, protect or remap that conflicts with the tables."""


class AlreadyMappedError(MappingError):
    """The page is already mapped; ``existing_entry`` holds the raw entry found."""

    def __init__(self, message: str, *, va: int, existing_entry: int, level: int) -> None:
        super().__init__(message)
        self.va = va
        self.existing_entry = existing_entry
        self.level = level


class NotMappedError(MappingError):
    """The operation needs a mapping that is not there."""

    def __init__(self, message: str, *, va: int) -> None:
        super().__init__(message)
        self.va = va


class HugePageConflictError(MappingError):
    """A huge page stands where a table is needed, or a table where a huge page is asked."""

    def __init__(self, message: str, *, va: int, level: int, existing_entry: int) -> None:
        super().__init__(message)
        self.va = va
        self.level = level
        self.existing_entry = existing_entry


class OutOfMemoryError(PagingError):
    """An allocator has no room for the request; nothing was changed."""


class AllocatorError(PagingError):
    """A free of something not allocated, a double free, or a bad allocator argument."""


class EntryFormatError(PagingError):
    """An entry that the format cannot encode or that breaks its rules (with the reason)."""


class MemoryMapError(PagingError):
    """A firmware memory map that is malformed (overlap, zero length, bad type)."""


class DumpError(PagingError):
    """A memory dump that cannot be read (bad or truncated input, with the file offset)."""


class LiveError(PagingError):
    """A running machine that cannot be read: a gdbstub or QMP socket refused, timed out,
    answered garbage or lacks a register (the message names host:port or the socket)."""


class OutputError(PagingError):
    """An output file that cannot be written safely (an input, a link, a device, a full disk)."""


class LimitError(PagingError):
    """Input that would cost more than a documented, overridable limit allows (the message names
    the limit and how to raise it): a hostile dump must not cost unbounded time or memory."""


class PageFault(PagingError):
    """A fault raised by a walk or an access check, with the architecture's own details.

    Attributes:
        va: the faulting virtual address (CR2 / FAR / stval).
        kind: the fault kind as the JSON contract names it (``not-present``, ``reserved``,
            ``non-canonical``, ``protection``, ``translation``, ``access-flag``,
            ``address-size``, ``permission``, ``page-fault``).
        level: the architecture's number for the level where the walk stopped, or None.
        access: ``read``, ``write`` or ``exec``.
        raw_entry: the raw entry that caused the fault, if one was read.
        code: the architecture's code (x86 #PF error code, AArch64 fault status code,
            RISC-V exception cause), if any.
        reason: a sentence saying why.
    """

    def __init__(
        self,
        *,
        va: int,
        kind: str,
        level: int | None,
        reason: str,
        access: str = "read",
        raw_entry: int | None = None,
        code: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        where = "" if level is None else f" at level {level}"
        super().__init__(f"{kind} fault on {access} of VA {hx(va)}{where}: {reason}")
        self.va = va
        self.kind = kind
        self.level = level
        self.reason = reason
        self.access = access
        self.raw_entry = raw_entry
        self.code = code
        self.details = dict(details or {})

    def to_json(self) -> dict[str, Any]:
        """The fault as the CLI's JSON contract prints it."""
        out: dict[str, Any] = {"kind": self.kind, "level": self.level}
        if self.code is not None:
            out["code"] = self.code
        return out
