"""Physical memory: simulated RAM (and, later, read-only dump backends).

See :mod:`pagewalk.memory.physical` for the model and the manual sections it follows.
"""

from pagewalk.memory.physical import PhysicalMemory, Region, parse_size

__all__ = ["PhysicalMemory", "Region", "parse_size"]
