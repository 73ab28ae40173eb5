"""The TLB model: set-associative arrays per page size, tagged by ASID/PCID, serving stale data.

A TLB caches translations, not table entries, so after the tables change it keeps answering with
the old translation until software invalidates it (Intel SDM vol. 3A §4.10.2 and §4.10.4; Arm ARM
D8.13; RISC-V privileged spec, SFENCE.VMA). Each page size has its own array of ``sets x ways``
entries with LRU replacement, as real parts do (separate 4K/2M/1G arrays). Entries carry the
ASID/PCID of the address space that filled them; global entries (x86 G with CR4.PGE, Arm nG=0,
RISC-V G) match every ASID. Every invalidation, whether an architecture's instruction or a
:class:`~pagewalk.flush.Flush` from an :class:`~pagewalk.space.AddressSpace`, goes through one
primitive, :meth:`TLB.drop`, which says which VAs, which ASID and whether global entries go.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from pagewalk.flush import Flush
from pagewalk.formats.base import PagingMode
from pagewalk.mmu.pwc import PagingStructureCache
from pagewalk.mmu.walker import Translation

_GLOBAL = -1  # the tag of a global entry

#: called on every invalidation with (lo, hi, asid, globals, walk_cache)
InvalidateHook = Callable[[int | None, int | None, int | None, bool, bool], None]


@dataclass(frozen=True)
class TLBConfig:
    """The shape of a TLB.

    Attributes:
        arrays: ``{page_size: (sets, ways)}``; sizes not listed get ``default``.
        default: ``(sets, ways)`` for any other page size the mode has.
        pwc: keep a paging-structure (walk) cache too.
        pwc_entries: entries per level in that cache.
    """

    arrays: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    default: tuple[int, int] = (16, 4)
    pwc: bool = False
    pwc_entries: int = 32

    def shape(self, page_size: int) -> tuple[int, int]:
        """``(sets, ways)`` of the array for ``page_size``."""
        return self.arrays.get(page_size, self.default)


@dataclass
class TLBStats:
    """Counters since the TLB was made (or :meth:`reset`).

    Attributes:
        hits, misses: lookups that found or did not find an entry.
        walks: page walks made (misses, plus write hits that had to set a dirty bit).
        reads: page-table memory reads made by those walks.
        evictions: entries pushed out by a fill into a full set.
        invalidated: entries removed by invalidations.
    """

    hits: int = 0
    misses: int = 0
    walks: int = 0
    reads: int = 0
    evictions: int = 0
    invalidated: int = 0

    @property
    def hit_rate(self) -> float:
        """Hits over lookups (0 when there were none)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    @property
    def reads_per_walk(self) -> float:
        """Average memory reads per walk (lower with a paging-structure cache)."""
        return self.reads / self.walks if self.walks else 0.0


class _Array:
    """One set-associative array of entries of one page size."""

    def __init__(self, size: int, sets: int, ways: int) -> None:
        if sets < 1 or ways < 1 or sets & (sets - 1):
            raise ValueError(
                f"TLB array needs a power-of-two number of sets and ways >= 1, got {sets}x{ways}"
            )
        self.size, self.shift = size, size.bit_length() - 1
        self.n_sets, self.ways = sets, ways
        self.sets: list[OrderedDict[tuple[int, int], Translation]] = [
            OrderedDict() for _ in range(sets)
        ]

    def lookup(self, va: int, asid: int) -> Translation | None:
        vpn = va >> self.shift
        ways = self.sets[vpn & (self.n_sets - 1)]
        key = (vpn, asid)
        t = ways.get(key)
        if t is None:
            key = (vpn, _GLOBAL)
            t = ways.get(key)
            if t is None:
                return None
        ways.move_to_end(key)
        return t

    def insert(self, t: Translation) -> Translation | None:
        vpn = t.va >> self.shift
        ways = self.sets[vpn & (self.n_sets - 1)]
        ways[(vpn, _GLOBAL if t.global_ else t.asid)] = t
        ways.move_to_end((vpn, _GLOBAL if t.global_ else t.asid))
        if len(ways) > self.ways:
            return ways.popitem(last=False)[1]
        return None

    def candidates(
        self, lo: int | None, hi: int | None
    ) -> Iterator[OrderedDict[tuple[int, int], Translation]]:
        """The sets that may hold entries for ``[lo, hi)`` (probe by VPN when that is cheaper)."""
        if lo is None or hi is None or ((hi - lo) >> self.shift) >= self.n_sets:
            yield from self.sets
            return
        seen: set[int] = set()
        for vpn in range(lo >> self.shift, ((hi - 1) >> self.shift) + 1):
            index = vpn & (self.n_sets - 1)
            if index not in seen:
                seen.add(index)
                yield self.sets[index]


class TLB:
    """A TLB for one CPU in ``mode``.

    Args:
        mode: the paging mode (its page sizes decide which arrays exist).
        config: sets and ways per page size, and the paging-structure cache switch.
    """

    def __init__(self, mode: PagingMode, config: TLBConfig | None = None) -> None:
        self.mode = mode
        self.config = config or TLBConfig()
        self._arrays = [_Array(s, *self.config.shape(s)) for s in sorted(mode.leaf_sizes())]
        self.stats = TLBStats()
        self.pwc = PagingStructureCache(self.config.pwc_entries) if self.config.pwc else None
        #: the ASID each address space was installed with (``Flush.space_id`` -> ASID)
        self.asid_of_space: dict[int, int] = {}
        #: called on every invalidation (the break-before-make checker listens)
        self.invalidate_hooks: list[InvalidateHook] = []
        #: called with every Flush applied (the stale-TLB detector listens)
        self.flush_hooks: list[Callable[[Flush], None]] = []

    # ------------------------------------------------------------------ lookups
    def lookup(self, va: int, asid: int) -> Translation | None:
        """The entry translating ``va`` for ``asid`` (or a global one), or None."""
        for array in self._arrays:
            t = array.lookup(va, asid)
            if t is not None:
                return t
        return None

    def insert(self, t: Translation) -> None:
        """Fill an entry; the least recently used entry of a full set is evicted."""
        array = self._array_for(t.size)
        if array is None:  # a page size with no array is cached fractured to the smallest
            array = self._arrays[0]
            offset = t.va & (t.size - 1) & ~(array.size - 1)
            t.va, t.pa, t.size = t.va + offset, t.pa + offset, array.size
        if array.insert(t) is not None:
            self.stats.evictions += 1

    def _array_for(self, size: int) -> _Array | None:
        for array in self._arrays:
            if array.size == size:
                return array
        return None

    def entries(self) -> list[Translation]:
        """Every entry held, smallest page size first."""
        return [t for a in self._arrays for ways in a.sets for t in ways.values()]

    def __len__(self) -> int:
        return sum(len(ways) for a in self._arrays for ways in a.sets)

    # ------------------------------------------------------------- invalidation
    def drop(
        self,
        lo: int | None = None,
        hi: int | None = None,
        *,
        asid: int | None = None,
        globals_: bool = True,
        walk_cache: bool = True,
    ) -> int:
        """Invalidate entries: the one primitive every flush instruction maps to.

        Args:
            lo, hi: the VA range ``[lo, hi)``; None for every VA.
            asid: drop non-global entries of this ASID only; None for every ASID.
            globals_: also drop global entries in the range.
            walk_cache: also drop paging-structure cache entries for the range and ASID.

        Returns:
            How many TLB entries were dropped.
        """
        dropped = 0
        for array in self._arrays:
            for ways in array.candidates(lo, hi):
                doomed = [
                    key
                    for key, t in ways.items()
                    if (lo is None or hi is None or (t.va < hi and lo < t.va + t.size))
                    and (globals_ if t.global_ else asid is None or t.asid == asid)
                ]
                for key in doomed:
                    del ways[key]
                dropped += len(doomed)
        if walk_cache and self.pwc is not None:
            self.pwc.drop(lo, hi, asid)
        self.stats.invalidated += dropped
        for hook in self.invalidate_hooks:
            hook(lo, hi, asid, globals_, walk_cache)
        return dropped

    def flush_all(self) -> None:
        """Forget everything, global entries and walk caches included."""
        self.drop()

    def apply_flush(self, flush: Flush) -> None:
        """Apply an :class:`~pagewalk.flush.Flush` the way a kernel would.

        Each range is invalidated by VA for the ASID the changed space was installed with (every
        ASID if it was never installed here), global entries included, as INVLPG, TLBI VAE1 and
        SFENCE.VMA with an address do; ``everything`` drops that ASID's entries and all global
        ones; ``tables_freed`` also empties the ASID's paging-structure cache.
        """
        asid = self.asid_of_space.get(flush.space_id)
        if flush.everything:
            self.drop(asid=asid)
        else:
            for va, size in flush.ranges:
                self.drop(va, va + size, asid=asid)
        if flush.tables_freed and self.pwc is not None:
            self.pwc.drop(asid=asid)
        for hook in self.flush_hooks:
            hook(flush)
