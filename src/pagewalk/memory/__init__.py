"""Physical memory: simulated RAM and read-only dumps, read through one ladder of protocols.

:mod:`pagewalk.memory.protocols` says what each layer needs from memory;
:mod:`pagewalk.memory.segments` holds the reads shared by simulated RAM
(:mod:`pagewalk.memory.physical`, where the manual sections are cited) and dump files
(:mod:`pagewalk.memory.dump`, opened by :mod:`pagewalk.memory.files`).
"""

from pagewalk.memory.physical import PhysicalMemory, Region, parse_size

__all__ = ["PhysicalMemory", "Region", "parse_size"]
