"""Start-up cost: the ``pagewalk`` command imports only what the invoked command needs.

Issue 14 wants ``pagewalk maps IMAGE --json`` to finish, whole process, in about 0.2 s, so the
command must not pay for the rest of the library at start-up: ``import pagewalk`` is lazy
(PEP 562), :mod:`pagewalk.cli.main` imports a command's module only when that command runs, and
the modules on the ``maps`` path import the kernel model, the address-space editor, ELF and zstd
readers, the TOML parser and the output-file machinery only where they are used. Each check runs
the CLI in a fresh interpreter and compares ``sys.modules`` before and after, so a module that
the interpreter itself loaded (``site``) does not count, and a test fails when someone re-adds an
eager import. The command table of :mod:`pagewalk.cli.main` is checked against the commands.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import pytest

import pagewalk
import pagewalk.cli
from pagewalk.cli.main import COMMANDS, load_command

if TYPE_CHECKING:
    from conftest import Cli

#: runs the CLI in-process in a fresh interpreter; writes the exit status and the modules the
#: CLI imported (beyond the interpreter's own) as JSON to the file named by argv[1]
PROBE = """
import json, sys
out, load_all, args = sys.argv[1], sys.argv[2] == "all", sys.argv[3:]
before = set(sys.modules)
from pagewalk.cli.main import COMMANDS, cli, main
if load_all:
    import click
    for name in COMMANDS:
        cli.get_command(click.Context(cli), name)
try:
    main(args)
except SystemExit as exc:
    code = exc.code
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(set(sys.modules) - before)}, f)
"""

#: the command modules; ``--help`` imports none of them
COMMAND_MODULES = sorted({target.partition(":")[0] for target, _ in COMMANDS.values()})

#: modules ``maps IMAGE --json`` must not import: other commands, the kernel model, the editor
#: and allocators (images are only read), the TOML and memory-map readers, output files
#: (safeio), the ELF and compressed-dump readers (a raw image is neither), and test-only tools
NOT_FOR_MAPS = [
    *(m for m in COMMAND_MODULES if m != "pagewalk.cli.inspect_cmds"),
    "pagewalk.kernel",
    "pagewalk.space",
    "pagewalk.alloc",
    "pagewalk.mmu",
    "pagewalk.memory.memmap_readers",
    "pagewalk.safeio",
    "tomllib",
    "elftools",
    "zstandard",
    "gzip",
    "volatility3",
    "unicorn",
    "certifi",
    "hypothesis",
    "pytest",
]


def probe(tmp_path: Path, args: list[str], *, load_all: bool = False) -> tuple[Any, list[str]]:
    """Run the CLI with ``args`` in a fresh interpreter: (exit status, modules it imported)."""
    out = tmp_path / "probe.json"
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), "all" if load_all else "one", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.exists(), proc.stderr
    result = json.loads(out.read_text())
    return result["code"], result["modules"]


def loaded(modules: list[str], names: list[str]) -> list[str]:
    """The names (packages count with their submodules) that are among ``modules``."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


@pytest.fixture
def image(tmp_path: Path, cli: Cli) -> Path:
    spec = tmp_path / "s.toml"
    spec.write_text(
        'mode = "x86_64"\nram = "8M"\n[tables]\nbase = "0x400000"\nsize = "4M"\n'
        '[[map]]\nva = "0x10000"\npa = "0x200000"\nsize = "0x3000"\nperm = "rwu"\n'
    )
    out = tmp_path / "m.img"
    assert cli(["build", str(spec), "--out", str(out)])[0] == 0
    return out


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """The probe sees what a command imports: ``build`` reads TOML and writes files."""
    code, modules = probe(tmp_path, ["build", "--help"])
    assert code == 0
    assert loaded(modules, ["pagewalk.cli.image_cmds"]) == ["pagewalk.cli.image_cmds"]
    assert loaded(modules, NOT_FOR_MAPS)


def test_maps_json_imports_only_what_it_needs(tmp_path: Path, image: Path) -> None:
    code, modules = probe(tmp_path, ["maps", str(image), "--json"])
    assert code == 0
    assert "pagewalk.cli.inspect_cmds" in modules
    assert loaded(modules, NOT_FOR_MAPS) == []


def test_maps_json_does_not_import_rich(tmp_path: Path, image: Path) -> None:
    code, modules = probe(tmp_path, ["maps", str(image), "--json"])
    assert code == 0
    assert loaded(modules, ["rich"]) == []


def test_import_is_light(tmp_path: Path) -> None:
    """The CLI's own module imports click and the error types, no command and no numpy."""
    out = tmp_path / "mods.json"
    code = (
        "import json, sys; before = set(sys.modules); import pagewalk; "
        "light = sorted(set(sys.modules) - before); import pagewalk.cli.main; "
        f"json.dump([light, sorted(set(sys.modules) - before)], open({str(out)!r}, 'w'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    package, cli_main = json.loads(out.read_text())
    # only our own modules are compared: which stdlib modules are already loaded at start-up
    # depends on the interpreter and its site-packages (a fresh venv loads typing here)
    assert [m for m in package if m.split(".")[0] == "pagewalk"] == ["pagewalk"]
    assert loaded(package, ["numpy", "rich", "click"]) == []
    ours = [m for m in cli_main if m.split(".")[0] == "pagewalk"]
    assert sorted(ours) == ["pagewalk", "pagewalk.cli", "pagewalk.cli.main", "pagewalk.errors"]
    assert loaded(cli_main, ["numpy", "rich", *NOT_FOR_MAPS]) == []


def test_help_lists_every_command_without_importing_them(tmp_path: Path) -> None:
    code, modules = probe(tmp_path, ["--help"])
    assert code == 0
    assert loaded(modules, [*COMMAND_MODULES, "numpy", "rich"]) == []
    script = Path(sys.executable).with_name("pagewalk")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pagewalk"]
    lazy = subprocess.run([*command, "--help"], capture_output=True, text=True, check=True)
    listed = lazy.stdout.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in listed if line.startswith("  ")] == sorted(COMMANDS)
    # the same text as when every command is loaded and click reads the real help
    eager = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "x.json"), "all", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert eager.stdout == lazy.stdout


def _module_commands() -> dict[str, click.Command]:
    """Every command that a module of :mod:`pagewalk.cli` lists in its ``COMMANDS``."""
    found: dict[str, click.Command] = {}
    for info in pkgutil.iter_modules(pagewalk.cli.__path__, "pagewalk.cli."):
        module = importlib.import_module(info.name)
        listed = getattr(module, "COMMANDS", None)
        if isinstance(listed, list):
            for command in listed:
                assert command.name not in found, f"two commands named {command.name}"
                found[str(command.name)] = command
    return found


def test_command_table_matches_the_commands() -> None:
    """Every command is in the table, found where it says, with its own help's first paragraph."""
    commands = _module_commands()
    assert sorted(commands) == sorted(COMMANDS)
    for name, (_target, short) in COMMANDS.items():
        command = load_command(name)
        assert command is commands[name]
        assert command.name == name
        assert command.short_help is None and not command.hidden
        assert command.help is not None
        assert " ".join(command.help.split("\n\n")[0].split()) == short, name


def test_lazy_package_names() -> None:
    """``pagewalk``'s public names are the objects of the modules that hold them."""
    lazy: dict[str, str] = vars(pagewalk)["_LAZY"]
    assert sorted(lazy) == sorted(pagewalk.__all__)
    assert set(pagewalk.__all__) <= set(dir(pagewalk))
    for name, module in lazy.items():
        assert getattr(pagewalk, name) is getattr(importlib.import_module(module), name)
    importlib.import_module("pagewalk.walk")  # binds the submodule; the function stays
    assert callable(pagewalk.walk) and pagewalk.walk.__module__ == "pagewalk.walk"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = pagewalk.nope  # type: ignore[attr-defined]
