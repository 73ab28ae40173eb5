"""Opening a machine's image: its memory, and what the file itself says about its registers.

An image is a raw physical-memory file (offset = PA) with the JSON file pagewalk writes next to
it (``IMAGE.json``: mode, control registers, roots, RAM regions, identity), or an ELF core whose
notes carry the CPUs' registers (QEMU's ``dump-guest-memory``; ``cpu`` picks one), or either of
them gzip- or zstd-compressed (see :mod:`pagewalk.memory.dump`). Numbers accept ``0x`` hex,
decimal and ``_`` separators, and must fit the 64-bit registers and addresses they stand for.

Every malformed field of ``IMAGE.json`` is refused with a :class:`~pagewalk.errors.DumpError`
naming the file and the field, never silently used. The registers follow Intel SDM vol. 3A §2.5
and ch. 4, Arm ARM D19 and the RISC-V privileged spec (satp).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagewalk.errors import ConfigError, DumpError, PhysicalMemoryError, hx
from pagewalk.formats import MODE_NAMES, make_mode
from pagewalk.identity import check_pair
from pagewalk.image import array, mode_name, number, registers, shown, table, value_error
from pagewalk.memory.dump import (
    FileMemory,
    Memory,
    Segment,
    map_file,
    open_file,
    read_regular_file,
    sniff,
)

if TYPE_CHECKING:
    from pagewalk.memory.elfcore import Core

#: the widest value any register option or address takes
REGISTER_BITS = 64


def parse_int(text: str | int, what: str = "number") -> int:
    """Parse ``0x...``, decimal or ``_``-separated numbers in 0..2**64-1, with a clear error.

    Raises:
        ConfigError: naming ``what``, for text that is not a number or a value out of range.
    """
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


def sidecar_path(image: str | os.PathLike[str]) -> Path:
    """Where pagewalk keeps an image's registers: ``IMAGE.json``."""
    return Path(f"{os.fspath(image)}.json")


@dataclass
class Opened:
    """An image's memory and what the image itself says about its registers.

    Attributes:
        mem: the physical memory the image holds.
        saved: the checked ``IMAGE.json`` of a raw image (empty when there is none), or, for
            an ELF core, ``{"registers": ...}`` read from the chosen CPU's notes.
        why: how the registers were found (and whether the file was inflated).
        core: the ELF core, or None for a raw image.
    """

    mem: Memory
    saved: dict[str, Any]
    why: list[str]
    core: Core | None


def open_image(image: str, cpu: int | None = None) -> Opened:
    """Open a raw image, an ELF core, or either compressed; read its sidecar or notes.

    Args:
        cpu: the core's CPU to read, which must exist; a raw image refuses it. None reads
            CPU 0 of a core.

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
            from pagewalk.memory.elfcore import open_core
            from pagewalk.memory.registers import from_core

            core = open_core(f, image)
            mem: Memory = core.mem
            if cpu is not None:
                core.cpu(cpu)  # a DumpError naming the CPUs the core has
            found = from_core(core, cpu or 0)
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
