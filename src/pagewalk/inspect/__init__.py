"""Inspection of page tables: filters, reverse map, diff, lint, statistics and QEMU's text formats.

Enumeration itself (every mapping, merged into ranges) is the library layer
:mod:`pagewalk.enumerate`, beside the walker; the inspectors build on it (Intel SDM vol. 3A
ch. 4, Arm ARM D8, RISC-V privileged spec for what each finding checks).
"""
