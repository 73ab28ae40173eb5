"""The stage-2 options (``--ept``, ``--vttbr``/``--vtcr``, ``--hgatp``, ``--ncr3``) and the
nested machine they make.

With one of them, an image is a hypervisor's memory: the register options (``--mode``,
``--root``/``--ttbr0``/``--satp``...) describe the guest's stage 1, whose roots are
guest-physical, and this option the stage-2 tables in the image: EPTP (Intel SDM vol. 3C
§25.6.11, §29.3), VTTBR_EL2 with VTCR_EL2 (Arm ARM D8 stage 2, D19), hgatp (RISC-V privileged
spec, hypervisor chapter) or AMD's nCR3 (APM vol. 2 §15.25.3, long-mode tables). The guest's
family must be the stage 2's (checked from :attr:`ArchFacts.family` in a table here).
:func:`nested_machine` returns a :class:`~pagewalk.nested_machine.NestedMachine` with
``.walk(va)``, ``.translate(va)`` and ``.maps()`` (guest VA -> host PA, ``maps --nested``).
:func:`open_nested` is how ``walk``, ``translate`` and ``maps`` open their image: with a
stage-2 option, the guest's roots are guest-physical and are not looked for in the image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pagewalk.cli.common import machine_from
from pagewalk.cli.machine import INT
from pagewalk.errors import ConfigError, PhysicalMemoryError, hx
from pagewalk.formats import PagingMode, make_mode
from pagewalk.machine import Machine

if TYPE_CHECKING:  # the two-stage walk (and AddressSpace under it) only when a stage 2 is given
    from pagewalk.memory.protocols import TableReader
    from pagewalk.nested import Stage2
    from pagewalk.nested_machine import NestedMachine

F = TypeVar("F", bound=Callable[..., Any])

#: the stage-2 options, by the guest family each serves (option -> guest family)
OPTION_FAMILY = {"ept": "x86", "ncr3": "x86", "vttbr": "arm", "hgatp": "riscv"}
NESTED_OPTIONS = ("ept", "vttbr", "vtcr", "hgatp", "ncr3")


def nested_options(func: F) -> F:
    """The stage-2 options, for commands that walk or list a guest."""
    options = [
        click.option(
            "--ept", type=INT, help="EPTP: walk the guest (x86) through these EPT tables."
        ),
        click.option(
            "--vttbr", type=INT, help="VTTBR_EL2: walk the guest (AArch64) through stage 2."
        ),
        click.option("--vtcr", type=INT, help="VTCR_EL2 for --vttbr (T0SZ, SL0, TG0, PS)."),
        click.option(
            "--hgatp", type=INT, help="hgatp: walk the guest (RISC-V) through G-stage tables."
        ),
        click.option(
            "--ncr3", type=INT, help="AMD nCR3: walk the guest (x86) through nested tables."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def nested_flag(func: F) -> F:
    """``--nested``: list guest VA -> host PA. A stage-2 option implies it; given alone it is
    refused (exit 2), since the guest's roots mean nothing without a stage 2."""
    return click.option(
        "--nested",
        "nested_flag",
        is_flag=True,
        help="Guest VA -> GPA -> host PA (implied by --ept/--vttbr/--hgatp/--ncr3).",
    )(func)


def stage2_from_options(
    *,
    ept: int | None = None,
    vttbr: int | None = None,
    vtcr: int | None = None,
    hgatp: int | None = None,
    ncr3: int | None = None,
    maxphyaddr: int | None = None,
) -> tuple[Stage2, str] | None:
    """The stage 2 the options describe and the option that gave it, or None if none did.

    Raises:
        ConfigError: two stage-2 options, ``--vtcr`` without ``--vttbr`` or the reverse, or a
            register value the manual reserves (named, with the field).
    """
    given = [n for n, v in (("ept", ept), ("vttbr", vttbr), ("hgatp", hgatp), ("ncr3", ncr3))
             if v is not None]  # fmt: skip
    if len(given) > 1:
        raise ConfigError(f"give one stage 2, not {' and '.join('--' + g for g in given)}")
    if vtcr is not None and vttbr is None:
        raise ConfigError("--vtcr goes with --vttbr (VTCR_EL2 configures VTTBR_EL2's tables)")
    if not given:
        return None
    from pagewalk.formats.ept import ept_from_eptp
    from pagewalk.formats.riscv_gstage import gstage_from_hgatp
    from pagewalk.formats.stage2_arm import arm_s2_from_regs
    from pagewalk.nested import Stage2

    maxphyaddr = 52 if maxphyaddr is None else maxphyaddr
    mode: PagingMode
    if ept is not None:
        mode, root = ept_from_eptp(ept, maxphyaddr=maxphyaddr)
        return Stage2(mode, (root,), "ept", f"EPTP={hx(ept)}"), "ept"
    if vttbr is not None:
        if vtcr is None:
            raise ConfigError("--vttbr needs --vtcr (VTCR_EL2 gives the IPA size and levels)")
        mode, root = arm_s2_from_regs(vttbr, vtcr)
        return Stage2(mode, (root,), "arm", f"VTTBR_EL2={hx(vttbr)}"), "vttbr"
    if hgatp is not None:
        mode, root = gstage_from_hgatp(hgatp)
        return Stage2(mode, (root,), "riscv", f"hgatp={hx(hgatp)}"), "hgatp"
    assert ncr3 is not None
    mode = make_mode("x86_64", maxphyaddr=maxphyaddr)
    root = mode.root_from_register(ncr3)
    return Stage2(mode, (root,), "npt", f"nCR3={hx(ncr3)}"), "ncr3"


def nested_from(
    mem: TableReader, mode: PagingMode, roots: Sequence[int], **opts: int | None
) -> NestedMachine | None:
    """A nested machine for a guest (``mode``, guest-physical ``roots``) over the stage 2 the
    options give (see :func:`stage2_from_options`), or None without a stage-2 option.

    Raises:
        ConfigError: as :func:`stage2_from_options`, or a guest of another family than the
            stage 2 serves.
        PhysicalMemoryError: the stage-2 root lies outside the image.
    """
    keep = (*NESTED_OPTIONS, "maxphyaddr")
    got = stage2_from_options(**{k: v for k, v in opts.items() if k in keep})
    if got is None:
        return None
    s2, option = got
    want, family = OPTION_FAMILY[option], mode.facts.family
    if want != family:
        raise ConfigError(
            f"--{option} describes a stage 2 for {want} guests, but the guest's mode "
            f"{mode.name} is {family}"
        )
    root = s2.roots[0]
    size = s2.mode.entry_size << s2.mode.halves[0].levels[0].bits
    if not mem.is_ram(root, size):
        raise PhysicalMemoryError(
            f"--{option}: the stage-2 root table at PA {hx(root)} (+{hx(size)}) is outside the "
            "image"
        )
    from pagewalk.nested_machine import NestedMachine

    return NestedMachine(mem, mode, roots, s2)


def nested_machine(machine: Machine, **opts: int | None) -> NestedMachine | None:
    """:func:`nested_from` for an opened :class:`~pagewalk.machine.Machine` (its mode and roots
    are the guest's stage 1; its memory is the host's)."""
    return nested_from(machine.mem, machine.mode, machine.roots, **opts)


def open_nested(
    image: str, kwargs: dict[str, Any], *, require: bool = False
) -> tuple[Machine, NestedMachine | None]:
    """Pop the stage-2 and register options from a command's ``kwargs`` and open the machine:
    as :func:`pagewalk.cli.common.machine_from` without a stage-2 option; with one, the
    guest's roots are guest-physical (``guest_physical=True``) and the nested machine is
    returned too. A live machine (``--gdb``/``--qmp``) is closed when the command ends.

    Raises:
        click.UsageError: ``require`` (``--nested``) without a stage-2 option.
        ConfigError: as :func:`nested_from`, checked before the image is read where it can be.
        PhysicalMemoryError: the stage-2 root lies outside the image.
    """
    stage2 = {k: kwargs.pop(k, None) for k in NESTED_OPTIONS}
    if all(v is None for v in stage2.values()):
        if require:
            raise click.UsageError(
                "--nested needs a stage 2: --ept EPTP, --vttbr VAL --vtcr VAL, --hgatp VAL or "
                "--ncr3 VAL"
            )
        return machine_from(image, kwargs), None
    stage2_from_options(**stage2)  # refuse bad combinations before opening anything
    maxphyaddr = kwargs.get("maxphyaddr")
    machine = machine_from(image, kwargs, guest_physical=True)
    phys = None if maxphyaddr is None else int(maxphyaddr)
    return machine, nested_machine(machine, **stage2, maxphyaddr=phys)
