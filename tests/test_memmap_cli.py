"""``pagewalk memmap FILE``: table, JSON, and one clear line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pagewalk.cli.memmap_cmd import memmap

LOG = """\
[    0.000000] BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable
[    0.000000] BIOS-e820: [mem 0x000000000009fc00-0x000000000009ffff] reserved
[    0.000000] BIOS-e820: [mem 0x0000000000100000-0x0000000007fdffff] usable
"""


@pytest.fixture
def cli() -> click.Group:
    group = click.Group("pagewalk")
    group.add_command(memmap)
    return group


def test_table_with_totals(cli: click.Group, tmp_path: Path) -> None:
    path = tmp_path / "dmesg.txt"
    path.write_text(LOG)
    result = CliRunner().invoke(cli, ["memmap", str(path)])
    assert result.exit_code == 0, result.output
    assert "0x9fc00" in result.output and "0x7fdffff" in result.output
    assert "32639 frames" in result.output  # 0x9f frames + 0x7ee0 frames
    assert "warning: usable region 0x0-0x9fbff" in result.output


def test_json_output(cli: click.Group, tmp_path: Path) -> None:
    path = tmp_path / "map.toml"
    path.write_text('[[region]]\nbase = 0\nlength = "1M"\ntype = "usable"\n')
    result = CliRunner().invoke(cli, ["memmap", "--json", str(path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["usable_frames"] == 256
    assert data["regions"][0] == {
        "base": "0x0",
        "end": "0x100000",
        "length": 0x100000,
        "type": "usable",
        "acpi": 0,
        "source_type": "usable",
    }


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ('{"regions": [{"base": 0, "length": 0}]}', [], "region at 0x0 has length 0"),
        (LOG, ["--strict"], "end not 4 KiB aligned"),
        ("hello", [], "not a memory map"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    cli: click.Group, tmp_path: Path, content: str, args: list[str], message: str
) -> None:
    path = tmp_path / "bad"
    path.write_text(content)
    result = CliRunner().invoke(cli, ["memmap", *args, str(path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pagewalk: error: ")
    assert message in lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)
