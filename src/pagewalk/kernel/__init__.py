"""The OS model: a kernel memory manager and the five seed kernels as profiles.

See :mod:`pagewalk.kernel.mm` (boot, processes, faults) and :mod:`pagewalk.kernel.profiles`.
"""

from pagewalk.kernel.mm import Event, Kernel, Process, ProcessFault, SharedMemory, Vma
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
