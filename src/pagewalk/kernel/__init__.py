"""The OS model: a kernel memory manager and the five seed kernels as profiles.

See :mod:`pagewalk.kernel.mm` (boot, processes, sharing), :mod:`pagewalk.kernel.process` (a
process and its areas), :mod:`pagewalk.kernel.faults` (the page-fault handler) and
:mod:`pagewalk.kernel.profiles`. Paging follows Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V
privileged spec.
"""

from pagewalk.kernel.mm import Event, Kernel
from pagewalk.kernel.process import Process, ProcessFault, SharedMemory, Vma
from pagewalk.kernel.profiles import get_profile, profile_names

__all__ = [
    "Event",
    "Kernel",
    "Process",
    "ProcessFault",
    "SharedMemory",
    "Vma",
    "get_profile",
    "profile_names",
]
