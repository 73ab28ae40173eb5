"""Options that do not apply, or values wider than their register, are refused with status 2.

Every refusal names the option (and, for a mode mismatch, the option to use instead). The
register widths follow Intel SDM vol. 3A §2.5 (CR0, CR3, CR4, IA32_EFER; CR3 is 32 bits outside
IA-32e mode), Arm ARM D19 (TTBRn_EL1, TCR_EL1, MAIR_EL1) and the RISC-V privileged spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hostile_images import SMALL_SPEC, load_corefile, pagewalk_cli

from pagewalk.cli.machine import load_machine
from pagewalk.errors import ConfigError, PagingError

if TYPE_CHECKING:
    from conftest import Cli


MODES = ("x86", "pae", "x86_64", "la57", "aarch64", "sv32", "sv39")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One built image per mode (each with IMAGE.json), plus a two-CPU x86-64 core."""
    from pagewalk.cli.main import main

    where = tmp_path_factory.mktemp("images")
    out = {}
    for mode in MODES:
        spec = where / f"{mode}.toml"
        spec.write_text(SMALL_SPEC.format(mode=mode))
        out[mode] = str(where / f"{mode}.img")
        with pytest.raises(SystemExit) as done:
            main(["build", str(spec), "--out", out[mode]])
        assert done.value.code == 0
    memory = Path(out["x86_64"]).read_bytes()
    cr0, cr4 = 0x80010001, 0x20
    out["core"] = str(
        load_corefile().make_core(
            where / "core.elf", memory, cpus=[(cr0, 0x400000, cr4), (cr0, 0x400000, cr4)]
        )
    )
    return out


def refused(cli: Cli, args: list[str], *needles: str) -> str:
    code, out, err = cli(args)
    assert code == 2, (args, code, out, err)
    assert err.startswith("pagewalk: error:"), err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


@pytest.mark.parametrize("mode", ["x86", "pae", "x86_64", "la57", "sv32", "sv39"])
@pytest.mark.parametrize("option", ["--ttbr0", "--ttbr1", "--tcr", "--mair"])
def test_aarch64_options_are_refused_elsewhere(
    images: dict[str, str], cli: Cli, mode: str, option: str
) -> None:
    refused(cli, ["maps", images[mode], option, "0x1000"], option, mode)


@pytest.mark.parametrize("mode", ["aarch64", "sv32", "sv39"])
@pytest.mark.parametrize("option", ["--cr0", "--cr4", "--efer", "--maxphyaddr"])
def test_x86_options_are_refused_elsewhere(
    images: dict[str, str], cli: Cli, mode: str, option: str
) -> None:
    refused(cli, ["maps", images[mode], option, "40"], option, mode)


def test_root_on_aarch64_points_to_ttbr0(images: dict[str, str], cli: Cli) -> None:
    refused(cli, ["maps", images["aarch64"], "--root", "0x400000"], "--root", "--ttbr0")
    # ... even when the mode comes from the option and not from the image
    refused(cli, ["maps", images["x86_64"], "--mode", "aarch64", "--root", "0x400000"], "--ttbr0")


def test_ttbr0_on_aarch64_still_works(images: dict[str, str], cli: Cli) -> None:
    code, out, err = cli(["translate", images["aarch64"], "--ttbr0", "0x400000", "0x10000"])
    assert code == 0, err
    assert "0x200000" in out


@pytest.mark.parametrize(
    "option", ["--root", "--ttbr0", "--ttbr1", "--tcr", "--mair", "--cr0", "--cr4", "--efer"]
)
@pytest.mark.parametrize("value", [str(1 << 64), hex(1 << 80), "-1", "-0x1000"])
def test_values_wider_than_64_bits_or_negative_are_refused(
    images: dict[str, str], cli: Cli, option: str, value: str
) -> None:
    refused(cli, ["maps", images["x86_64"], option, value], option)


@pytest.mark.parametrize("option", ["--range", "--phys"])
def test_address_pairs_must_fit_64_bits(images: dict[str, str], cli: Cli, option: str) -> None:
    refused(cli, ["maps", images["x86_64"], option, "0", str(1 << 64)], option)


def test_largest_64_bit_value_is_accepted(images: dict[str, str], cli: Cli) -> None:
    code, _, err = cli(["maps", images["x86_64"], "--has", hex((1 << 64) - 1)])
    assert code == 0, err


def test_cr3_of_32_bit_paging_is_32_bits(images: dict[str, str], cli: Cli) -> None:
    refused(cli, ["maps", images["x86"], "--root", hex(1 << 32 | 0x400000)], "CR3", "32")
    refused(cli, ["maps", images["pae"], "--root", hex(1 << 32 | 0x400000)], "CR3", "32")


def test_maxphyaddr_out_of_range_is_refused(images: dict[str, str], cli: Cli) -> None:
    refused(cli, ["maps", images["x86_64"], "--maxphyaddr", "99"], "MAXPHYADDR")


def test_cpu_on_a_raw_image_is_refused(images: dict[str, str], cli: Cli) -> None:
    for cmd in (["maps"], ["walk"], ["stats"], ["find-roots"]):
        args = [*cmd, images["x86_64"], "--cpu", "0"]
        if cmd == ["walk"]:
            args.append("0x10000")
        refused(cli, args, "--cpu", "ELF core")


def test_cpu_out_of_range_on_a_core_is_refused(images: dict[str, str], cli: Cli) -> None:
    refused(cli, ["maps", images["core"], "--cpu", "5"], "CPU 5", "0..1")
    refused(cli, ["find-roots", images["core"], "--cpu", "2"], "CPU 2")
    refused(cli, ["maps", images["core"], "--cpu", "-1"], "--cpu")


def test_cpu_in_range_on_a_core_works(images: dict[str, str], cli: Cli) -> None:
    code, out, err = cli(["translate", images["core"], "--cpu", "1", "0x10000"])
    assert code == 0, err
    assert "0x200000" in out


def test_a_new_mode_does_not_inherit_another_familys_registers(
    images: dict[str, str], cli: Cli
) -> None:
    """--mode sv39 on an x86-64 image: the image's CR0/CR4/EFER/CR3 do not apply, and the
    error says what to give instead of blaming options the user never typed."""
    err = refused(cli, ["maps", images["x86_64"], "--mode", "sv39"], "--root")
    assert "--cr0" not in err
    code, _, err = cli(["maps", images["x86_64"], "--mode", "sv39", "--root", "0x400000"])
    # the root given is used, and x86 tables read as Sv39 fault at the root: maps says so
    assert code == 2 and "0x400000" in err and "nothing can be translated" in err, err
    assert "--cr0" not in err
    code, _, err = cli(["maps", images["x86_64"], "--mode", "aarch64", "--ttbr0", "0x400000"])
    assert code == 0, err


def test_same_family_mode_keeps_the_image_root(images: dict[str, str], cli: Cli) -> None:
    code, _, err = cli(["maps", images["x86_64"], "--mode", "la57"])
    assert code == 0, err


def test_load_machine_refuses_in_process(images: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="--ttbr1"):
        load_machine(images["sv39"], {"ttbr1": 0x1000})
    with pytest.raises(ConfigError, match="--ttbr0"):
        load_machine(images["aarch64"], {"root": 0x400000})
    with pytest.raises(PagingError, match="64 bits"):
        load_machine(images["x86_64"], {"root": 1 << 64})
    with pytest.raises(PagingError, match="--cpu"):
        load_machine(images["x86_64"], {}, cpu=3)


def test_subprocess_statuses(images: dict[str, str]) -> None:
    """The same refusals reach the shell as status 2 through the entry point."""
    for args in (
        ["maps", images["x86_64"], "--ttbr0", "0x1000"],
        ["maps", images["aarch64"], "--root", "0x400000"],
        ["maps", images["x86_64"], "--root", str(1 << 80)],
        ["maps", images["x86_64"], "--cpu", "5"],
        ["maps", images["core"], "--cpu", "5"],
    ):
        proc = pagewalk_cli(*args, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("ram", "needle"),
    [("infk", "infk"), ("1e30k", "110-bit"), ("-5", "--ram"), ("zz", "zz"), ("0", "--ram")],
)
def test_boot_ram_must_be_a_size(cli: Cli, ram: str, needle: str) -> None:
    refused(cli, ["boot", "--ram", ram], "--ram", needle)
