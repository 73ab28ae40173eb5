"""`pagewalk boot`: the main job, on every profile, with --json, --save and --memmap."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Cli

from pagewalk.kernel import profile_names

E820 = """\
[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
[    0.000000] BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved
[    0.000000] BIOS-e820: [mem 0x00000000000f0000-0x00000000000fffff] reserved
[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x000000000bffdfff] usable
[    0.000000] BIOS-e820: [mem 0x000000000bffe000-0x000000000bffffff] reserved
"""


@pytest.mark.parametrize("profile", profile_names())
def test_boot_json_every_profile(profile: str, cli: Cli) -> None:
    code, out, err = cli(["boot", "--profile", profile, "--json", "--processes", "3"])
    assert code == 0, err
    data = json.loads(out)
    assert data["profile"] == profile
    assert {c["name"] for c in data["checks"]} >= {"fork", "shared memory", "fatal fault"}
    assert all(c["ok"] for c in data["checks"]), data["checks"]
    assert len(data["processes"]) >= 3
    assert data["kernel_mappings"] and data["memory_map"]
    assert data["tlb"]["walks"] > 0 and data["tlb"]["stale_uses"] == 0
    assert data["walk"]["pa"] is not None


def test_boot_default_prints_the_seven_sections(cli: Cli) -> None:
    code, out, _ = cli(["boot"])
    assert code == 0
    for title in ("memory map", "frame allocator", "kernel mappings", "processes",
                  "annotated page walk", "copy-on-write", "TLB"):  # fmt: skip
        assert title in out
    assert "powernex" in out and "FAIL" not in out


def test_boot_save_is_read_by_maps_and_translate(tmp_path: Path, cli: Cli) -> None:
    code, _, err = cli(["boot", "--save", str(tmp_path), "--json"])
    assert code == 0, err
    image = tmp_path / "memory.img"
    regs = json.loads((tmp_path / "memory.img.json").read_text())
    assert regs["mode"] == "x86_64" and len(regs["processes"]) >= 2
    code, out, _ = cli(["maps", str(image), "--json"])
    assert code == 0
    direct = [m for m in json.loads(out) if m["va"] == 0xFFFF800000000000]
    assert direct and direct[0]["pa"] == 0 and direct[0]["page_size"] == 0x200000
    user_root = str(regs["processes"][0]["roots"]["CR3"])
    code, out, _ = cli(["translate", str(image), "--root", user_root, "--json", "0x400000"])
    assert code == 0 and json.loads(out)[0]["pa"] is not None


def test_boot_with_a_firmware_memory_map(tmp_path: Path, cli: Cli) -> None:
    log = tmp_path / "dmesg.txt"
    log.write_text(E820)
    code, out, err = cli(["boot", "--memmap", str(log), "--json"])
    assert code == 0, err
    data = json.loads(out)
    bases = [r["base"] for r in data["memory_map"]]
    assert 0x100000 in bases and data["ram"] >= 0xBF00000
