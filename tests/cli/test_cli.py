"""The command-line contract: JSON shapes, register options, and one-line errors with status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Cli


SPEC = """
mode = "{mode}"
ram = "8M"
[tables]
base = "0x400000"
size = "4M"
[[map]]
va = "{va}"
pa = "0x200000"
size = "0x3000"
perm = "rwu"
[[map]]
va = "{va2}"
pa = "0x0"
size = "4M"
perm = "r"
"""


@pytest.fixture
def image(tmp_path: Path, cli: Cli) -> Path:
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(mode="x86_64", va="0x10000", va2="0xffff800000000000"))
    out = tmp_path / "m.img"
    code, stdout, _ = cli(["build", str(spec), "--out", str(out)])
    assert code == 0 and "CR3=0x400000" in stdout
    return out


def test_translate_json_contract(image: Path, cli: Cli) -> None:
    vas = ["0x10123", "0x13000", "0xffff800000201000", "0x800000000000"]
    code, out, _ = cli(["translate", str(image), "--json", *vas])
    assert code == 0
    data = json.loads(out)
    assert [d["va"] for d in data] == [int(v, 16) for v in vas]
    assert data[0] == {"va": 0x10123, "pa": 0x200123, "page_size": 4096, "fault": None}
    assert data[1]["fault"] == {"kind": "not-present", "level": 1}
    assert data[2] == {
        "va": 0xFFFF800000201000,
        "pa": 0x201000,
        "page_size": 0x200000,
        "fault": None,
    }
    assert data[3]["fault"] == {"kind": "non-canonical", "level": None}
    assert data[3]["pa"] is None and data[3]["page_size"] is None


def test_maps_json_contract(image: Path, cli: Cli) -> None:
    code, out, _ = cli(["maps", str(image), "--json"])
    assert code == 0
    rows = json.loads(out)
    keys = {"va", "size", "pa", "page_size", "writable", "user", "executable"}
    assert all(keys <= set(r) for r in rows)
    assert [(r["va"], r["size"], r["pa"], r["page_size"]) for r in rows] == [
        (0x10000, 0x3000, 0x200000, 0x1000),
        (0xFFFF800000000000, 0x400000, 0, 0x200000),
    ]
    assert (rows[0]["writable"], rows[0]["user"], rows[0]["executable"]) == (True, True, False)
    assert (rows[1]["writable"], rows[1]["user"], rows[1]["executable"]) == (False, False, False)


def test_explicit_registers_override_sidecar(image: Path, cli: Cli) -> None:
    image.with_name(image.name + ".json").unlink()
    code, out, _ = cli(["translate", str(image), "--json", "0x10000"])
    assert code == 2
    code, out, _ = cli(
        ["translate", str(image), "--mode", "x86_64", "--root", "0x400000", "--json", "0x10000"]
    )
    assert code == 0 and json.loads(out)[0]["pa"] == 0x200000
    # A CR3 value with PCID bits still selects the same root.
    code, out, _ = cli(
        ["translate", str(image), "--mode", "x86_64", "--root", "0x400005", "--json", "0x10000"]
    )
    assert json.loads(out)[0]["pa"] == 0x200000


def test_human_output_shows_each_step(image: Path, cli: Cli) -> None:
    code, out, _ = cli(["translate", str(image), "0x10123"])
    assert code == 0
    for name in ("PML4", "PDPT", "PD", "PT"):
        assert name in out
    assert "0x10123 -> 0x200123" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["translate", "{missing}", "--mode", "x86_64", "--root", "0", "0x0"], "does not exist"),
        (["translate", "{image}", "--mode", "x86_65", "--root", "0", "0x0"], "x86_65"),
        (["translate", "{image}", "notanumber"], "not a number"),
        (["translate", "{image}", "--root", "0x7fffff000", "0x0"], "outside the image"),
        (["translate", "{image}", "--tcr", "0x10", "0x0"], "does not take --tcr"),
        (["maps", "{tiny}", "--mode", "x86_64", "--root", "0x2000"], "outside the image"),
        (["build", "{badspec}", "--out", "{out}"], "not valid TOML"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    args: list[str],
    needle: str,
    image: Path,
    tmp_path: Path,
    cli: Cli,
) -> None:
    tiny = tmp_path / "tiny.img"
    tiny.write_bytes(b"\0" * 4096)
    bad = tmp_path / "bad.toml"
    bad.write_text("mode = \n")
    names = {
        "image": str(image),
        "missing": str(tmp_path / "nope.img"),
        "tiny": str(tiny),
        "badspec": str(bad),
        "out": str(tmp_path / "o.img"),
    }
    code, out, err = cli([a.format(**names) for a in args])
    assert code == 2, (out, err)
    assert needle in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_console_script_runs(image: Path) -> None:
    """The installed entry point works as a subprocess (the README's main job)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pagewalk", "maps", str(image), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["va"] == 0x10000


@pytest.mark.parametrize(
    ("mode", "va", "va2", "root_opts"),
    [
        ("x86", "0x10000", "0x80000000", []),
        ("pae", "0x10000", "0x80000000", []),
        ("la57", "0x10000", "0xff00000000000000", []),
        ("aarch64", "0x10000", "0xffff000000000000", []),
        ("sv32", "0x10000", "0x80000000", []),
        ("sv39", "0x10000", "0xffffffc000000000", []),
        ("sv48", "0x10000", "0xffff800000000000", []),
        ("sv57", "0x10000", "0xff00000000000000", []),
    ],
)
def test_every_mode_round_trips_through_an_image(
    mode: str,
    va: str,
    va2: str,
    root_opts: list[str],
    tmp_path: Path,
    cli: Cli,
) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(mode=mode, va=va, va2=va2))
    out = tmp_path / "m.img"
    assert cli(["build", str(spec), "--out", str(out)])[0] == 0
    code, stdout, err = cli(["translate", str(out), "--json", "0x10004", va2])
    assert code == 0, err
    data = json.loads(stdout)
    assert data[0]["pa"] == 0x200004
    assert data[1]["pa"] == 0


def test_translate_access_checks_carry_the_cpu_fault_code(image: Path, cli: Cli) -> None:
    """--access/--user: x86 faults become `protection` with the #PF error code (SDM §4.7)."""
    code, out, _ = cli(
        ["translate", str(image), "--json", "--access", "write", "--user",
         "0x10000", "0xffff800000000000", "0x13000"])  # fmt: skip
    assert code == 0
    rows = json.loads(out)
    assert rows[0] == {"va": 0x10000, "pa": 0x200000, "page_size": 4096, "fault": None}
    # User write to a supervisor, read-only 2 MiB page: P=1, W/R=1, U/S=1 -> 0x7, at the PD.
    assert rows[1]["fault"] == {"kind": "protection", "level": 2, "code": 0x7}
    # Not present: P=0, W/R=1, U/S=1 -> 0x6.
    assert rows[2]["fault"]["kind"] == "not-present" and rows[2]["fault"]["code"] == 0x6
    code, out, _ = cli(["translate", str(image), "--json", "--access", "exec", "0x10000"])
    # The mapping is user rw- with XD set: a supervisor fetch faults with P|I/D = 0x11.
    assert json.loads(out)[0]["fault"] == {"kind": "protection", "level": 1, "code": 0x11}


def test_translate_access_aarch64_permission_fault(tmp_path: Path, cli: Cli) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(mode="aarch64", va="0x10000", va2="0xffff000000000000"))
    out = tmp_path / "m.img"
    assert cli(["build", str(spec), "--out", str(out)])[0] == 0
    code, stdout, _ = cli(
        ["translate", str(out), "--json", "--access", "read", "--user", "0xffff000000000000"]
    )
    assert code == 0
    fault = json.loads(stdout)[0]["fault"]
    # EL0 read of an EL1-only block at level 2: Permission fault, level 2 (FSC 0b001110).
    assert fault == {"kind": "permission", "level": 2, "code": 0x0E}
