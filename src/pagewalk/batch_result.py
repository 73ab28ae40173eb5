"""What a batch translation returns: fault kinds as small codes, and arrays parallel to the VAs.

Both batch walkers, the numpy one (:mod:`pagewalk.batch`) and the compiled one
(:mod:`pagewalk.fast`), fill a :class:`BatchResult` and speak the same fault codes, so this
module sits below both (``batch -> fast -> batch_result``, never the other way). The kinds are
the JSON contract's (:class:`pagewalk.walk.Fault`), the faults of Intel SDM vol. 3A §4.7, Arm ARM
D8.2-D8.3 and the RISC-V privileged spec's page-fault rules, plus ``bad-table`` for an entry
outside RAM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pagewalk.errors import ConfigError
from pagewalk.formats.base import U64Array

#: fault kinds by code; code 0 means "translated"
FAULT_KINDS = (
    "",
    "not-present",
    "reserved",
    "non-canonical",
    "translation",
    "access-flag",
    "address-size",
    "page-fault",
    "bad-table",
)
#: fault codes by kind
FAULT_CODES = {kind: code for code, kind in enumerate(FAULT_KINDS)}
#: the PA of a walk that faulted
NO_PA = np.uint64(0xFFFFFFFFFFFFFFFF)
I8Array = npt.NDArray[np.int8]


def fault_code(fault: str | None) -> int:
    """The code of a decoded entry's fault (0 for none; an unknown kind counts as reserved)."""
    return FAULT_CODES.get(fault, FAULT_CODES["reserved"]) if fault else 0


@dataclass
class BatchResult:
    """Arrays parallel to the input addresses.

    Attributes:
        pa: physical addresses; ``0xFFFFFFFFFFFFFFFF`` where the walk faulted.
        page_size: leaf sizes; 0 where the walk faulted.
        fault: fault codes (index into :data:`FAULT_KINDS`); 0 for a translation.
        level: the architecture's level number of the fault; -1 when there is none.
    """

    pa: U64Array
    page_size: U64Array
    fault: I8Array
    level: I8Array

    @classmethod
    def empty(cls, n: int) -> BatchResult:
        """Uninitialised arrays for ``n`` results, to pass as ``out=`` chunk after chunk."""
        return cls(np.empty(n, np.uint64), np.empty(n, np.uint64), np.empty(n, np.int8),
                   np.empty(n, np.int8))  # fmt: skip

    def head(self, n: int) -> BatchResult:
        """The first ``n`` results (views, not copies)."""
        return BatchResult(self.pa[:n], self.page_size[:n], self.fault[:n], self.level[:n])

    def check_out(self, n: int) -> None:
        """Raise ConfigError unless these arrays can take ``n`` results in place."""
        want = (("pa", np.uint64), ("page_size", np.uint64), ("fault", np.int8), ("level", np.int8))
        for name, dtype in want:
            arr = getattr(self, name)
            if arr.shape != (n,) or arr.dtype != dtype or not arr.flags.c_contiguous:
                raise ConfigError(
                    f"out.{name} must be a contiguous {np.dtype(dtype).name} array of {n} "
                    f"elements (got {arr.dtype.name}{list(arr.shape)})"
                )
            if not arr.flags.writeable:
                raise ConfigError(f"out.{name} is read-only")

    def kinds(self) -> list[str | None]:
        """Fault kinds as strings (None for a translation)."""
        return [FAULT_KINDS[c] or None for c in self.fault.tolist()]


__all__ = ["FAULT_CODES", "FAULT_KINDS", "NO_PA", "BatchResult", "I8Array", "fault_code"]
