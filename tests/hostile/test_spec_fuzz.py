"""Hostile specs and register files: every malformed value is a PagingError naming file and field.

Random JSON-like structures, mutations of valid specs (``pagewalk build SPEC``) and of valid
``IMAGE.json`` register files, deep nesting and numbers with a million digits must all end in a
:class:`~pagewalk.errors.PagingError` (exit status 2), never another exception (exit status 70).
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile_images import pagewalk_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pagewalk.cli.machine import load_machine
from pagewalk.errors import PagingError
from pagewalk.image import build, load_spec, save

SPEC_TEXT = """
mode = "{mode}"
ram = "8M"
[registers]
{registers}
[tables]
base = "0x400000"
size = "2M"
[[map]]
va = "0x10000"
pa = "0x200000"
size = "0x3000"
perm = "rwu"
[[map]]
va = "0x40000"
pa = "0x0"
size = "4K"
perm = "rx"
memtype = "{memtype}"
page_size = "4K"
"""

REGISTERS = {
    "x86_64": 'cr4 = "0x20"\nefer = 0xd00\nmaxphyaddr = 46',
    "aarch64": 'tcr = "0x5b5103510"\nmair = 0x04ff',
    "sv39": "svpbmt = true",
}

MEMTYPES = {"x86_64": "uncached", "aarch64": "device", "sv39": "device"}


def spec_text(mode: str) -> str:
    return SPEC_TEXT.format(mode=mode, registers=REGISTERS[mode], memtype=MEMTYPES[mode])


SPECS = {mode: tomllib.loads(spec_text(mode)) for mode in REGISTERS}

EDGE_INTS = [0, 1, -1, 4095, 4096, 1 << 21, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]
EDGE_INTS += [1 << 64, 1 << 80, -(1 << 63), 1 << 4000]
EDGE_STRS = ["0x1000", "4K", "2M", "1G", "8M", "infk", "-infk", "nanM", "-4K", "1e30k", "1e400"]
EDGE_STRS += ["zz", "", "rwx", "rwu", "normal", "uncached", "device", "x86_64", "aarch64", "sv39"]
EDGE_STRS += ["x86", "0x" + "f" * 30, "9" * 5000, "0x400000", "CR3", "TTBR0_EL1", "satp"]
KEYS = ["mode", "ram", "regions", "registers", "tables", "map", "va", "pa", "size", "perm"]
KEYS += ["memtype", "page_size", "base", "cr0", "cr4", "efer", "maxphyaddr", "pat", "tcr"]
KEYS += ["mair", "svpbmt", "roots", "CR3", "TTBR0_EL1", "TTBR1_EL1", "satp", "pagewalk"]

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
scalars = (
    st.booleans()
    | st.integers()
    | st.sampled_from(EDGE_INTS)
    | st.floats()
    | text
    | st.sampled_from(EDGE_STRS)
)
values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | text, kids, max_size=4)
    ),
    max_leaves=12,
)
json_values = st.recursive(
    st.none() | scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | text, kids, max_size=4)
    ),
    max_leaves=12,
)
documents = st.dictionaries(st.sampled_from(KEYS) | text, values, max_size=6)


def paths(tree: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path (keys and indices) into a nested dict/list, the root included."""
    yield here
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from paths(v, (*here, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from paths(v, (*here, i))


def mutate(tree: dict[str, Any], path: tuple[Any, ...], new: Any, delete: bool) -> Any:
    """A copy of ``tree`` with the value at ``path`` replaced (or deleted)."""
    out = copy.deepcopy(tree)
    if not path:
        return new
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return out


@st.composite
def mutated(draw: st.DrawFn, trees: dict[str, Any], new_values: st.SearchStrategy[Any]) -> Any:
    """A valid tree with one to three of its values replaced or deleted."""
    tree = draw(st.sampled_from(list(trees.values())))
    for _ in range(draw(st.integers(1, 3))):
        if not isinstance(tree, dict):
            break
        path = draw(st.sampled_from(list(paths(tree))))
        tree = mutate(tree, path, draw(new_values), delete=bool(path) and draw(st.booleans()))
    return tree


def toml_value(v: Any) -> str:
    """``v`` as a TOML value (inline tables for dicts)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    assert isinstance(v, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_document(doc: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in doc.items())


def short(value: object) -> str:
    """A short test id for a long hostile value."""
    text = str(value)
    return text if len(text) <= 40 else f"{text[:24]}...({len(text)} chars)"


def only_paging_errors(run: Any) -> PagingError | None:
    """Run; a PagingError is the expected refusal, anything else fails the test."""
    try:
        run()
    except PagingError as exc:
        assert "Traceback" not in str(exc)
        assert len(str(exc)) < 2000, str(exc)[:200]  # never echoes a whole hostile value
        return exc
    return None


FUZZ = settings(deadline=None, max_examples=250, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------------- specs
@FUZZ
@given(documents)
def test_random_spec_dicts_raise_only_paging_errors(doc: dict[str, Any]) -> None:
    only_paging_errors(lambda: build(doc))


@FUZZ
@given(mutated(SPECS, values))
def test_mutated_spec_dicts_raise_only_paging_errors(spec: Any) -> None:
    only_paging_errors(lambda: build(spec))


@pytest.fixture(scope="module")
def where(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(doc=mutated(SPECS, values))
def test_mutated_spec_files_name_the_file(where: Path, doc: Any) -> None:
    path = where / "spec.toml"
    body = toml_document(doc) if isinstance(doc, dict) else f"x = {toml_value(doc)}\n"
    path.write_text(body, encoding="utf-8")

    def run() -> None:
        build(load_spec(path), source=path)  # as `pagewalk build` calls it

    exc = only_paging_errors(run)
    assert exc is None or "spec.toml" in str(exc), str(exc)


@FUZZ
@given(st.binary(max_size=64), st.integers(0, len(spec_text("x86_64"))), st.integers(0, 8))
def test_byte_mutations_of_a_spec_file(where: Path, junk: bytes, at: int, cut: int) -> None:
    good = spec_text("x86_64").encode()
    path = where / "bytes.toml"
    path.write_bytes(good[:at] + junk + good[at + cut :])
    only_paging_errors(lambda: build(load_spec(path)))


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("mode = " + "[" * 100_000 + "]" * 100_000, "too deeply"),
        ('mode = "x86_64"\nram = ' + "1" * 1_000_000, "digits"),
        ("mode = 5", "mode"),
        ('mode = "x86_64"\nram = inf', "ram"),
        ('mode = "x86_64"\nram = "infK"', "ram"),
        ('mode = "x86_64"\nram = ' + str(1 << 80), "ram"),
        ('mode = "x86_64"\nregions = 5', "regions"),
        ('mode = "x86_64"\nregions = [[0, 1, 2]]', "regions[0]"),
        ('mode = "x86_64"\nregisters = [1, 2]', "registers"),
        ('mode = "x86_64"\n[registers]\ncr4 = "zz"', "registers.cr4"),
        ('mode = "x86_64"\n[registers]\ncr4 = -1', "registers.cr4"),
        ('mode = "x86_64"\n[registers]\ncr4 = ' + str(1 << 64), "registers.cr4"),
        ('mode = "sv39"\n[registers]\nsvpbmt = "false"', "registers.svpbmt"),
        ('mode = "x86_64"\ntables = 5', "tables"),
        ('mode = "x86_64"\n[tables]\nbogus = 1', "tables"),
        ('mode = "x86_64"\nmap = 5', "map"),
        ('mode = "x86_64"\nmap = [5]', "map[0]"),
        ('mode = "x86_64"\n[[map]]\nva = [1]\npa = 0', "map[0].va"),
        ('mode = "x86_64"\n[[map]]\nva = -4096\npa = 0', "map[0].va"),
        ('mode = "x86_64"\n[[map]]\nva = 0\npa = 0\nperm = ["r"]', "map[0].perm"),
        ('mode = "x86_64"\n[[map]]\nva = 0\npa = 0\nmemtype = 5', "map[0].memtype"),
        ('mode = "x86_64"\n[[map]]\nva = 0\npa = 0\npage_size = [4096]', "map[0].page_size"),
    ],
    ids=short,
)
def test_hostile_spec_files(where: Path, body: str, needle: str) -> None:
    path = where / "hostile.toml"
    path.write_text(body)
    with pytest.raises(PagingError) as info:
        build(load_spec(path))
    message = str(info.value)
    assert "hostile.toml" in message and needle in message, message
    assert len(message) < 500, message[:200]


# ---------------------------------------------------------------------------- register files
@pytest.fixture(scope="module")
def sidecars(where: Path) -> dict[str, Any]:
    """Register files as pagewalk writes them, for an x86-64, an AArch64 and an Sv39 image."""
    out = {}
    for mode, spec in SPECS.items():
        built = build(spec)
        side = save(where / f"{mode}.img", built.mem, built.mode, built.space.roots)
        out[mode] = json.loads(side.read_text())
    return out


def load_with_sidecar(where: Path, data: str) -> None:
    image = where / "x86_64.img"
    sidecar = where / "fuzzed.img.json"
    fuzzed = where / "fuzzed.img"
    if not fuzzed.exists():
        fuzzed.symlink_to(image)
    sidecar.write_text(data, encoding="utf-8")
    load_machine(str(fuzzed), {})


@FUZZ
@given(st.data())
def test_mutated_sidecars_raise_only_paging_errors(
    where: Path, sidecars: dict[str, Any], data: st.DataObject
) -> None:
    doc = data.draw(mutated(sidecars, json_values))
    exc = only_paging_errors(lambda: load_with_sidecar(where, json.dumps(doc)))
    if exc is not None and "fuzzed.img.json" not in str(exc):
        # errors about the image itself name the image (a root outside it, say)
        assert "fuzzed.img" in str(exc) or "give --" in str(exc), str(exc)


@FUZZ
@given(json_values)
def test_random_sidecars_raise_only_paging_errors(where: Path, doc: Any) -> None:
    only_paging_errors(lambda: load_with_sidecar(where, json.dumps(doc)))


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested"),
        ('{"mode": "x86_64", "roots": {"CR3": ' + "1" * 1_000_000 + "}}", "digits"),
        ('{"mode": "x86_64", "roots": 5}', "roots"),
        ('{"mode": "x86_64", "roots": {"CR3": [1]}}', "roots.CR3"),
        ('{"mode": "x86_64", "roots": {"CR3": 18446744073709551616}}', "roots.CR3"),
        ('{"mode": "x86_64", "roots": {"CR3": -4096}}', "roots.CR3"),
        ('{"mode": "x86_64", "roots": {"CR3": 1.5}}', "roots.CR3"),
        ('{"mode": "x86_64", "roots": {"CR3": 4194304}, "registers": {"cr4": "zz"}}', "cr4"),
        ('{"mode": "x86_64", "roots": {"CR3": 4194304}, "registers": 7}', "registers"),
        ('{"mode": "x86_64", "roots": {"CR3": 4194304}, "registers": {"tcr": 5}}', "tcr"),
        ('{"mode": "x86_64", "roots": {"CR3": 4194304}, "registers": {"bogus": 5}}', "bogus"),
        ('{"mode": 5}', "mode"),
        ('{"mode": "x86_65"}', "mode"),
        ('{"mode": "x86_64", "roots": {"CR3": 4194304}, "regions": 5}', "regions"),
        ('{"mode": "x86_64", "roots": {"CR3": 4194304}, "regions": [[0]]}', "regions[0]"),
        ('{"mode": "x86_64", "roots": {"CR3": 4194304}, "regions": [[0, 1e999]]}', "regions[0]"),
        ('{"mode": "x86_64", "roots": {"CR3": 4194304}, "regions": [[0, 1073741824]]}', "beyond"),
        ('{"mode": "x86_64", "roots": {"CR3": 4194304}, "regions": [[0, -5]]}', "regions[0]"),
        ("NaN", "not a JSON object"),
        ("\xff\xfe", "fuzzed.img.json"),
    ],
    ids=short,
)
def test_hostile_sidecars(where: Path, sidecars: dict[str, Any], data: str, needle: str) -> None:
    with pytest.raises(PagingError) as info:
        load_with_sidecar(where, data)
    message = str(info.value)
    assert "fuzzed.img.json" in message and needle in message, message
    assert len(message) < 500, message[:200]


# -------------------------------------------------------------------------- through the CLI
@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("spec", "mode = " + "[" * 100_000 + "]" * 100_000),
        ("spec", 'mode = "x86_64"\nram = "infK"'),
        ("spec", 'mode = "x86_64"\nregions = 5'),
        ("spec", 'mode = "x86_64"\n[[map]]\nva = [1]\npa = 0'),
        ("sidecar", "[" * 100_000 + "]" * 100_000),
        ("sidecar", '{"mode": "x86_64", "roots": {"CR3": ' + "1" * 1_000_000 + "}}"),
        ("sidecar", '{"mode": "x86_64", "roots": 5}'),
        ("sidecar", '{"mode": "x86_64", "roots": {"CR3": 4194304}, "registers": {"cr4": "zz"}}'),
    ],
    ids=short,
)
def test_cli_exits_2_never_70(tmp_path: Path, kind: str, data: str) -> None:
    if kind == "spec":
        (tmp_path / "s.toml").write_text(data)
        args = ["build", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o.img")]
        name = "s.toml"
    else:
        (tmp_path / "m.img").write_bytes(bytes(1 << 23))
        (tmp_path / "m.img.json").write_text(data)
        args = ["maps", str(tmp_path / "m.img")]
        name = "m.img.json"
    proc = pagewalk_cli(*args, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[:300])
    assert proc.stderr.startswith("pagewalk: error:") and name in proc.stderr, proc.stderr[:300]
    assert "Traceback" not in proc.stderr and len(proc.stderr) < 500
