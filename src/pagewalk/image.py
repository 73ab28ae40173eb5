"""Images: build page tables from a small spec, and save them with their registers.

A saved image is a raw physical-memory file (offset = PA) plus ``IMAGE.json``, which records the
mode, the control registers, the root registers and the image's identity (so a register file that
belongs to another image is refused), both written as one unit, so that ``pagewalk maps IMAGE`` and
``pagewalk translate IMAGE`` need no options. The spec (TOML or a dict) names the mode, the RAM,
optional registers, and a list of mappings; its addresses may be integers or strings (TOML integers
are signed 64-bit, so upper-half VAs such as ``"0xffff800000000000"`` are strings). Every field
is checked for type and range before anything is built (numbers are 0..2**64-1, registers only
those the mode takes), and every error names the spec file and the field (``map[2].va``); the
checkers (:func:`number`, :func:`table`, :func:`registers`...) also serve ``IMAGE.json``.
The tables are built with :class:`~pagewalk.space.AddressSpace`, so they follow the same manual
sections (Intel SDM vol. 3A ch. 4, Arm ARM D8, RISC-V privileged spec).
"""

from __future__ import annotations

import contextlib
import json
import os
import reprlib
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pagewalk.errors import ConfigError, PagingError, hx
from pagewalk.formats import MemType, PagingMode, Perm, make_mode
from pagewalk.memory.dump import read_regular_file
from pagewalk.memory.physical import PhysicalMemory, parse_size

if TYPE_CHECKING:
    from pagewalk.alloc.simple import SimpleFrameAllocator
    from pagewalk.safeio import Source
    from pagewalk.space import AddressSpace

#: keys of a spec, of its ``[tables]`` and of each ``[[map]]`` item
_SPEC_KEYS = ("mode", "ram", "regions", "registers", "tables", "map")
_TABLE_KEYS = ("base", "size")
_MAP_KEYS = ("va", "pa", "size", "perm", "memtype", "page_size")
#: the registers each mode family takes (what :func:`make_mode` accepts for it)
_X86_REGISTERS = ("cr0", "cr4", "efer", "maxphyaddr", "pat")
_REGISTERS = {
    **dict.fromkeys(("x86", "pae", "x86_64", "la57"), _X86_REGISTERS),
    "aarch64": ("tcr", "mair"),
    **dict.fromkeys(("sv32", "sv39", "sv48", "sv57"), ("svpbmt",)),
}


@dataclass
class Built:
    """An image built from a spec: memory, mode and the address space."""

    mem: PhysicalMemory
    mode: PagingMode
    space: AddressSpace


# ------------------------------------------------------------------ checked values
def shown(value: object) -> str:
    """A value from hostile input as a message prints it: short, on one line, never a huge
    number in full (Python refuses to print ints of more than 4300 digits)."""
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return hx(value) if value.bit_length() <= 64 else f"a {value.bit_length()}-bit number"
    if isinstance(value, str):
        return reprlib.repr(value)
    if isinstance(value, dict):
        return "a table"
    return "a list" if isinstance(value, list) else f"a {type(value).__name__}"


def number(value: object, field: str, *, bits: int = 64) -> int:
    """``value``, an integer or a string like ``0x1000``, ``4096`` or ``4K``, in
    ``0..2**bits-1``.

    Raises:
        ConfigError: naming ``field``, for any other type, text or range.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(
            f"{field} must be a number or a string like '0x1000' or '4K', not {shown(value)}"
        )
    if isinstance(value, str):
        try:
            value = parse_size(value)
        except (ConfigError, OverflowError):
            raise ConfigError(
                f"{field}: cannot read {shown(value)} as a number (try 0x1000, 4096, 4K, 128M)"
            ) from None
    if not 0 <= value < 1 << bits:
        raise ConfigError(f"{field} is {shown(value)}, outside 0..{hx((1 << bits) - 1)}")
    return value


def table(value: object, field: str, keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """``value`` as a table (a dict), with only the given ``keys`` when they are given."""
    if not isinstance(value, dict):
        raise ConfigError(f"{field} must be a table, not {shown(value)}")
    unknown = [k for k in value if k not in keys] if keys is not None else []
    if unknown:
        names = ", ".join(sorted(shown(k) for k in unknown))
        raise ConfigError(f"{field}: unknown key(s) {names} (known: {', '.join(keys or ())})")
    return value


def array(value: object, field: str) -> list[Any]:
    """``value`` as a list."""
    if not isinstance(value, list):
        raise ConfigError(f"{field} must be a list, not {shown(value)}")
    return value


def mode_name(value: object, field: str) -> str:
    """A paging mode's name, as :func:`make_mode` spells it."""
    name = value.lower().replace("-", "_") if isinstance(value, str) else None
    if name not in _REGISTERS:
        raise ConfigError(f"{field} must be one of {', '.join(_REGISTERS)}, not {shown(value)}")
    return name


def registers(value: object, field: str, mode: str) -> dict[str, Any]:
    """Register values for :func:`make_mode` in ``mode``: 64-bit numbers, svpbmt a flag."""
    regs = table(value, field, _REGISTERS[mode])
    out: dict[str, Any] = {}
    for key, raw in regs.items():
        if key != "svpbmt":
            out[key] = number(raw, f"{field}.{key}")
        elif raw in (True, False) and isinstance(raw, bool | int):  # true/false, or 1/0 as saved
            out[key] = bool(raw)
        else:
            raise ConfigError(f"{field}.svpbmt must be true or false, not {shown(raw)}")
    return out


@contextlib.contextmanager
def blame(where: str) -> Iterator[None]:
    """Prefix a PagingError raised inside with ``where`` (keeping its type and details)."""
    try:
        yield
    except PagingError as exc:
        exc.args = (f"{where}: {exc}", *exc.args[1:])
        raise


# ----------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class _Map:
    va: int
    pa: int
    size: int | None
    perm: Perm
    memtype: MemType
    page_size: int | None


@dataclass(frozen=True)
class _Plan:
    mode: str
    registers: dict[str, Any]
    regions: list[tuple[int, int]]
    tables: dict[str, int]
    maps: list[_Map]


def _plan(spec: object, where: str) -> _Plan:
    """Every field of ``spec`` checked for type and range; errors name ``where`` and the field."""
    top = table(spec, where, _SPEC_KEYS)
    if "mode" not in top:
        raise ConfigError(f"{where} needs a mode ({', '.join(_REGISTERS)})")
    mode = mode_name(top["mode"], f"{where}: mode")
    regs = registers(top.get("registers", {}), f"{where}: registers", mode)
    if "regions" in top and "ram" in top:
        raise ConfigError(f"{where}: give ram or regions, not both")
    if "regions" in top:
        regions = []
        for i, item in enumerate(array(top["regions"], f"{where}: regions")):
            field = f"{where}: regions[{i}]"
            pair = array(item, field)
            if len(pair) != 2:
                raise ConfigError(f"{field} must be [base, size], not {len(pair)} value(s)")
            regions.append((number(pair[0], f"{field} base"), number(pair[1], f"{field} size")))
    else:
        regions = [(0, number(top.get("ram", "128M"), f"{where}: ram"))]
    tables = {
        k: number(v, f"{where}: tables.{k}")
        for k, v in table(top.get("tables", {}), f"{where}: tables", _TABLE_KEYS).items()
    }
    maps = [_map_item(item, f"{where}: map[{i}]") for i, item in enumerate(
        array(top.get("map", []), f"{where}: map")
    )]  # fmt: skip
    return _Plan(mode, regs, regions, tables, maps)


def _map_item(value: object, field: str) -> _Map:
    item = table(value, field, _MAP_KEYS)
    for key in ("va", "pa"):
        if key not in item:
            raise ConfigError(f"{field} needs {key}")
    perm, memtype = item.get("perm", "rw"), item.get("memtype", "normal")
    if not isinstance(perm, str) or len(perm) > 16:
        raise ConfigError(f"{field}.perm must be letters like 'rwx', not {shown(perm)}")
    try:
        parsed = Perm.parse(perm)
    except ValueError as exc:
        raise ConfigError(f"{field}.perm: {exc}") from None
    kinds = [m.value for m in MemType]
    if memtype not in kinds:
        raise ConfigError(
            f"{field}.memtype must be one of {', '.join(kinds)}, not {shown(memtype)}"
        )
    size, page = item.get("size"), item.get("page_size")
    return _Map(
        number(item["va"], f"{field}.va"),
        number(item["pa"], f"{field}.pa"),
        None if size is None else number(size, f"{field}.size"),
        parsed,
        MemType(memtype),
        None if page is None else number(page, f"{field}.page_size"),
    )


def load_spec(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML spec file and check every field's type and range.

    Raises:
        ConfigError: a missing, oversized (:data:`~pagewalk.memory.dump.TEXT_LIMIT`) or
            irregular (a FIFO, a device) file, malformed TOML, or a bad field (both named).
    """
    import tomllib

    where = f"spec {os.fspath(path)}"
    raw = read_regular_file(path, "spec", error=ConfigError)
    try:
        data = tomllib.loads(raw.decode())
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where} is not UTF-8 text (bad byte at offset {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where} nests arrays or tables too deeply") from None
    except ValueError as exc:  # int() of too many digits, a date like 2024-02-30
        raise ConfigError(f"{where} is not valid TOML: {value_error(exc)}") from None
    _plan(data, where)
    return data


def value_error(exc: ValueError) -> str:
    """A parser's ValueError in words, short (Python's int-digits limit says too much)."""
    text = str(exc)
    if "integer string conversion" in text:
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    return text if len(text) <= 200 else text[:200] + "..."


def build(spec: dict[str, Any], *, source: str | os.PathLike[str] | None = None) -> Built:
    """Build memory and tables from a spec dict.

    Args:
        source: the spec's file, named in every error (default: ``spec``).

    Raises:
        ConfigError: an unknown key, a value of the wrong type or out of range, a bad mode,
            or registers the mode does not take, naming the field.
        PagingError: any mapping error, naming the mapping's index.
    """
    from pagewalk.space import AddressSpace

    where = "spec" if source is None else f"spec {os.fspath(source)}"
    plan = _plan(spec, where)
    with blame(f"{where}: registers"):
        mode = make_mode(plan.mode, **plan.registers)
    with blame(f"{where}: {'regions' if 'regions' in spec else 'ram'}"):
        mem = _memory(plan.regions, mode)
    with blame(f"{where}: tables"):
        space = AddressSpace(mode, mem, _table_frames(plan.tables, mem))
    for i, item in enumerate(plan.maps):
        size = mode.page_size if item.size is None else item.size
        sizes = None if item.page_size is None else (item.page_size,)
        with blame(f"{where}: map[{i}]"):
            space.map_range(
                item.va, item.pa, size, item.perm, item.memtype, page_sizes=sizes
            ).ignore()
    return Built(mem, mode, space)


def _memory(regions: list[tuple[int, int]], mode: PagingMode) -> PhysicalMemory:
    end = max(b + s for b, s in regions) if regions else 0
    if end > 1 << mode.pa_bits:
        raise ConfigError(
            f"RAM up to {hx(end)} is beyond the {mode.pa_bits}-bit physical addresses of "
            f"mode {mode.name}"
        )
    try:
        return PhysicalMemory(regions=regions)
    except (OSError, OverflowError, MemoryError) as exc:
        raise ConfigError(f"cannot reserve {hx(end)} bytes for the simulated RAM: {exc}") from None


def _table_frames(tables: dict[str, int], mem: PhysicalMemory) -> SimpleFrameAllocator:
    from pagewalk.alloc.simple import SimpleFrameAllocator

    last = mem.regions[-1]
    default_size = min(last.size // 2, 64 << 20) & ~0xFFF
    size = tables.get("size", default_size)
    base = tables.get("base", max(last.end - size, 0))
    if not mem.is_ram(base, size):
        raise ConfigError(f"table area {hx(base)}+{hx(size)} is not inside RAM")
    return SimpleFrameAllocator(base, size)


def sidecar(
    mem: PhysicalMemory,
    mode: PagingMode,
    roots: tuple[int, ...],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The register file written next to an image, with the image's identity
    (:mod:`pagewalk.identity`) and any ``extra`` keys (``boot`` adds its processes)."""
    from pagewalk.identity import identity, table_pages

    named = dict(zip(mode.root_names, roots, strict=False))
    return {
        **(extra or {}),
        "pagewalk": 1,
        "mode": mode.name,
        "registers": mode.registers(),
        "roots": named,
        "regions": [[r.base, r.size] for r in mem.regions],
        "image": identity(mem.array(), *table_pages(mem, mode, roots)),
    }


def save(
    path: str | os.PathLike[str],
    mem: PhysicalMemory,
    mode: PagingMode,
    roots: tuple[int, ...],
    *,
    extra: dict[str, Any] | None = None,
    overwrite: bool = True,
    inputs: Iterable[Source] = (),
) -> Path:
    """Save the raw image and its register file ``PATH.json`` as one unit.

    Both are written in full under temporary names, then renamed (:mod:`pagewalk.safeio`).
    The register file is renamed first: a new one always records its image's identity, so a
    save cut between the two renames (new registers, old image) is refused when opened.

    Args:
        extra: more keys for the register file.
        overwrite: replace existing files (the CLI passes ``--force``).
        inputs: files neither output may be written over (the spec, a memory map).

    Returns:
        The register file's path.

    Raises:
        OutputError: an output that may not be written, or a failed write (full disk).
    """
    from pagewalk.safeio import replacing

    side = Path(f"{os.fspath(path)}.json")
    text = json.dumps(sidecar(mem, mode, roots, extra), indent=2) + "\n"
    with replacing([side, path], inputs=inputs, force=overwrite) as (side_out, image_out):
        side_out.write(text.encode())
        mem.write_image(image_out)
    return side
