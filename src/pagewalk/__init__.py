"""pagewalk: an OS kernel's paging subsystem, bit-exact, and an inspector for real page tables.

The package follows the architecture in ``docs/DESIGN.md``: formats (bits) -> memory (bytes) ->
walk (read) -> space (write) -> mmu (CPU) -> kernel (OS model) -> inspect/cli (people). The
manuals it follows are Intel SDM vol. 3A ch. 4, the Arm ARM chapter D8 and the RISC-V privileged
spec's virtual-memory sections.
"""

from pagewalk.errors import PageFault, PagingError
from pagewalk.flush import Flush
from pagewalk.formats import MODE_NAMES, MemType, PagingMode, Perm, make_mode
from pagewalk.memory import PhysicalMemory
from pagewalk.space import AddressSpace
from pagewalk.walk import Fault, Step, Walk, translate, walk

__version__ = "0.1.0"

__all__ = [
    "MODE_NAMES",
    "AddressSpace",
    "Fault",
    "Flush",
    "MemType",
    "PageFault",
    "PagingError",
    "PagingMode",
    "Perm",
    "PhysicalMemory",
    "Step",
    "Walk",
    "make_mode",
    "translate",
    "walk",
]
