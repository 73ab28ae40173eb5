"""How the CLI finds a machine: an image plus the registers that say how to read its tables.

A machine is physical memory, a configured paging mode and its root registers. The registers come
from options (``--mode``, ``--root``, ``--cr4``, ``--tcr``...), from the JSON file pagewalk
writes next to every image it saves (``IMAGE.json``), or from an ELF core's notes (``--cpu N``
picks the CPU); options override both. Raw images, ELF cores and gzip/zstd-compressed forms of
either are accepted (see :mod:`pagewalk.memory.dump`). Numbers accept
``0x`` hex, decimal and ``_`` separators. The register meanings follow Intel SDM vol. 3A §2.5 and
ch. 4 (CR0, CR3, CR4, IA32_EFER), Arm ARM D19 (TTBRn_EL1, TCR_EL1, MAIR_EL1) and the RISC-V
privileged spec (satp).
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
from pagewalk.memory.dump import FileMemory, Memory, Segment, map_file, open_file, sniff
from pagewalk.memory.elfcore import Core, open_core
from pagewalk.memory.registers import from_core

F = TypeVar("F", bound=Callable[..., Any])


def parse_int(text: str | int, what: str = "number") -> int:
    """Parse ``0x...``, decimal or ``_``-separated numbers, with a clear error."""
    if isinstance(text, int):
        return text
    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        raise ConfigError(
            f"{what} {text!r} is not a number (use hex like 0x1000 or decimal)"
        ) from None


class IntParam(click.ParamType[int]):
    """A click parameter for hex or decimal integers."""

    name = "int"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return int(str(value).replace("_", ""), 0)
        except ValueError:
            self.fail(f"{value!r} is not a number (use hex like 0x1000 or decimal)", param, ctx)


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
        click.option("--root", type=INT, help="CR3 value, or the root table PA (satp's root)."),
        click.option("--ttbr0", type=INT, help="TTBR0_EL1 (AArch64)."),
        click.option("--ttbr1", type=INT, help="TTBR1_EL1 (AArch64)."),
        click.option("--tcr", type=INT, help="TCR_EL1 (AArch64; default 4K granules, 48-bit)."),
        click.option("--mair", type=INT, help="MAIR_EL1 (AArch64)."),
        click.option("--cr0", type=INT, help="CR0 (default PG|WP|PE)."),
        click.option("--cr4", type=INT, help="CR4 (default PSE, plus PAE/LA57 by mode)."),
        click.option("--efer", type=INT, help="IA32_EFER (default LME|NXE)."),
        click.option("--maxphyaddr", type=INT, help="MAXPHYADDR (default 52)."),
        click.option(
            "--cpu",
            type=click.IntRange(min=0),
            expose_value=False,
            callback=_remember_cpu,
            help="Which CPU's registers to use from an ELF core (default 0).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _remember_cpu(ctx: click.Context, _param: click.Parameter, value: int | None) -> None:
    ctx.meta["pagewalk.cpu"] = value


def _chosen_cpu() -> int:
    ctx = click.get_current_context(silent=True)
    value = ctx.meta.get("pagewalk.cpu") if ctx is not None else None
    return int(value) if value is not None else 0


def sidecar_path(image: str | os.PathLike[str]) -> Path:
    """Where pagewalk keeps an image's registers: ``IMAGE.json``."""
    return Path(f"{os.fspath(image)}.json")


def load_machine(image: str, opts: dict[str, Any], cpu: int | None = None) -> Machine:
    """Open ``image`` and build its mode and roots from options, its sidecar JSON or its notes.

    Raises:
        ConfigError: missing mode/root, or options that do not fit the mode.
        DumpError: a corrupt, truncated or unknown dump.
        PhysicalMemoryError: the image cannot be opened, or a root lies outside it.
    """
    opened = open_image(image, cpu)
    regs = {**opened.saved.get("registers", {}), **{k: v for k, v in opts.items() if v is not None}}
    name = regs.pop("mode", None) or opened.saved.get("mode")
    if not name:
        hint = " ".join(opened.why)
        raise ConfigError(
            f"give --mode for {image} (one of: {', '.join(MODE_NAMES)})"
            + (f"; {hint}" if hint else "")
        )
    mode = make_mode(name, **_mode_kwargs(regs))
    roots = _roots(mode, regs, opened.saved)
    _check_roots(opened.mem, mode, roots, image)
    return Machine(opened.mem, mode, roots, image, opened.why, opened.core)


@dataclass
class Opened:
    """An image's memory and what the image itself says about its registers."""

    mem: Memory
    saved: dict[str, Any]
    why: list[str]
    core: Core | None


def open_image(image: str, cpu: int | None = None) -> Opened:
    """Open a raw image, an ELF core, or either compressed; read its sidecar or notes.

    Raises:
        DumpError: a corrupt, truncated or unknown dump.
        PhysicalMemoryError: the file does not exist.
    """
    if not Path(image).exists():
        raise PhysicalMemoryError(f"image {image} does not exist")
    f, packing = open_file(image)
    with f:
        core: Core | None = None
        why: list[str] = []
        saved = _read_sidecar(image)
        if sniff(f) == "elf":
            core = open_core(f, image)
            mem: Memory = core.mem
            found = from_core(core, _chosen_cpu() if cpu is None else cpu)
            why = found.why
            saved = {"registers": found.regs}
        else:
            buf = map_file(f, image)
            spans = saved.get("regions") or [(0, len(buf))]
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


def _read_sidecar(image: str) -> dict[str, Any]:
    path = sidecar_path(image)
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DumpError(f"cannot read register file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DumpError(f"register file {path} is not a JSON object")
    return data


def _mode_kwargs(regs: dict[str, Any]) -> dict[str, Any]:
    """Register values for :func:`make_mode`; it refuses the ones the mode does not take."""
    keys = ("cr0", "cr4", "efer", "maxphyaddr", "pat", "tcr", "mair")
    out: dict[str, Any] = {k: parse_int(regs[k], k) for k in keys if regs.get(k) is not None}
    if regs.get("svpbmt"):
        out["svpbmt"] = bool(regs["svpbmt"])
    return out


def _roots(mode: PagingMode, regs: dict[str, Any], saved: dict[str, Any]) -> tuple[int, ...]:
    stored = saved.get("roots", {})
    if mode.name == "aarch64":
        values = [
            regs.get("ttbr0", stored.get("TTBR0_EL1")),
            regs.get("ttbr1", stored.get("TTBR1_EL1")),
        ]
        if regs.get("root") is not None and values[0] is None:
            values[0] = regs["root"]
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
    return (mode.root_from_register(parse_int(value, "root")),)
