"""Images: build page tables from a small spec, and save them with their registers.

A saved image is a raw physical-memory file (offset = PA) plus ``IMAGE.json``, which records the
mode, the control registers and the root registers, so that ``pagewalk maps IMAGE`` and
``pagewalk translate IMAGE`` need no options. The spec (TOML or a dict) names the mode, the RAM,
optional registers, and a list of mappings; its addresses may be integers or strings (TOML
integers are signed 64-bit, so upper-half VAs such as ``"0xffff800000000000"`` are strings).
The tables are built with :class:`~pagewalk.space.AddressSpace`, so they follow the same manual
sections (Intel SDM vol. 3A ch. 4, Arm ARM D8, RISC-V privileged spec).
"""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pagewalk.alloc.simple import SimpleFrameAllocator
from pagewalk.errors import ConfigError, hx
from pagewalk.formats import MemType, PagingMode, Perm, make_mode
from pagewalk.memory.physical import PhysicalMemory, parse_size
from pagewalk.space import AddressSpace

_REGISTER_KEYS = ("cr0", "cr4", "efer", "maxphyaddr", "pat", "tcr", "mair", "svpbmt")


@dataclass
class Built:
    """An image built from a spec: memory, mode and the address space."""

    mem: PhysicalMemory
    mode: PagingMode
    space: AddressSpace


def _num(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return parse_size(value)
    raise ConfigError(f"{what} must be a number or a string like '0x1000' or '4K', not {value!r}")


def load_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML spec file, with a clear error for a missing or malformed file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read spec {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"spec {path} is not valid TOML: {exc}") from None


def build(spec: dict[str, Any]) -> Built:
    """Build memory and tables from a spec dict.

    Raises:
        ConfigError: an unknown key, a bad number, or a bad mode.
        PagingError: any mapping error, naming the mapping's index.
    """
    unknown = set(spec) - {"mode", "ram", "regions", "registers", "tables", "map"}
    if unknown:
        raise ConfigError(f"unknown spec key(s): {', '.join(sorted(unknown))}")
    if "mode" not in spec:
        raise ConfigError("the spec needs a mode (x86, pae, x86_64, la57, aarch64, sv32..sv57)")
    regs = {k: v for k, v in dict(spec.get("registers", {})).items()}
    bad = set(regs) - set(_REGISTER_KEYS)
    if bad:
        raise ConfigError(f"unknown register(s) in spec: {', '.join(sorted(bad))}")
    kwargs: dict[str, Any] = {
        k: (bool(v) if k == "svpbmt" else _num(v, k)) for k, v in regs.items()
    }
    mode = make_mode(str(spec["mode"]), **kwargs)
    mem = _memory(spec)
    frames = _table_frames(spec, mem)
    space = AddressSpace(mode, mem, frames)
    for i, item in enumerate(spec.get("map", [])):
        _apply_map(space, i, item)
    return Built(mem, mode, space)


def _memory(spec: dict[str, Any]) -> PhysicalMemory:
    if "regions" in spec:
        regions = [(_num(b, "region base"), _num(s, "region size")) for b, s in spec["regions"]]
        return PhysicalMemory(regions=regions)
    return PhysicalMemory(_num(spec.get("ram", "128M"), "ram"))


def _table_frames(spec: dict[str, Any], mem: PhysicalMemory) -> SimpleFrameAllocator:
    tables = spec.get("tables", {})
    last = mem.regions[-1]
    default_size = min(last.size // 2, 64 << 20) & ~0xFFF
    size = _num(tables.get("size", default_size), "tables.size")
    base = _num(tables.get("base", last.end - size), "tables.base")
    if not mem.is_ram(base, size):
        raise ConfigError(f"table area {hx(base)}+{hx(size)} is not inside RAM")
    return SimpleFrameAllocator(base, size)


def _apply_map(space: AddressSpace, i: int, item: dict[str, Any]) -> None:
    allowed = {"va", "pa", "size", "perm", "memtype", "page_size"}
    unknown = set(item) - allowed
    if unknown:
        raise ConfigError(f"map[{i}]: unknown key(s) {', '.join(sorted(unknown))}")
    try:
        va, pa = _num(item["va"], "va"), _num(item["pa"], "pa")
        size = _num(item.get("size", space.mode.page_size), "size")
        perm = Perm.parse(str(item.get("perm", "rw")))
        memtype = MemType(str(item.get("memtype", "normal")))
    except KeyError as exc:
        raise ConfigError(f"map[{i}] needs {exc.args[0]}") from None
    except ValueError as exc:
        raise ConfigError(f"map[{i}]: {exc}") from None
    sizes = (_num(item["page_size"], "page_size"),) if "page_size" in item else None
    space.map_range(va, pa, size, perm, memtype, page_sizes=sizes).ignore()


def sidecar(mem: PhysicalMemory, mode: PagingMode, roots: tuple[int, ...]) -> dict[str, Any]:
    """The register file written next to an image."""
    return {
        "pagewalk": 1,
        "mode": mode.name,
        "registers": mode.registers(),
        "roots": dict(zip(mode.root_names, roots, strict=False)),
        "regions": [[r.base, r.size] for r in mem.regions],
    }


def save(
    path: str | os.PathLike[str], mem: PhysicalMemory, mode: PagingMode, roots: tuple[int, ...]
) -> Path:
    """Save the raw image and its register file, each written atomically.

    Returns:
        The register file's path.
    """
    mem.save(path)
    side = Path(f"{os.fspath(path)}.json")
    fd, tmp = tempfile.mkstemp(prefix=f".{side.name}.", dir=side.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(sidecar(mem, mode, roots), out, indent=2)
            out.write("\n")
        os.replace(tmp, side)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return side
