"""From register options to a configured mode and its roots, the same way for every architecture.

The registers come from options (``mode``, ``root``, ``cr4``, ``tcr``...), from the image's
``IMAGE.json``, or from an ELF core's notes; options override both. What differs between the
architectures is data, in :data:`RULES` keyed by :attr:`ArchFacts.family`: which option names
each root register (``root`` for CR3 and for satp's root, ``ttbr0``/``ttbr1`` for TTBRn_EL1), an
option that holds a whole root register and so picks the mode too (satp), how a core that
carries no root register gets one (RISC-V: Linux's ``swapper_pg_dir`` found in RAM), and whether
the root option is the register as written, as wide as a VA (CR3 is 32 bits outside IA-32e
mode: Intel SDM vol. 3A §4.3, §4.4.1). The rest is the mode's own: ``mode.root_names``,
``mode.root_from_register(value, half)`` (Intel SDM vol. 3A §4.5, Arm ARM D19 TTBRn_EL1,
RISC-V privileged spec satp) and ``mode.root_fault``.

Nothing is silently ignored or silently cut: an option the mode does not have (``ttbr0`` on x86
or RISC-V, ``root`` on AArch64, ``cr4`` off x86), a value wider than its register, and a root
outside the image are refused with a :class:`~pagewalk.errors.ConfigError` or
:class:`~pagewalk.errors.PhysicalMemoryError` naming the option or the register. When ``mode``
picks another family than the image's (x86, AArch64, RISC-V), the image's saved registers and
roots are not used.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pagewalk.errors import ConfigError, PhysicalMemoryError, hx
from pagewalk.formats import MODE_NAMES, PagingMode, make_mode
from pagewalk.formats.riscv import Satp, decode_satp
from pagewalk.inspect.roots import FoundRoot, riscv_root
from pagewalk.machine.files import Opened, parse_int
from pagewalk.memory.dump import Memory

#: the control-register options each mode may take (:func:`make_mode` refuses the others)
CONTROL_REGISTERS = ("cr0", "cr4", "efer", "maxphyaddr", "pat", "tcr", "mair")


@dataclass(frozen=True)
class RootRule:
    """How one architecture family's root registers are given.

    Attributes:
        title: the family as messages name it (``--ttbr0 (AArch64 only)``).
        options: the option for each root register, in ``mode.root_names`` order.
        register: an option holding a whole root register that selects the mode as well as
            the root (RISC-V ``satp``), or None.
        decode: turns that register's value (and XLEN, when known) into its mode and root.
        find_root: finds the root of a core whose notes carry no root register, or None.
        wide_as_va: the root option is the register as written, which is as wide as a VA of
            the mode (CR3: 32 bits in 32-bit and PAE paging, 64 in IA-32e mode).
        manual: where the manual defines the root register.
    """

    title: str
    options: tuple[str, ...]
    register: str | None = None
    decode: Callable[[int, int | None], Satp] | None = None
    find_root: Callable[[Memory, str | None], FoundRoot] | None = None
    wide_as_va: bool = False
    manual: str = ""


#: the root-register rules of each architecture family, by :attr:`ArchFacts.family`
RULES: dict[str, RootRule] = {
    "x86": RootRule("x86", ("root",), wide_as_va=True, manual="Intel SDM vol. 3A §4.3, §4.4.1"),
    "arm": RootRule("AArch64", ("ttbr0", "ttbr1"), manual="Arm ARM D19 TTBRn_EL1"),
    "riscv": RootRule(
        "RISC-V",
        ("root",),
        register="satp",
        decode=decode_satp,
        find_root=riscv_root,
        manual="RISC-V privileged spec, satp",
    ),
}
#: the family of each ELF machine a core may name (:mod:`pagewalk.memory.elfcore`)
CORE_FAMILIES = {"x86_64": "x86", "i386": "x86", "aarch64": "arm", "riscv": "riscv"}
#: every root option any family takes, in the order refusals are checked
ROOT_OPTIONS = tuple(dict.fromkeys(o for rule in RULES.values() for o in rule.options))
#: every whole-register option, by the family that takes it
REGISTER_OPTIONS = {r.register: r for r in RULES.values() if r.register is not None}


@functools.cache
def family(name: str) -> str:
    """The architecture family of the mode called ``name`` (its :attr:`ArchFacts.family`).

    Raises:
        ConfigError: an unknown mode name.
    """
    return make_mode(name).facts.family


def rule_of(name: str) -> RootRule:
    """The root-register rule of the mode called ``name``."""
    return RULES[family(name)]


def configure(
    opened: Opened, image: str, opts: dict[str, Any], *, guest_physical: bool = False
) -> tuple[PagingMode, tuple[int, ...], list[str]]:
    """The configured mode, its roots and why they were chosen, from ``opts`` over what the
    image says (see :func:`pagewalk.machine.load_machine` for ``opts``). With
    ``guest_physical`` the roots are a guest's (stage 2 translates them), so they are not
    looked for in the image.

    Raises:
        ConfigError: missing mode or root, options that do not fit the mode, or values wider
            than their register.
        PhysicalMemoryError: a root lies outside the image.
    """
    given = {k: v for k, v in opts.items() if v is not None}
    saved_regs = dict(opened.saved.get("registers", {}))
    saved_mode = saved_regs.pop("mode", None) or opened.saved.get("mode")
    stored_roots: dict[str, int] = opened.saved.get("roots", {})
    name = str(given.get("mode") or saved_mode or "").lower()
    if name and name not in MODE_NAMES:
        family(name)  # a ConfigError listing the modes
    core_rule = _core_rule(opened)
    finds_root = core_rule is not None and core_rule.find_root is not None
    if not name and not finds_root and not any(k in given for k in REGISTER_OPTIONS):
        hint = " ".join(opened.why)
        raise ConfigError(
            f"give --mode for {image} (one of: {', '.join(MODE_NAMES)})"
            + (f"; {hint}" if hint else "")
        )
    why = list(opened.why) + _whole_register(opened, given)
    name = str(given.pop("mode", None) or name).lower()
    if saved_mode is not None and family(name) != family(saved_mode):
        saved_regs, stored_roots = {}, {}
        why.append(f"--mode {name}: the image's {saved_mode} registers and roots do not apply")
    rule = rule_of(name)
    _refuse_foreign(name, rule, given)
    strict = bool(given.pop("strict", False))
    regs = {**saved_regs, **{k: parse_int(v, f"--{k}") for k, v in given.items()}}
    mode = make_mode(name, **_mode_kwargs(regs), strict=strict)
    roots = _roots(mode, rule, regs, stored_roots)
    if not guest_physical:
        _check_roots(opened.mem, mode, roots, image)
    return mode, roots, why


def _core_rule(opened: Opened) -> RootRule | None:
    """The rule of the core's architecture, or None for a raw image or an unknown machine."""
    if opened.core is None or opened.core.arch not in CORE_FAMILIES:
        return None
    return RULES[CORE_FAMILIES[opened.core.arch]]


def _whole_register(opened: Opened, given: dict[str, Any]) -> list[str]:
    """Turn a whole-register option (``satp``) into mode and root in ``given``; for a core
    given neither, whose notes carry no root register, find the root in the dump (RISC-V:
    :func:`~pagewalk.inspect.roots.riscv_root`). Returns why."""
    mode = str(given.get("mode") or "").lower()
    core_rule = _core_rule(opened)
    rule = rule_of(mode) if mode else core_rule
    for key, owner in REGISTER_OPTIONS.items():
        if key in given and mode and owner is not rule:
            assert rule is not None  # a named mode has a rule
            instead = " and/or ".join(f"--{o}" for o in rule.options)
            raise ConfigError(
                f"mode {mode} does not take --{key} ({owner.title} only): give {instead}"
            )
    named = next((k for k in REGISTER_OPTIONS if k in given), None)
    if named is not None:
        key, owner = named, REGISTER_OPTIONS[named]
        root_option = owner.options[0]
        if root_option in given:
            raise ConfigError(f"give --{key} or --{root_option}, not both: {key}'s PPN is the root")
        xlen = make_mode(mode).facts.va_bits if mode else None
        if not mode and core_rule is owner and opened.core is not None:
            xlen = opened.core.elf_class
        assert owner.decode is not None
        decoded = owner.decode(parse_int(given.pop(key), f"--{key}"), xlen)
        if mode and mode != decoded.mode:
            raise ConfigError(
                f"--mode {mode} disagrees with --{key} {hx(decoded.value)}, whose MODE selects "
                f"{decoded.mode}: give one of them"
            )
        given["mode"], given[root_option] = decoded.mode, decoded.root
        return [f"--{key}: {decoded.describe()}"]
    if core_rule is None or core_rule.find_root is None or rule is not core_rule:
        return []
    if any(o in given for o in core_rule.options):
        return []
    found = core_rule.find_root(opened.mem, mode or None)
    given["mode"], given[core_rule.options[0]] = found.mode, found.root
    return [found.why]


def _refuse_foreign(name: str, rule: RootRule, given: dict[str, Any]) -> None:
    """Refuse root options that belong to another architecture (make_mode refuses the rest)."""
    names = make_mode(name).root_names
    for key in ROOT_OPTIONS:
        if key not in given or key in rule.options:
            continue
        owners = [r.title for r in RULES.values() if key in r.options]
        only = f" ({owners[0]} only)" if len(owners) == 1 else ""
        if len(rule.options) > 1:
            instead = " and/or ".join(
                f"--{o} ({n})" for o, n in zip(rule.options, names, strict=True)
            )
        else:
            instead = f"--{rule.options[0]} for its root"
        raise ConfigError(f"mode {name} does not take --{key}{only}: give {instead}")


def _mode_kwargs(regs: dict[str, Any]) -> dict[str, Any]:
    """Register values for :func:`make_mode`; it refuses the ones the mode does not take."""
    out: dict[str, Any] = {
        k: parse_int(regs[k], k) for k in CONTROL_REGISTERS if regs.get(k) is not None
    }
    if regs.get("svpbmt"):
        out["svpbmt"] = bool(regs["svpbmt"])
    return out


def _roots(
    mode: PagingMode, rule: RootRule, regs: dict[str, Any], stored: dict[str, int]
) -> tuple[int, ...]:
    """Each root table's PA, from its option or the stored root of the same register."""
    names = mode.root_names
    values = [
        regs.get(option, stored.get(name)) for option, name in zip(rule.options, names, strict=True)
    ]
    if all(v is None for v in values):
        if len(values) > 1:
            wanted = " and/or ".join(f"--{o}" for o in rule.options)
            raise ConfigError(
                f"give {wanted} for an {mode.name} image "
                f"(`pagewalk find-roots IMAGE --mode {mode.name}` ranks candidates)"
            )
        raise ConfigError(f"give --{rule.options[0]} ({names[0]}) for this {mode.name} image")
    roots = []
    for half, (option, name, value) in enumerate(zip(rule.options, names, values, strict=True)):
        if value is None:
            roots.append(0)
            continue
        number = parse_int(value, f"--{option}")
        width = mode.facts.va_bits
        if rule.wide_as_va and number >> width:
            raise ConfigError(
                f"{name} {hx(number)} is wider than {width} bits, the width of {name} in mode "
                f"{mode.name} ({rule.manual})"
            )
        roots.append(mode.root_from_register(number, half))
    return tuple(roots)


def _check_roots(mem: Memory, mode: PagingMode, roots: tuple[int, ...], image: str) -> None:
    for root_name, root, half in zip(mode.root_names, roots, mode.halves, strict=False):
        if mode.root_fault(root, half) is not None:
            continue
        if not mem.is_ram(root, mode.entry_size):
            raise PhysicalMemoryError(
                f"{root_name} root {hx(root)} lies outside the image's memory "
                f"(up to {hx(mem.end)}); try `pagewalk find-roots {image}`"
            )
