"""pagewalk: an OS kernel's paging subsystem, bit-exact, and an inspector for real page tables.

The package follows the architecture in ``docs/DESIGN.md``: formats (bits) -> memory (bytes) ->
walk (read) -> space (write) -> mmu (CPU) -> kernel (OS model) -> inspect/cli (people). The
manuals it follows are Intel SDM vol. 3A ch. 4, the Arm ARM chapter D8 and the RISC-V privileged
spec's virtual-memory sections.

``pagewalk.open(path, ...)`` opens a dump or a saved image as a :class:`~pagewalk.machine.Machine`
with the ``pagewalk`` command's register options (``docs/library.md``); it and ``Machine`` are
imported on first use, so ``import pagewalk`` stays light.
"""

from typing import TYPE_CHECKING, Any

from pagewalk.errors import PageFault, PagingError
from pagewalk.flush import Flush
from pagewalk.formats import MODE_NAMES, MemType, PagingMode, Perm, make_mode
from pagewalk.memory import PhysicalMemory
from pagewalk.space import AddressSpace
from pagewalk.walk import Fault, Step, Walk, translate, walk

if TYPE_CHECKING:
    from pagewalk.machine import Machine, open

__version__ = "0.1.0"

#: names imported on first use, by the module that holds them
_LAZY = {"open": "pagewalk.machine", "Machine": "pagewalk.machine"}


def __getattr__(name: str) -> Any:
    """``pagewalk.open`` and ``pagewalk.Machine``, imported when first asked for."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pagewalk' has no attribute {name!r}")


__all__ = [
    "MODE_NAMES",
    "AddressSpace",
    "Fault",
    "Flush",
    "Machine",
    "MemType",
    "PageFault",
    "PagingError",
    "PagingMode",
    "Perm",
    "PhysicalMemory",
    "Step",
    "Walk",
    "make_mode",
    "open",
    "translate",
    "walk",
]
