"""The stage-2 options: from --ept/--vttbr+--vtcr/--hgatp/--ncr3 to a nested machine.

Images are built with AddressSpace for both stages (``nested_scenes``), saved as raw host memory
and opened with :func:`pagewalk.open` as a guest's stage 1; the nested machine the options make
must then agree with the walks of the machine built directly, and bad options must be refused
with the option named.
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import pagewalk
from nested_scenes import GUEST_RAM, HOST_DATA, KVM_40, build, hpa_of
from pagewalk.cli.nested_opts import nested_from, nested_machine, nested_options
from pagewalk.errors import ConfigError, PhysicalMemoryError
from pagewalk.formats import Perm, make_mode

MAPS = [(0x40_0000, 0x20_0000, 4096, Perm.READ | Perm.WRITE | Perm.USER),
        (0x40_1000, 0x8000, 4096, Perm.READ | Perm.EXEC)]  # fmt: skip

CASES = [
    ("x86_64", "ept", "ept", {}),
    ("x86_64", "npt", "ncr3", {}),
    ("aarch64", "arm", "vttbr", {"vtcr": KVM_40}),
    ("sv39", "riscv", "hgatp", {}),
]


def save(scene_host: object, tmp_path: Path) -> Path:
    path = tmp_path / "host.raw"
    path.write_bytes(scene_host.read(0, HOST_DATA + GUEST_RAM))  # type: ignore[attr-defined]
    return path


@pytest.mark.parametrize(("s1", "regime", "option", "extra"), CASES)
def test_options_make_the_nested_machine(
    tmp_path: Path, s1: str, regime: str, option: str, extra: dict[str, int]
) -> None:
    scene = build(s1, regime, MAPS)
    path = save(scene.host, tmp_path)
    r = scene.s1.roots
    roots = {"ttbr0": r[0], "ttbr1": r[1]} if s1 == "aarch64" else {"root": r[0]}
    machine = pagewalk.open(str(path), mode=s1, **roots)
    nested = nested_machine(machine, **{option: scene.register, **extra})
    assert nested is not None
    for va, gpa, _size, perm in MAPS:
        w = nested.walk(va + 5, user=bool(perm & Perm.USER))
        assert (w.pa, w.gpa) == (hpa_of(gpa + 5), gpa + 5)
        assert nested.translate(va + 5)[0] in (hpa_of(gpa + 5), None)
    if regime != "npt":
        rows = [(r.va, r.size, r.pa) for r in nested.maps()]
        assert rows == [(va, size, hpa_of(gpa)) for va, gpa, size, _p in MAPS]
    assert nested_machine(machine) is None  # no stage-2 option: no nested machine


def test_refusals() -> None:
    scene = build("x86_64", "ept", MAPS)
    x86 = make_mode("x86_64")
    root = scene.s1.roots
    with pytest.raises(ConfigError, match="--ept and --hgatp"):
        nested_from(scene.host, x86, root, ept=scene.register, hgatp=8 << 60)
    with pytest.raises(ConfigError, match="--vtcr goes with --vttbr"):
        nested_from(scene.host, x86, root, vtcr=KVM_40)
    with pytest.raises(ConfigError, match="--vttbr needs --vtcr"):
        nested_from(scene.host, make_mode("aarch64"), (0, 0), vttbr=0x1000)
    with pytest.raises(ConfigError, match="--hgatp describes a stage 2 for riscv guests"):
        nested_from(scene.host, x86, root, hgatp=(8 << 60) | 0x100)
    with pytest.raises(ConfigError, match="EPTP"):
        nested_from(scene.host, x86, root, ept=scene.register | 1)  # memory type 7
    with pytest.raises(ConfigError, match="VTCR_EL2"):
        nested_from(scene.host, make_mode("aarch64"), (0, 0), vttbr=0x1000, vtcr=16 | (3 << 6))
    with pytest.raises(PhysicalMemoryError, match="--ept: the stage-2 root"):
        nested_from(scene.host, x86, root, ept=(1 << 40) | 0x1E)


def test_click_options_parse() -> None:
    seen: dict[str, object] = {}

    @click.command()
    @nested_options
    def cmd(**kw: object) -> None:
        seen.update(kw)

    result = CliRunner().invoke(cmd, ["--vttbr", "0x8_4000", "--vtcr", "0x80_0058"])
    assert result.exit_code == 0, result.output
    assert (seen["vttbr"], seen["vtcr"], seen["ept"]) == (0x84000, 0x800058, None)
    bad = CliRunner().invoke(cmd, ["--ept", "0x1_0000_0000_0000_0000"])
    assert bad.exit_code == 2 and "--ept" in bad.output
