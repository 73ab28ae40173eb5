"""Shared test set-up: every test runs under ``strict_flushes`` (DESIGN.md, "Flushing").

A :class:`~pagewalk.flush.Flush` that a test drops without applying or ignoring it fails that
test, so a forgotten TLB flush shows up where it happens.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pagewalk.flush import strict_flushes


@pytest.fixture(autouse=True)
def _no_dropped_flushes() -> Iterator[None]:
    with strict_flushes() as dropped:
        yield
    if dropped:
        pytest.fail(f"{len(dropped)} flush(es) dropped unused: " + "; ".join(dropped[:5]))
