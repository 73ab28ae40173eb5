"""``walk``, ``translate`` and ``maps`` with a stage-2 option, through the installed command.

Images are host memory built with ``nested_scenes`` (both stages by AddressSpace, stage 2
placing guest pages out of order with :func:`nested_scenes.hpa_of`). The expected host PAs come
from ``hpa_of`` and a stage-1 walk directly over the guest's own RAM, never from the nested walk;
the fault registers are written out by hand from the manuals' layouts (SDM exit qualification,
ESR_EL2/HPFAR_EL2, scause/htval/htinst).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

import pagewalk
from nested_scenes import GUEST_RAM, HOST_DATA, KVM_40, Scene, build, hpa_of
from pagewalk.errors import PhysicalMemoryError
from pagewalk.formats import Perm
from pagewalk.walk import walk

URW = Perm.READ | Perm.WRITE | Perm.USER
MAPS = [(0x40_0000, 0x20_0000, 4096, URW),
        (0x40_1000, 0x8000, 4096, Perm.READ | Perm.EXEC)]  # fmt: skip
FAR_GPA = 0x4000_0000  # past the end of the 20-MiB host image

#: (stage 1, regime): the register options that describe it
CASES = [("x86_64", "ept"), ("x86_64", "npt"), ("aarch64", "arm"), ("sv39", "riscv")]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pagewalk", *args], capture_output=True, text=True, timeout=120, check=False
    )


def save(scene: Scene, tmp_path: Path) -> str:
    path = tmp_path / "host.raw"
    path.write_bytes(scene.host.read(0, HOST_DATA + GUEST_RAM))
    return str(path)


def options(s1: str, regime: str, scene: Scene, roots: tuple[int, ...] | None = None) -> list[str]:
    r = roots or scene.s1.roots
    if s1 == "aarch64":
        guest = ["--mode", s1, "--ttbr0", hex(r[0]), "--ttbr1", hex(r[1])]
    else:
        guest = ["--mode", s1, "--root", hex(r[0])]
    reg = hex(scene.register)
    stage2 = {"ept": ["--ept", reg], "npt": ["--ncr3", reg], "riscv": ["--hgatp", reg],
              "arm": ["--vttbr", reg, "--vtcr", hex(KVM_40)]}[regime]  # fmt: skip
    return guest + stage2


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize(("s1", "regime"), CASES)
def test_walk_maps_translate(tmp_path: Path, s1: str, regime: str) -> None:
    scene = build(s1, regime, MAPS)
    image, opts = save(scene, tmp_path), options(s1, regime, scene)
    va, gpa = 0x40_1123, 0x8123  # a supervisor page: `walk` is a supervisor read
    got = as_json(run("walk", image, *opts, hex(va), "--json"))
    assert (got["gpa"], got["pa"], got["fault"]) == (gpa, hpa_of(gpa), None)
    direct = walk(scene.guest, scene.s1.mode, scene.s1.roots, va).steps
    assert [s["entry_pa"] for s in got["s1_steps"]] == [s.entry_pa for s in direct]
    assert [s["raw"] for s in got["s1_steps"]] == [s.raw for s in direct]
    for step in got["s1_steps"]:  # each stage-1 table read went through stage 2
        assert step["s2"]["pa"] == hpa_of(step["entry_pa"])
        assert step["s2"]["steps"] and step["s2"]["fault"] is None
    assert got["s2"]["pa"] == hpa_of(gpa) and got["s2"]["steps"]
    hexed = as_json(run("walk", image, *opts, hex(va), "--json", "--hex"))
    assert (hexed["pa"], hexed["s1_steps"][0]["s2"]["ipa"]) == (
        hex(hpa_of(gpa)),
        hex(direct[0].entry_pa),
    )
    table = run("walk", image, *opts, hex(va))
    assert table.returncode == 0 and hex(hpa_of(gpa)) in table.stdout
    assert table.stdout.count("stage 2:") == len(direct)
    rows = as_json(run("maps", image, *opts, "--json"))
    want = [(v, size, gpa, hpa_of(gpa)) for v, gpa, size, _p in MAPS]
    if regime != "npt":  # AMD nested tables: U/S=0 at stage 2 denies; nested_scenes sets U
        assert [(r["va"], r["size"], r["gpa"], r["pa"]) for r in rows] == want
    assert as_json(run("maps", image, *opts, "--nested", "--json")) == rows
    text = run("maps", image, *opts)
    assert text.returncode == 0 and hex(hpa_of(0x8000)) in text.stdout
    both = as_json(run("translate", image, *opts, "0x400010", "0x401000", "--json", "--user"))
    assert [b["pa"] for b in both] == [hpa_of(0x20_0010), None]  # 0x401000: supervisor-only
    assert both[1]["fault"]["stage"] == 1


def test_guest_root_outside_the_image(tmp_path: Path) -> None:
    """The guest's root is guest-physical: stage 2 maps GPA 1 GiB (not in the 20-MiB image)
    onto the root's host page, and only the stage-2 walk may find it."""
    scene = build("x86_64", "ept", MAPS)
    root = scene.s1.roots[0]
    scene.s2.map(FAR_GPA, hpa_of(root), 4096, Perm.READ | Perm.WRITE | Perm.USER).ignore()
    image = save(scene, tmp_path)
    got = as_json(run("walk", image, *options("x86_64", "ept", scene, (FAR_GPA,)), "0x401000",
                      "--json"))  # fmt: skip
    assert got["pa"] == hpa_of(0x8000) and got["s1_steps"][0]["entry_pa"] == FAR_GPA
    plain = run("walk", image, "--mode", "x86_64", "--root", hex(FAR_GPA), "0x400000")
    assert plain.returncode == 2 and "outside the image" in plain.stderr
    with pytest.raises(PhysicalMemoryError):
        pagewalk.open(image, mode="x86_64", root=FAR_GPA)
    machine = pagewalk.open(image, mode="x86_64", root=FAR_GPA, guest_physical=True)
    assert machine.roots == (FAR_GPA,)


def _pt_gpa(scene: Scene, va: int) -> int:
    return walk(scene.guest, scene.s1.mode, scene.s1.roots, va).steps[-1].entry_pa


@pytest.mark.parametrize(("s1", "regime"), [("x86_64", "ept"), ("aarch64", "arm"),
                                            ("sv39", "riscv")])  # fmt: skip
def test_stage2_fault_on_a_table_read(tmp_path: Path, s1: str, regime: str) -> None:
    scene = build(s1, regime, MAPS)
    pte = _pt_gpa(scene, 0x40_0000)
    scene.s2.unmap_range(pte & ~0xFFF, 4096).ignore()
    image = save(scene, tmp_path)
    got = as_json(run("walk", image, *options(s1, regime, scene), "0x400000", "--json"))
    f = got["fault"]
    leaf_level = {"x86_64": 1, "aarch64": 3, "sv39": 0}[s1]
    assert (f["stage"], f["on_table"], f["s1_level"], f["gpa"]) == (2, True, leaf_level, pte)
    assert got["pa"] is None and f["s2"]["ipa"] == pte and f["s2"]["pa"] is None
    direct = walk(scene.guest, scene.s1.mode, scene.s1.roots, 0x40_0000).steps
    assert [s["entry_pa"] for s in got["s1_steps"]] == [s.entry_pa for s in direct[:-1]]
    rep = f["report"]
    if regime == "ept":  # SDM table 28-7: a read (0), GLA valid (7), not final (8 clear)
        assert (rep["exit_reason"], rep["qualification"], rep["gpa"]) == (48, 0x81, pte)
    elif regime == "arm":  # EC 0x24, IL, S1PTW (7), DFSC translation fault level 3
        assert rep["esr_el2"] == (0x24 << 26) | (1 << 25) | (1 << 7) | 0b000111
        assert rep["hpfar_el2"] == (pte >> 12) << 4
    else:  # load guest-page fault, htval = GPA >> 2, htinst for an implicit 64-bit PTE read
        assert (rep["cause"], rep["htval"], rep["htinst"]) == (21, pte >> 2, 0x3000)
    text = run("walk", image, *options(s1, regime, scene), "0x400000")
    assert text.returncode == 0 and "stage-2" in text.stdout and "table read" in text.stdout


def test_stage2_fault_on_the_final_gpa(tmp_path: Path) -> None:
    scene = build("aarch64", "arm", MAPS)
    scene.s2.protect_range(0x20_0000, 2 << 20, Perm.READ | Perm.USER).ignore()
    image = save(scene, tmp_path)
    opts = options("aarch64", "arm", scene)
    got = as_json(run("translate", image, *opts, "0x400010", "--access", "write", "--user",
                      "--json"))[0]  # fmt: skip
    f = got["fault"]
    assert (f["stage"], f["on_table"], f["gpa"], f["kind"]) == (2, False, 0x20_0010, "permission")
    # EC 0x24, IL, WnR (6), DFSC permission fault at level 2 (a 2-MiB stage-2 block)
    assert f["report"]["esr_el2"] == (0x24 << 26) | (1 << 25) | (1 << 6) | 0b001110
    assert got["gpa"] == 0x20_0010 and got["pa"] is None
    ok = as_json(run("translate", image, *opts, "0x400010", "--access", "read", "--json"))[0]
    assert ok["pa"] == hpa_of(0x20_0010)


def test_exit_statuses(tmp_path: Path) -> None:
    scene = build("x86_64", "ept", MAPS)
    image = save(scene, tmp_path)
    guest = ["--mode", "x86_64", "--root", hex(scene.s1.roots[0])]
    ept = ["--ept", hex(scene.register)]
    bad = [
        (["walk", image, *guest, "--vtcr", hex(KVM_40), "0x400000"], "--vtcr goes with"),
        (["walk", image, *guest, *ept, "--hgatp", hex(8 << 60), "0x400000"], "--ept and --hgatp"),
        (["walk", image, "--mode", "sv39", "--root", "0x100000", *ept, "0"], "x86 guests"),
        (["walk", image, *guest, "--ept", hex((1 << 40) | 0x1E), "0"], "outside the image"),
        (["maps", image, *guest, "--nested"], "--nested needs a stage 2"),
        (["maps", image, *guest, *ept, "--format", "csv"], "--format csv"),
        (["maps", image, *guest, *ept, "--perm", "w"], "--perm"),
        (["translate", image, *guest, *ept, "--from-file", image, "--to-file",
          str(tmp_path / "o")], "batch walker"),
        (["walk", image, *guest, "--ept", "0x1" + "0" * 17, "0"], "--ept"),
    ]  # fmt: skip
    for args, needle in bad:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert needle in proc.stderr, (args, proc.stderr)
        assert proc.stdout == "", args
    assert not (tmp_path / "o").exists()
