"""``pagewalk.open``: the library opens what the CLI opens, and answers what the CLI prints.

Each test opens a saved image (built by ``pagewalk build``) or an ELF core (QEMU's layout, from
tests/inspect/corefile.py) through the library, and compares with the JSON the installed command
prints for the same input, run as a user runs it (``python -m pagewalk`` in a subprocess). Bad
input raises a :class:`~pagewalk.errors.PagingError` subclass whose message is the CLI's
``pagewalk: error:`` line. Walks follow Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V
privileged spec.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pagewalk
from hostile.hostile_images import SMALL_SPEC, load_corefile, pagewalk_cli
from pagewalk.errors import ConfigError, DumpError, PagingError, PhysicalMemoryError

SPEC = (
    SMALL_SPEC
    + """
[[map]]
va = "{high}"
pa = "0x0"
size = "0x400000"
perm = "r"
"""
)
#: an upper-half VA each mode can map (x86-64: kernel half; AArch64: TTBR1; Sv39: upper half)
HIGH = {
    "x86_64": "0xffff800000000000",
    "pae": "0xc0000000",
    "aarch64": "0xffff000000000000",
    "sv39": "0xffffffc000000000",
}
CR0, CR4 = 0x80010001, 0x30  # PG|WP|PE; PAE|PSE, as a QEMU note carries them


def cli_json(*args: str) -> Any:
    proc = pagewalk_cli(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def cli_error(*args: str) -> str:
    """The one stderr line of a refused command (exit status 2), without the prefix."""
    proc = pagewalk_cli(*args)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
    assert proc.stderr.startswith("pagewalk: error: ") and proc.stderr.count("\n") == 1
    return proc.stderr.removeprefix("pagewalk: error: ").rstrip("\n")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A saved image per mode (built by the command, with IMAGE.json), and a two-CPU core of
    the x86-64 image's memory (the second CPU's CR3 carries a PCID, 0x123)."""
    where = tmp_path_factory.mktemp("open")
    out = {}
    for mode, high in HIGH.items():
        spec = where / f"{mode}.toml"
        spec.write_text(SPEC.format(mode=mode, high=high))
        out[mode] = str(where / f"{mode}.img")
        proc = pagewalk_cli("build", str(spec), "--out", out[mode])
        assert proc.returncode == 0, proc.stderr
    memory = Path(out["x86_64"]).read_bytes()
    cpus = [(CR0, 0x400000, CR4), (CR0, 0x400123, CR4)]
    out["core"] = str(load_corefile().make_core(where / "vmcore.elf", memory, cpus=cpus))
    return out


VAS = ("0x10123", "0x12fff", "0x13000", "0x0", "0x8000000000000000")


@pytest.mark.parametrize("name", [*HIGH, "core"])
def test_maps_and_translate_equal_the_cli(images: dict[str, str], name: str) -> None:
    image = images[name]
    machine = pagewalk.open(image)
    assert isinstance(machine, pagewalk.Machine)
    rows = [m.to_json() for m in machine.maps()]
    assert rows == cli_json("maps", image)
    assert rows, "the image maps something"
    columns = [m.to_json() for batch in machine.map_columns() for m in batch.rows()]
    assert columns == rows
    vas = (*VAS, HIGH.get(name, HIGH["x86_64"]))
    printed = cli_json("translate", image, *vas)
    assert [machine.walk(va).to_json() for va in vas] == printed
    for va, want in zip(vas, printed, strict=True):
        pa, size, fault = machine.translate(int(va, 16))
        assert (pa, size) == (want["pa"], want["page_size"])
        assert (fault is None) == (want["fault"] is None)


def test_a_core_reads_its_registers_and_cpu(images: dict[str, str]) -> None:
    core = images["core"]
    machine = pagewalk.open(core)
    assert (machine.mode.name, machine.roots, machine.core is not None) == (
        "x86_64",
        (0x400000,),
        True,
    )
    assert machine.sidecar is None and machine.why
    assert "CPU 0 of 2" in machine.why[0] and "CR3=0x400000" in machine.why[0]
    second = pagewalk.open(core, cpu=1)
    assert (
        second.roots == (0x400000,) and "CPU 1 of 2: CR0=0x80010001 CR3=0x400123" in second.why[0]
    )
    assert [m.to_json() for m in second.maps()] == cli_json("maps", core, "--cpu", "1")


def test_options_override_what_the_image_says(images: dict[str, str]) -> None:
    image = images["x86_64"]
    saved = pagewalk.open(image)
    assert saved.sidecar == Path(image + ".json") and saved.saved["mode"] == "x86_64"
    # the same tables read as LA57: one more level, so a different listing, as the CLI says
    la57 = pagewalk.open(image, mode="la57", root="0x400000")
    args = ("maps", image, "--mode", "la57", "--root", "0x400000")
    assert [m.to_json() for m in la57.maps()] == cli_json(*args)
    assert la57.mode.name == "la57" and la57.roots == (0x400000,)
    arm_saved = pagewalk.open(images["aarch64"])
    arm = pagewalk.open(images["aarch64"], ttbr1=0)
    assert arm.roots == (arm_saved.roots[0], 0) and arm_saved.roots[1] != 0
    args = ("maps", images["aarch64"], "--ttbr1", "0")
    assert [m.to_json() for m in arm.maps()] == cli_json(*args)


def test_filters_and_has_equal_the_cli(images: dict[str, str]) -> None:
    image = images["x86_64"]
    machine = pagewalk.open(image)
    window = [m.to_json() for m in machine.maps((0x10000, 0x11000))]
    assert window == cli_json("maps", image, "--range", "0x10000", "0x11000")
    assert len(window) == 1 and window[0]["va"] == 0x10000
    has = [m.to_json() for m in machine.maps(has=0x12345)]
    assert has == cli_json("maps", image, "--has", "0x12345")
    assert [(r["va"], r["size"]) for r in has] == [(0x10000, 0x3000)]
    aliases = [(va, m.va) for va, m in machine.aliases(0x200123)]
    printed = cli_json("p2v", image, "0x200123")
    assert [(d["va"], d["page_va"]) for d in printed[0]["vas"]] == aliases
    assert (0x10123, 0x10000) in aliases and (0xFFFF800000200123, 0xFFFF800000200000) in aliases


def test_walk_steps_equal_the_cli(images: dict[str, str]) -> None:
    image = images["aarch64"]
    machine = pagewalk.open(image)
    result = machine.walk(0xFFFF000000201000)
    printed = cli_json("walk", image, "0xffff000000201000")
    assert [s.entry_pa for s in result.steps] == [s["entry_pa"] for s in printed["steps"]]
    assert [s.raw for s in result.steps] == [s["raw"] for s in printed["steps"]]
    assert result.pa == printed["pa"] == 0x201000


@pytest.mark.parametrize(
    ("name", "options", "args", "error"),
    [
        ("x86_64", {"ttbr0": 0x1000}, ["--ttbr0", "0x1000"], ConfigError),
        ("aarch64", {"root": 0x400000}, ["--root", "0x400000"], ConfigError),
        ("sv39", {"satp": 0x8000000000080001, "mode": "x86_64"},
         ["--satp", "0x8000000000080001", "--mode", "x86_64"], ConfigError),
        ("pae", {"root": 1 << 40}, ["--root", hex(1 << 40)], ConfigError),
        ("x86_64", {"root": 0x40000000}, ["--root", "0x40000000"], PhysicalMemoryError),
        ("x86_64", {"cpu": 1}, ["--cpu", "1"], ConfigError),
        ("core", {"cpu": 7}, ["--cpu", "7"], DumpError),
        ("x86_64", {"tcr": 0x10}, ["--tcr", "0x10"], ConfigError),
    ],
)  # fmt: skip
def test_bad_options_raise_what_the_cli_prints(
    images: dict[str, str],
    name: str,
    options: dict[str, Any],
    args: list[str],
    error: type[PagingError],
) -> None:
    image = images[name]
    with pytest.raises(error) as raised:
        pagewalk.open(image, **options)
    assert str(raised.value) == cli_error("maps", image, *args)


def test_bad_files_raise_paging_errors(images: dict[str, str], tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing.img")
    with pytest.raises(PhysicalMemoryError) as raised:
        pagewalk.open(missing)
    assert str(raised.value) == cli_error("maps", missing)
    bad = tmp_path / "bad.img"
    bad.write_bytes(Path(images["x86_64"]).read_bytes())
    side = json.loads(Path(images["x86_64"] + ".json").read_text())
    side["regions"] = [[0, "lots"]]
    Path(f"{bad}.json").write_text(json.dumps(side))
    with pytest.raises(DumpError, match=re.escape(f"{bad}.json") + ".*regions") as raised:
        pagewalk.open(bad)
    assert str(raised.value) == cli_error("maps", str(bad))
    core = tmp_path / "cut.elf"
    core.write_bytes(Path(images["core"]).read_bytes()[:300])
    with pytest.raises(DumpError) as raised:
        pagewalk.open(core)
    assert str(raised.value) == cli_error("maps", str(core))


def test_bad_addresses_and_arguments_raise_paging_errors(images: dict[str, str]) -> None:
    machine = pagewalk.open(images["x86_64"])
    for call in (
        lambda: machine.walk("zero"),
        lambda: machine.translate(1 << 64),
        lambda: list(machine.maps((0x2000, 0x1000))),
        lambda: machine.maps(has=0x8000000000000000),
        lambda: pagewalk.open(images["x86_64"], mode="vax"),
        lambda: pagewalk.open(images["x86_64"], cpu=-1),
    ):
        with pytest.raises(PagingError):
            call()


def test_import_pagewalk_stays_light() -> None:
    code = (
        "import sys, pagewalk; light = 'pagewalk.machine' not in sys.modules; "
        "pagewalk.open; print(light, 'pagewalk.machine' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert proc.stdout.split() == ["True", "True"]


def test_no_architecture_branches_in_the_cli_or_the_library() -> None:
    """Register rules are data (mode.root_names, root_from_register, facts), not branches."""
    src = Path(pagewalk.__file__).parent
    files = [*(src / "cli").glob("*.py"), *(src / "machine").glob("*.py")]
    pattern = re.compile(r"isinstance\([^)]*Mode\)|mode\.name\s*[!=]=|\bname\s*==\s*\"aarch64\"")
    found = [f"{f.name}: {line.strip()}" for f in files for line in f.read_text().splitlines()
             if pattern.search(line)]  # fmt: skip
    assert not found, found
