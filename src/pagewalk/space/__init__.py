"""The address-space builder: page tables changed the way a kernel changes them.

One idea: :class:`AddressSpace` maps, unmaps, protects, remaps and clones real page tables in
simulated physical memory for every paging mode (Intel SDM vol. 3A ch. 4; Arm ARM D8, with
D8.16.1 break-before-make; RISC-V privileged spec, Sv32-Sv57). The package is layered with no
import cycles: :mod:`.tables` and :mod:`.descent` at the bottom, then :mod:`.ownership` and
:mod:`.announce`, the range visitors (:mod:`.rangeop`, :mod:`.mapping`, :mod:`.editing`,
:mod:`.ranges`) and :mod:`.clone`, and :mod:`.address_space` on top, which composes them.
"""

from pagewalk.space.address_space import AddressSpace
from pagewalk.space.ownership import table_limit
from pagewalk.space.ranges import DEFAULT_PERM

__all__ = ["DEFAULT_PERM", "AddressSpace", "table_limit"]
