"""One walker, one permission model: what people see and what the CPU does must agree.

:func:`pagewalk.walk.walk` (the record ``walk`` and ``maps`` print), :func:`pagewalk.walk.translate`
(the scalar fast path), :meth:`PagingMode.effective` (the enumerator's permission) and the MMU's
TLB-miss walk (:func:`pagewalk.mmu.walker.walk_access`) are one descent with one fold. On random
spaces whose pointer entries were damaged on purpose (rights restricted at upper levels, as Intel
SDM vol. 3A §4.6.1, Arm ARM D8.4 and the RISC-V G-on-a-pointer rule combine them), they must give
the same address, size, fault and permission for every probe.
"""

from __future__ import annotations

import random

import pytest
from mmu_builders import new_space, random_space

from pagewalk import Perm
from pagewalk.formats import riscv as rv
from pagewalk.formats.base import EntryKind
from pagewalk.mmu.walker import Translation, walk_access
from pagewalk.walk import Fault, translate, walk

MODES = ["x86", "pae", "x86_64", "la57", "aarch64", "sv32", "sv39", "sv48", "sv57"]


@pytest.mark.parametrize("name", MODES)
@pytest.mark.parametrize("seed", range(6))
def test_every_view_of_a_walk_agrees(name: str, seed: int) -> None:
    built = random_space(name, random.Random(seed))
    mode, mem, roots = built.mode, built.mem, built.space.roots
    checked = 0
    for va in built.probes:
        record = walk(mem, mode, roots, va)
        pa, size, fault = translate(mem, mode, roots, va)
        cpu = walk_access(mem, mode, roots, va, update=False)
        assert (pa, size) == (record.pa, record.page_size)
        assert (fault is None) == record.ok
        if fault is not None:
            assert record.fault is not None and isinstance(cpu, Fault)
            assert (fault.kind, fault.level) == (record.fault.kind, record.fault.level)
            assert (cpu.kind, cpu.level) == (fault.kind, fault.level)
            continue
        assert isinstance(cpu, Translation)
        assert cpu.pa_of(va) == pa and cpu.size == size
        # the MMU's rights, the record's permission and the enumerator's fold are one model
        assert cpu.rights.perm(cpu.global_) == record.perm
        path = [step.entry for step in record.steps]
        assert mode.effective(path, record.half) == record.perm
        # each step's permission never grows on the way down (it is a fold)
        for upper, lower in zip(record.steps, record.steps[1:], strict=False):
            if upper.entry.kind is EntryKind.TABLE:
                assert lower.perm & ~Perm.GLOBAL <= upper.perm
        checked += 1
    assert checked, "no probe translated: the random space is empty"


@pytest.mark.parametrize("name", ["sv39", "sv48"])
def test_riscv_global_pointer_makes_the_leaf_global(name: str) -> None:
    """Privileged spec: G on a non-leaf PTE makes every mapping below it global, in every view."""
    mode, mem, space = new_space(name)
    va = 0x4000_0000
    space.map(va, 0x30_0000, 4096, Perm.READ | Perm.WRITE).ignore()
    root_step = walk(mem, mode, space.roots, va).steps[0]
    mem.write_entry(root_step.entry_pa, mode.entry_size, root_step.raw | rv.G)
    record = walk(mem, mode, space.roots, va)
    assert record.perm & Perm.GLOBAL
    path = [step.entry for step in record.steps]
    assert mode.effective(path, record.half) & Perm.GLOBAL
    cpu = walk_access(mem, mode, space.roots, va, update=False)
    assert isinstance(cpu, Translation) and cpu.global_


def test_x86_accessed_hook_sets_a_on_pointers_only_when_asked() -> None:
    """SDM §4.8: the walker sets A in every paging-structure entry it uses; a record does not."""
    mode, mem, space = new_space("x86_64")
    va = 0x7000_0000
    space.map(va, 0x30_0000, 4096, Perm.READ).ignore()
    before = [s.raw for s in walk(mem, mode, space.roots, va).steps]
    walk_access(mem, mode, space.roots, va, update=False)
    assert [s.raw for s in walk(mem, mode, space.roots, va).steps] == before
    walk_access(mem, mode, space.roots, va, update=True)
    after = [s.raw for s in walk(mem, mode, space.roots, va).steps]
    assert all(raw & 0x20 for raw in after[:-1]), "A must be set in every pointer entry"
    assert after[-1] == before[-1], "the leaf's A waits for the access check (mark_leaf)"
