"""pagewalk: an OS kernel's paging subsystem, bit-exact, and an inspector for real page tables.

The package follows the architecture in ``docs/DESIGN.md``: formats (bits) -> memory (bytes) ->
walk (read) -> space (write) -> mmu (CPU) -> kernel (OS model) -> inspect/cli (people). The
manuals it follows are Intel SDM vol. 3A ch. 4, the Arm ARM chapter D8 and the RISC-V privileged
spec's virtual-memory sections.

``pagewalk.open(path, ...)`` opens a dump or a saved image as a :class:`~pagewalk.machine.Machine`
with the ``pagewalk`` command's register options (``docs/library.md``). Every public name is
imported on first use (PEP 562), so ``import pagewalk`` (and so the ``pagewalk`` command, whose
modules are inside this package) stays light.
"""

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pagewalk.errors import PageFault, PagingError
    from pagewalk.flush import Flush
    from pagewalk.formats import MODE_NAMES, MemType, PagingMode, Perm, make_mode
    from pagewalk.machine import Machine, open
    from pagewalk.memory import PhysicalMemory
    from pagewalk.space import AddressSpace
    from pagewalk.walk import Fault, Step, Walk, translate, walk

__version__ = "0.1.0"

#: every public name, and the module that holds it, imported on first use (PEP 562)
_LAZY = {
    "PageFault": "pagewalk.errors",
    "PagingError": "pagewalk.errors",
    "Flush": "pagewalk.flush",
    "MODE_NAMES": "pagewalk.formats",
    "MemType": "pagewalk.formats",
    "PagingMode": "pagewalk.formats",
    "Perm": "pagewalk.formats",
    "make_mode": "pagewalk.formats",
    "Machine": "pagewalk.machine",
    "open": "pagewalk.machine",
    "PhysicalMemory": "pagewalk.memory",
    "AddressSpace": "pagewalk.space",
    "Fault": "pagewalk.walk",
    "Step": "pagewalk.walk",
    "Walk": "pagewalk.walk",
    "translate": "pagewalk.walk",
    "walk": "pagewalk.walk",
}


def __getattr__(name: str) -> Any:
    """A public name, imported from the module that holds it when first asked for."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pagewalk' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the lazy ones included."""
    return sorted({*globals(), *_LAZY})


class _Package(types.ModuleType):
    """The package's module object. Importing the submodule ``pagewalk.walk`` binds it as the
    package's ``walk``; the public ``pagewalk.walk`` is the function of that name, so the
    function is bound instead (as the eager ``from pagewalk.walk import walk`` used to)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "walk" and isinstance(value, types.ModuleType):
            value = value.walk
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
