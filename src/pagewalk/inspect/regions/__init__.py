"""Named regions of known kernel layouts: which part of the address space a VA is in.

Linux on x86-64 (4- and 5-level, with the KASLR bases of the direct map, vmalloc and vmemmap
found in the tables), i386, AArch64 and RISC-V, and the seed kernels (PowerNex, Redox, Comus,
seL4-style, atOS-RT). :func:`detect` picks one (``--layout``); a :class:`Layout` names a VA
(:meth:`Layout.name_of`) or a column of them (:meth:`Layout.index`). Layouts follow the kernels'
own documents, cited per module, over the paging of Intel SDM vol. 3A ch. 4, Arm ARM D8 and the
RISC-V privileged spec.
"""

from pagewalk.inspect.regions.detect import CHOICES, detect, linux
from pagewalk.inspect.regions.model import Layout, Region

__all__ = ["CHOICES", "Layout", "Region", "detect", "linux"]
