"""Inspection: enumeration, filters, reverse map, diff, lint and statistics of page tables.

See :mod:`pagewalk.inspect.mappings` for enumeration.
"""

from pagewalk.inspect.mappings import EnumStats, Mapping, mappings

__all__ = ["EnumStats", "Mapping", "mappings"]
