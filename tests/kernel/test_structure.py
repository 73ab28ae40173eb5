"""The kernel package's shape: the manager on top, and architecture choices read from facts.

The fault handler, processes and profiles must not need the memory manager (the whole package's
import graph has no cycles: tests/test_architecture.py). The register and break-before-make checks
follow Intel SDM vol. 3A §4.10.1 (CR4.PCIDE), §4.10.2.4 (CR4.PGE) and Arm ARM D8.16.1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp
import pytest

import pagewalk
from pagewalk.formats import make_mode
from pagewalk.formats.x86_bits import CR4_PCIDE, CR4_PGE
from pagewalk.kernel import Kernel, get_profile
from pagewalk.kernel.machine import kernel_regs
from pagewalk.mmu import X86Regs, default_regs


def _imports(module: str) -> set[str]:
    """The package modules ``module`` imports (grimp: TYPE_CHECKING and local imports count)."""
    sys.path.insert(0, str(Path(pagewalk.__file__).parent.parent))
    try:
        graph = grimp.build_graph("pagewalk", cache_dir=None)
    finally:
        sys.path.pop(0)
    return set(graph.find_modules_directly_imported_by(module))


@pytest.mark.parametrize(
    "module", ["pagewalk.kernel.faults", "pagewalk.kernel.process", "pagewalk.kernel.profile"]
)
def test_the_handler_processes_and_profiles_do_not_need_the_manager(module: str) -> None:
    assert "pagewalk.kernel.mm" not in _imports(module)


@pytest.mark.parametrize(
    ("mode_name", "bits"),
    [("x86_64", CR4_PCIDE | CR4_PGE), ("la57", CR4_PCIDE | CR4_PGE), ("x86", CR4_PGE)],
)
def test_kernel_cpu_turns_on_pcid_and_global_pages_where_the_mode_has_them(
    mode_name: str, bits: int
) -> None:
    mode = make_mode(mode_name)
    regs = kernel_regs(mode)
    assert isinstance(regs, X86Regs)
    assert regs.cr4 == mode.cr4 | bits  # type: ignore[attr-defined]
    assert regs.pcide == bool(bits & CR4_PCIDE) and regs.pge


@pytest.mark.parametrize("mode_name", ["aarch64", "sv39", "sv32"])
def test_kernel_cpu_keeps_the_defaults_where_tagging_needs_no_enable(mode_name: str) -> None:
    mode = make_mode(mode_name)
    assert kernel_regs(mode) == default_regs(mode)


@pytest.mark.parametrize(("profile", "bbm"), [("sel4-aarch64", True), ("powernex", False)])
def test_spaces_get_break_before_make_only_where_the_architecture_needs_it(
    profile: str, bbm: bool
) -> None:
    kernel = Kernel(get_profile(profile)).boot()
    proc = kernel.spawn("p")
    assert kernel.kernel_space is not None
    for space in (kernel.kernel_space, proc.space):
        assert (space.bbm is not None) == bbm
