"""How the CLI finds a machine: an image plus the registers that say how to read its tables.

A machine is physical memory, a configured paging mode and its root registers. The registers come
from options (``--mode``, ``--root``, ``--cr4``, ``--tcr``...), from the JSON file pagewalk
writes next to every image it saves (``IMAGE.json``), or from an ELF core's notes (``--cpu N``
picks the CPU); options override both. Raw images, ELF cores and gzip/zstd-compressed forms of
either are accepted (see :mod:`pagewalk.memory.dump`). Numbers accept ``0x`` hex, decimal and
``_`` separators, and must fit the 64-bit registers and addresses they stand for.

Nothing is silently ignored or silently cut: an option the mode does not have (``--ttbr0`` on
x86 or RISC-V, ``--root`` on AArch64, ``--cr4`` off x86), ``--cpu`` on a raw image or past the
core's CPUs, a value wider than its register, and every malformed field of ``IMAGE.json`` are
refused with a :class:`~pagewalk.errors.PagingError` naming the option, or the file and field.
When ``--mode`` picks another family than the image's (x86, AArch64, RISC-V), the image's saved
registers and roots are not used. The register meanings follow Intel SDM vol. 3A §2.5 and ch. 4
(CR0, CR3, CR4, IA32_EFER; CR3 is 32 bits outside IA-32e mode, §4.3 and §4.4.1), Arm ARM D19
(TTBRn_EL1, TCR_EL1, MAIR_EL1) and the RISC-V privileged spec (satp).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from pagewalk.errors import ConfigError, DumpError, PhysicalMemoryError, hx
from pagewalk.formats import MODE_NAMES, PagingMode, make_mode
from pagewalk.formats.riscv import decode_satp
from pagewalk.identity import check_pair
from pagewalk.image import array, mode_name, number, registers, shown, table, value_error
from pagewalk.inspect.roots import riscv_root
from pagewalk.memory.dump import (
    FileMemory,
    Memory,
    Segment,
    map_file,
    open_file,
    read_regular_file,
    sniff,
)
from pagewalk.memory.elfcore import Core, open_core
from pagewalk.memory.registers import from_core

F = TypeVar("F", bound=Callable[..., Any])

#: the widest value any register option or address takes
REGISTER_BITS = 64
#: the mode families: registers and roots saved for one do not apply to another
_FAMILIES = {
    **dict.fromkeys(("x86", "pae", "x86_64", "la57"), "x86"),
    "aarch64": "aarch64",
    **dict.fromkeys(("sv32", "sv39", "sv48", "sv57"), "riscv"),
}


def parse_int(text: str | int, what: str = "number") -> int:
    """Parse ``0x...``, decimal or ``_``-separated numbers in 0..2**64-1, with a clear error."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        try:
            value = int(str(text).replace("_", ""), 0)
        except ValueError:
            raise ConfigError(
                f"{what} {shown(text)} is not a number (use hex like 0x1000 or decimal)"
            ) from None
    if not 0 <= value < 1 << REGISTER_BITS:
        raise ConfigError(f"{what} {shown(value)} does not fit in {REGISTER_BITS} bits")
    return value


class IntParam(click.ParamType[int]):
    """A click parameter for hex or decimal integers that fit in ``bits`` bits (unsigned), so
    a value wider than its register is a usage error naming the option."""

    name = "int"

    def __init__(self, bits: int = REGISTER_BITS) -> None:
        self.bits = bits

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).replace("_", ""), 0)
            except ValueError:
                self.fail(
                    f"{shown(value)} is not a number (use hex like 0x1000 or decimal)", param, ctx
                )
        if not 0 <= number < 1 << self.bits:
            self.fail(
                f"{shown(number)} does not fit in {self.bits} bits (0..{hx((1 << self.bits) - 1)})",
                param,
                ctx,
            )
        return number


INT = IntParam()


@dataclass
class Machine:
    """Memory, mode and roots: everything a walk needs."""

    mem: Memory
    mode: PagingMode
    roots: tuple[int, ...]
    source: str
    why: list[str] = field(default_factory=list)
    core: Core | None = None

    def describe(self) -> str:
        """One line naming the image, mode and roots."""
        names = self.mode.root_names
        roots = ", ".join(f"{n}={hx(r)}" for n, r in zip(names, self.roots, strict=False))
        return f"{self.source}: {self.mode.describe()}, {roots}"


def machine_options(func: F) -> F:
    """The register options shared by every command that reads an image."""
    options = [
        click.option("--mode", type=click.Choice(MODE_NAMES, case_sensitive=False)),
        click.option(
            "--root", type=INT, help="CR3 value, or the root table PA (satp's root); not AArch64."
        ),
        click.option("--ttbr0", type=INT, help="TTBR0_EL1 (AArch64 only)."),
        click.option("--ttbr1", type=INT, help="TTBR1_EL1 (AArch64 only)."),
        click.option(
            "--tcr", type=INT, help="TCR_EL1 (AArch64 only; default 4K granules, 48-bit)."
        ),
        click.option("--mair", type=INT, help="MAIR_EL1 (AArch64 only)."),
        click.option(
            "--satp",
            type=INT,
            help="satp as written (RISC-V only): sets the mode (MODE) and root (PPN); "
            "default for a RISC-V core: Linux's swapper_pg_dir, found in the dump.",
        ),
        click.option("--cr0", type=INT, help="CR0 (x86 only; default PG|WP|PE)."),
        click.option("--cr4", type=INT, help="CR4 (x86 only; default PSE, plus PAE/LA57 by mode)."),
        click.option("--efer", type=INT, help="IA32_EFER (x86 only; default LME|NXE)."),
        click.option("--maxphyaddr", type=INT, help="MAXPHYADDR (x86 only; default 52)."),
        click.option(
            "--strict",
            is_flag=True,
            default=None,
            help="x86 only: PAE PDPTE bits 2:1 and 8:5 are reserved, as the manual says "
            "(default: accepted, as QEMU's walker does, which sets bit 5 there).",
        ),
        click.option(
            "--cpu",
            type=click.IntRange(min=0),
            expose_value=False,
            callback=_remember_cpu,
            help="Which CPU's registers to use from an ELF core (default 0; cores only).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _remember_cpu(ctx: click.Context, _param: click.Parameter, value: int | None) -> None:
    ctx.meta["pagewalk.cpu"] = value


def given_cpu() -> int | None:
    """The ``--cpu`` of the running command, or None when it was not given."""
    ctx = click.get_current_context(silent=True)
    value = ctx.meta.get("pagewalk.cpu") if ctx is not None else None
    return int(value) if value is not None else None


def sidecar_path(image: str | os.PathLike[str]) -> Path:
    """Where pagewalk keeps an image's registers: ``IMAGE.json``."""
    return Path(f"{os.fspath(image)}.json")


def load_machine(image: str, opts: dict[str, Any], cpu: int | None = None) -> Machine:
    """Open ``image`` and build its mode and roots from options, its sidecar JSON or its notes.

    Args:
        opts: register options by name (``mode``, ``root``, ``ttbr0``...); None means not given.
        cpu: the core's CPU to read; when given, ``image`` must be an ELF core that has it.

    Raises:
        ConfigError: missing mode/root, options that do not fit the mode, or values wider
            than their register.
        DumpError: a corrupt, truncated or unknown dump, or a malformed register file.
        PhysicalMemoryError: the image cannot be opened, or a root lies outside it.
    """
    opened = open_image(image, cpu)
    given = {k: v for k, v in opts.items() if v is not None}
    saved_regs = dict(opened.saved.get("registers", {}))
    saved_mode = saved_regs.pop("mode", None) or opened.saved.get("mode")
    stored_roots: dict[str, int] = opened.saved.get("roots", {})
    name = str(given.get("mode") or saved_mode or "").lower()
    if not name and not _is_riscv_core(opened) and "satp" not in given:
        hint = " ".join(opened.why)
        raise ConfigError(
            f"give --mode for {image} (one of: {', '.join(MODE_NAMES)})"
            + (f"; {hint}" if hint else "")
        )
    why = list(opened.why) + _riscv_root(opened, given)
    name = str(given.pop("mode", None) or name).lower()
    if saved_mode is not None and _FAMILIES.get(name) != _FAMILIES.get(saved_mode):
        saved_regs, stored_roots = {}, {}
        why.append(f"--mode {name}: the image's {saved_mode} registers and roots do not apply")
    _refuse_foreign(name, given)
    strict = bool(given.pop("strict", False))
    regs = {**saved_regs, **{k: parse_int(v, f"--{k}") for k, v in given.items()}}
    mode = make_mode(name, **_mode_kwargs(regs), strict=strict)
    roots = _roots(mode, regs, stored_roots)
    _check_roots(opened.mem, mode, roots, image)
    return Machine(opened.mem, mode, roots, image, why, opened.core)


def _is_riscv_core(opened: Opened) -> bool:
    return opened.core is not None and opened.core.arch == "riscv"


def _riscv_root(opened: Opened, given: dict[str, Any]) -> list[str]:
    """Turn ``--satp`` into mode and root in ``given``; for a RISC-V core given neither, find
    the root in the dump (:func:`~pagewalk.inspect.roots.riscv_root`). Returns why."""
    mode = str(given.get("mode") or "").lower()
    if mode and _FAMILIES.get(mode) != "riscv":
        if "satp" in given:
            raise ConfigError(f"mode {mode} does not take --satp (RISC-V only): give --root")
        return []
    if "satp" in given:
        if "root" in given:
            raise ConfigError("give --satp or --root, not both: satp's PPN is the root")
        core_xlen = opened.core.elf_class if opened.core and _is_riscv_core(opened) else None
        xlen = {"": core_xlen, "sv32": 32}.get(mode, 64)
        satp = decode_satp(parse_int(given.pop("satp"), "--satp"), xlen)
        if mode and mode != satp.mode:
            raise ConfigError(
                f"--mode {mode} disagrees with --satp {hx(satp.value)}, whose MODE selects "
                f"{satp.mode}: give one of them"
            )
        given["mode"], given["root"] = satp.mode, satp.root
        return [f"--satp: {satp.describe()}"]
    if not _is_riscv_core(opened) or "root" in given:
        return []
    found = riscv_root(opened.mem, mode or None)
    given["mode"], given["root"] = found.mode, found.root
    return [found.why]


def _refuse_foreign(name: str, given: dict[str, Any]) -> None:
    """Refuse root options that belong to another architecture (make_mode refuses the rest)."""
    if name == "aarch64" and "root" in given:
        raise ConfigError(
            "mode aarch64 does not take --root: give --ttbr0 (TTBR0_EL1) and/or --ttbr1 (TTBR1_EL1)"
        )
    for key in ("ttbr0", "ttbr1"):
        if name != "aarch64" and key in given:
            raise ConfigError(
                f"mode {name} does not take --{key} (AArch64 only): give --root for its root"
            )


@dataclass
class Opened:
    """An image's memory and what the image itself says about its registers."""

    mem: Memory
    saved: dict[str, Any]
    why: list[str]
    core: Core | None


def open_image(image: str, cpu: int | None = None) -> Opened:
    """Open a raw image, an ELF core, or either compressed; read its sidecar or notes.

    Args:
        cpu: the core's CPU to read, which must exist; a raw image refuses it. When None,
            the running command's ``--cpu`` is used if the image is a core (default 0).

    Raises:
        ConfigError: ``cpu`` given for a raw image.
        DumpError: a corrupt, truncated or unknown dump, a CPU the core does not have, or a
            malformed register file (naming the file and the field).
        PhysicalMemoryError: the file does not exist.
    """
    if not Path(image).exists():
        raise PhysicalMemoryError(f"image {image} does not exist")
    f, packing = open_file(image)
    with f:
        core: Core | None = None
        why: list[str] = []
        if sniff(f) == "elf":
            core = open_core(f, image)
            mem: Memory = core.mem
            chosen = cpu if cpu is not None else given_cpu()
            if chosen is not None:
                core.cpu(chosen)  # a DumpError naming the CPUs the core has
            found = from_core(core, chosen or 0)
            why = found.why
            saved: dict[str, Any] = {"registers": found.regs}
        else:
            if cpu is not None:
                raise ConfigError(
                    f"--cpu {cpu} applies only to ELF cores, and {image} is a raw image"
                )
            saved = read_sidecar(image)
            buf = map_file(f, image)
            check_pair(image, sidecar_path(image), saved, buf)
            spans = saved.get("regions") or [(0, len(buf))]
            _check_regions(spans, len(buf), image)
            mem = FileMemory(buf, [Segment(b, s, b) for b, s in spans], image)
    if packing != "plain":
        why.insert(0, f"{packing}-compressed; inflated into a temporary file")
    return Opened(mem, saved, why, core)


def _check_roots(mem: Memory, mode: PagingMode, roots: tuple[int, ...], image: str) -> None:
    for root_name, root, half in zip(mode.root_names, roots, mode.halves, strict=False):
        if mode.root_fault(root, half) is not None:
            continue
        if not mem.is_ram(root, mode.entry_size):
            raise PhysicalMemoryError(
                f"{root_name} root {hx(root)} lies outside the image's memory "
                f"(up to {hx(mem.end)}); try `pagewalk find-roots {image}`"
            )


def _check_regions(spans: list[tuple[int, int]], size: int, image: str) -> None:
    for i, (base, length) in enumerate(spans):
        if base + length > size:
            raise DumpError(
                f"register file {sidecar_path(image)}: regions[{i}] {hx(base)}+{hx(length)} "
                f"reaches beyond the end of {image} ({hx(size)} bytes)"
            )


def read_sidecar(image: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``IMAGE.json`` (empty when there is none), every field checked for type and range.

    ``mode``, ``registers`` (those the mode takes), ``roots`` (by the mode's root names) and
    ``regions`` (``[base, size]`` pairs) are checked and normalised; other keys (``image``,
    ``processes``...) are passed through for their own readers.

    Raises:
        DumpError: an unreadable, irregular (a FIFO, a device) or oversized file
            (:data:`~pagewalk.memory.dump.TEXT_LIMIT`), or one deeply nested or malformed,
            naming the file and the field.
    """
    path = sidecar_path(image)
    if not path.exists():
        return {}
    raw = read_regular_file(path, "register file")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise DumpError(f"register file {path} is nested too deeply to be one") from None
    except ValueError as exc:  # bad JSON, bad UTF-8, a number of too many digits
        raise DumpError(f"cannot read register file {path}: {value_error(exc)}") from None
    if not isinstance(data, dict):
        raise DumpError(f"register file {path} is not a JSON object")
    try:
        return _checked_sidecar(data, f"register file {path}")
    except ConfigError as exc:
        raise DumpError(str(exc)) from None


def _checked_sidecar(data: dict[str, Any], where: str) -> dict[str, Any]:
    out = dict(data)
    mode = mode_name(data["mode"], f"{where}: mode") if "mode" in data else None
    out.pop("mode", None)
    if mode is not None:
        out["mode"] = mode
    if "registers" in data:
        if mode is None:
            raise ConfigError(f"{where}: registers are given, but no mode")
        out["registers"] = registers(data["registers"], f"{where}: registers", mode)
    if "roots" in data:
        names = make_mode(mode).root_names if mode is not None else _all_root_names()
        roots = table(data["roots"], f"{where}: roots", names)
        out["roots"] = {k: number(v, f"{where}: roots.{k}") for k, v in roots.items()}
    if "regions" in data:
        spans = array(data["regions"], f"{where}: regions")
        if not spans:
            raise ConfigError(f"{where}: regions is empty (leave it out for one from 0)")
        out["regions"] = [_region(item, f"{where}: regions[{i}]") for i, item in enumerate(spans)]
    return out


def _region(item: object, where: str) -> tuple[int, int]:
    pair = array(item, where)
    if len(pair) != 2:
        raise ConfigError(f"{where} must be [base, size], not {len(pair)} value(s)")
    base, size = number(pair[0], f"{where} base"), number(pair[1], f"{where} size")
    if size == 0:
        raise ConfigError(f"{where} is empty (size 0)")
    return base, size


def _all_root_names() -> tuple[str, ...]:
    return tuple(dict.fromkeys(n for name in MODE_NAMES for n in make_mode(name).root_names))


def _mode_kwargs(regs: dict[str, Any]) -> dict[str, Any]:
    """Register values for :func:`make_mode`; it refuses the ones the mode does not take."""
    keys = ("cr0", "cr4", "efer", "maxphyaddr", "pat", "tcr", "mair")
    out: dict[str, Any] = {k: parse_int(regs[k], k) for k in keys if regs.get(k) is not None}
    if regs.get("svpbmt"):
        out["svpbmt"] = bool(regs["svpbmt"])
    return out


def _roots(mode: PagingMode, regs: dict[str, Any], stored: dict[str, int]) -> tuple[int, ...]:
    if mode.name == "aarch64":
        values = [
            regs.get("ttbr0", stored.get("TTBR0_EL1")),
            regs.get("ttbr1", stored.get("TTBR1_EL1")),
        ]
        if all(v is None for v in values):
            raise ConfigError(
                "give --ttbr0 and/or --ttbr1 for an aarch64 image "
                "(`pagewalk find-roots IMAGE --mode aarch64` ranks candidates)"
            )
        return tuple(
            mode.root_from_register(parse_int(v, "TTBR"), i) if v is not None else 0
            for i, v in enumerate(values)
        )
    value = regs.get("root", stored.get(mode.root_names[0]))
    if value is None:
        raise ConfigError(f"give --root ({mode.root_names[0]}) for this {mode.name} image")
    root = parse_int(value, "root")
    if mode.name in ("x86", "pae") and root >> 32:
        raise ConfigError(
            f"CR3 {hx(root)} is wider than 32 bits, the width of CR3 in mode {mode.name} "
            "(Intel SDM vol. 3A §4.3, §4.4.1)"
        )
    return (mode.root_from_register(root),)
