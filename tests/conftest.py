"""Shared test set-up: strict flushes, the in-process CLI fixture, and Hypothesis settings.

Every test runs under ``strict_flushes`` (DESIGN.md, "Flushing").

A :class:`~pagewalk.flush.Flush` that a test drops without applying or ignoring it fails that
test, so a forgotten TLB flush shows up where it happens.

Every Hypothesis test runs under the ``pagewalk`` settings profile: no deadline (a busy machine
must not turn a slow example into a failure; time bounds belong in benchmarks/), and the
reproduction blob printed on failure. Example counts keep Hypothesis's defaults unless a test
asks for fewer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

from pagewalk.cli.main import main
from pagewalk.flush import strict_flushes

settings.register_profile("pagewalk", deadline=None, print_blob=True)
settings.load_profile("pagewalk")

#: runs the CLI in-process: ``cli(["maps", "img"])`` -> (exit status, stdout, stderr)
Cli = Callable[[list[str]], tuple[int, str, str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """The pagewalk CLI, run in-process, with its exit status and captured output."""

    def run(args: list[str]) -> tuple[int, str, str]:
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(autouse=True)
def _no_dropped_flushes() -> Iterator[None]:
    with strict_flushes() as dropped:
        yield
    if dropped:
        pytest.fail(f"{len(dropped)} flush(es) dropped unused: " + "; ".join(dropped[:5]))
