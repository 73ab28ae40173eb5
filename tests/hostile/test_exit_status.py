"""The exit-status contract, through the installed entry point (``python -m pagewalk``).

0 ok, 1 findings or failed checks, 2 bad input (one ``pagewalk: error:`` line), 70 internal
error, 130 interrupted; never a traceback. See docs/cli.md, "Exit status".
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hostile_images import SMALL_SPEC


def run(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m pagewalk ARGS``, or ``python -c CODE ARGS`` for a patched run."""
    head = ["-c", code] if code is not None else ["-m", "pagewalk"]
    return subprocess.run(
        [sys.executable, *head, *args], capture_output=True, text=True, timeout=300, check=False
    )


def assert_bad_input(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    """Exit 2 with one ``pagewalk: error:`` line that says ``needle``, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.startswith("pagewalk: error:"), proc.stderr
    assert needle in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One built image per mode family, each with its ``IMAGE.json``."""
    where = tmp_path_factory.mktemp("images")
    out = {}
    for mode in ("x86_64", "aarch64", "sv39"):
        spec = where / f"{mode}.toml"
        spec.write_text(SMALL_SPEC.format(mode=mode))
        out[mode] = where / f"{mode}.img"
        proc = run("build", str(spec), "--out", str(out[mode]))
        assert proc.returncode == 0, proc.stderr
    return out


def test_main_module_calls_main() -> None:
    text = Path(__file__).parents[2].joinpath("src/pagewalk/__main__.py").read_text()
    assert "main()" in text


def test_boot_exits_0() -> None:
    proc = run("boot", "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"checks"' in proc.stdout


def test_boot_with_a_failed_check_exits_1() -> None:
    """A demo check that does not hold must reach the shell as status 1, through main()."""
    code = textwrap.dedent(
        """
        import sys
        import pagewalk.cli.boot_cmd as boot_cmd
        from pagewalk.cli.main import main
        from pagewalk.kernel.demo import Check

        real = boot_cmd.run_demo

        def failing(*args, **kwargs):
            report = real(*args, **kwargs)
            report.checks.append(Check("planted", False, "a check that fails on purpose"))
            return report

        boot_cmd.run_demo = failing
        main(sys.argv[1:])
        """
    )
    proc = run("boot", code=code)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "FAIL" in proc.stdout and "planted" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_internal_error_exits_70() -> None:
    code = textwrap.dedent(
        """
        import sys
        import pagewalk.cli.boot_cmd as boot_cmd
        from pagewalk.cli.main import main

        def broken(*args, **kwargs):
            raise ZeroDivisionError("planted")

        boot_cmd.run_demo = broken
        main(sys.argv[1:])
        """
    )
    proc = run("boot", code=code)
    assert proc.returncode == 70, (proc.returncode, proc.stderr)
    assert proc.stderr.startswith("pagewalk: internal error: ZeroDivisionError: planted")
    assert "Traceback" not in proc.stderr


def test_interrupt_exits_130() -> None:
    code = textwrap.dedent(
        """
        import sys
        import pagewalk.cli.boot_cmd as boot_cmd
        from pagewalk.cli.main import main

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        boot_cmd.run_demo = interrupted
        main(sys.argv[1:])
        """
    )
    proc = run("boot", code=code)
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr


def test_help_and_version_exit_0() -> None:
    for args in (["--help"], ["--version"], ["maps", "--help"]):
        proc = run(*args)
        assert proc.returncode == 0, (args, proc.stderr)


def test_every_command_is_registered() -> None:
    proc = run("--help")
    for name in ("boot", "build", "diff", "find-roots", "lint", "maps", "memmap", "p2v"):
        assert name in proc.stdout
    for name in ("stats", "translate", "walk"):
        assert name in proc.stdout


def test_memmap_of_a_bad_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("this is not a memory map\n")
    assert_bad_input(run("memmap", str(bad)), "not a memory map")


def test_memmap_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    assert_bad_input(run("memmap", str(tmp_path / "nope.json")), "nope.json")


def test_missing_image_exits_2(tmp_path: Path) -> None:
    assert_bad_input(run("maps", str(tmp_path / "nope.img")), "does not exist")


def test_missing_spec_exits_2(tmp_path: Path) -> None:
    proc = run("build", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o.img"))
    assert_bad_input(proc, "nope.toml")


def test_unknown_option_exits_2(images: dict[str, Path]) -> None:
    assert_bad_input(run("maps", str(images["x86_64"]), "--bogus"), "--bogus")


def test_unknown_command_exits_2() -> None:
    assert_bad_input(run("frobnicate"), "frobnicate")


def test_root_wider_than_64_bits_exits_2(images: dict[str, Path]) -> None:
    proc = run("maps", str(images["x86_64"]), "--root", str(1 << 80))
    assert_bad_input(proc, "--root")


def test_ttbr0_on_x86_exits_2(images: dict[str, Path]) -> None:
    assert_bad_input(run("maps", str(images["x86_64"]), "--ttbr0", "0x400000"), "--ttbr0")


def test_root_on_aarch64_exits_2(images: dict[str, Path]) -> None:
    proc = run("maps", str(images["aarch64"]), "--root", "0x400000")
    assert_bad_input(proc, "--ttbr0")


def test_cpu_on_a_raw_image_exits_2(images: dict[str, Path]) -> None:
    assert_bad_input(run("maps", str(images["x86_64"]), "--cpu", "5"), "--cpu")


def test_commands_exit_0_on_a_good_image(images: dict[str, Path]) -> None:
    image = str(images["x86_64"])
    for args in (
        ["maps", image],
        ["walk", image, "0x10000"],
        ["translate", image, "0x10000"],
        ["stats", image],
        ["p2v", image, "0x200000"],
        ["find-roots", image],
        ["diff", image, image],
    ):
        proc = run(*args)
        assert proc.returncode == 0, (args, proc.stderr)


def test_diff_exits_1_when_the_spaces_differ(
    images: dict[str, Path], tmp_path: pytest.TempPathFactory
) -> None:
    """Like diff(1): 0 for equal spaces, 1 for differences (findings), in text and JSON."""
    image = str(images["x86_64"])
    (changed := Path(str(tmp_path)) / "changed.toml").write_text(
        SMALL_SPEC.format(mode="x86_64").replace("rw", "r", 1)
    )
    other = Path(str(tmp_path)) / "changed.img"
    assert run("build", str(changed), "--out", str(other)).returncode == 0
    for extra in ([], ["--json"]):
        same = run("diff", image, image, *extra)
        assert same.returncode == 0, same.stderr
        differ = run("diff", image, str(other), *extra)
        assert differ.returncode == 1, (extra, differ.stderr)
        assert differ.stdout.strip()
