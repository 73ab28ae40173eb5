"""Hypothesis runs without deadlines: a busy machine must not fail a correct property test.

tests/conftest.py loads the ``pagewalk`` settings profile (``deadline=None``) for every test, and
no test may bring a deadline back (time bounds belong in benchmarks/). The planted-bug tests
themselves live next to this file: test_alloc_bounds.py (allocator run ends),
test_batch_vs_scalar.py (the compiled walker's 16-lane large-page offsets),
test_merge_attrs.py (mappings() merging different attributes) and
test_translate_reserved.py (reserved bits through translate() and the batch Translator).
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

TESTS = Path(__file__).resolve().parent.parent
#: a Hypothesis deadline given as a keyword (``settings(deadline=500)``, ``deadline=timedelta(...)``
#: in a profile); a local variable that happens to be called ``deadline`` (a socket's time limit)
#: is not one
DEADLINE = re.compile(r"\bdeadline=(?!None\b)[^,)\s]+")


def test_profile_has_no_deadline() -> None:
    assert settings.get_profile("pagewalk").deadline is None
    assert settings.default is not None and settings.default.deadline is None


#: what a test's own ``@settings(max_examples=...)`` builds: it inherits the loaded profile
FEW = settings(max_examples=5)


@FEW
@given(st.integers())
def test_decorated_tests_inherit_no_deadline(n: int) -> None:
    assert FEW.deadline is None and settings().deadline is None


def test_no_test_sets_a_deadline() -> None:
    found = [
        f"{path.relative_to(TESTS)}:{n}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if DEADLINE.search(line) and path != Path(__file__).resolve()
    ]
    assert not found, "deadlines other than None:\n" + "\n".join(found)
