"""The report in a real browser: Debian's chromium, driven by Playwright.

The page is opened from disk (no network), must log no console error, and for several VAs (a
4K page, a huge page, a hole, a non-canonical address) the walk panel must show the PA, page
size and fault that ``pagewalk translate --json`` prints (the installed command, a subprocess),
and the permission so far at every level that :meth:`pagewalk.Machine.walk` records. A screenshot
of each page is saved under ``out/`` (a CI artifact). ``scripts/install_test_tools.sh`` installs
chromium; these tests run with ``-m browser`` (CI does) and fail without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from view_spaces import build_image

import pagewalk

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OUT = Path(__file__).resolve().parents[2] / "out"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():  # selected with -m browser: missing chromium is a failure
        pytest.fail("no chromium: run scripts/install_test_tools.sh before `pytest -m browser`")
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], timeout=60_000)
        yield b
        b.close()


def open_page(browser: Any, path: Path) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("http*://**", lambda route: (errors.append(f"network: {route.request.url}"),
                                            route.abort()))  # fmt: skip
    page.goto(path.as_uri())
    page.wait_for_function("document.body.dataset.ready")
    assert page.evaluate("document.body.dataset.ready") == "1", page.inner_text("#pw-error")
    return page, errors


def walk_panel(page: Any, va: int) -> dict[str, Any]:
    page.fill("#pw-va", hex(va))
    page.press("#pw-va", "Enter")
    page.wait_for_function(f"document.getElementById('pw-walk').dataset.va === '{hex(va)}'")
    data: dict[str, Any] = page.evaluate("({...document.getElementById('pw-walk').dataset})")
    data["perms"] = page.eval_on_selector_all(
        "#pw-walk table tr td:nth-child(8)", "cells => cells.map(c => c.textContent)"
    )
    return data


def sample_vas(m: pagewalk.Machine) -> list[int]:
    """A 4K page and a huge page (offsets inside), a hole, and each half's edges."""
    runs = [r for r in m.maps()]
    small = next(r for r in runs if r.page_size == m.mode.page_size)
    huge = next(r for r in runs if r.page_size > m.mode.page_size)
    vas = [small.va + 0x123, huge.va + huge.page_size // 2 + 0x40, small.end + 0x10]
    vas += [r.va for r in runs[:: max(1, len(runs) // 8)]]
    vas += [h.va_start for h in m.mode.halves] + [m.mode.halves[0].va_end]
    return [v for v in vas if v < 1 << 64]


@pytest.mark.parametrize("name", ["x86_64", "aarch64", "sv39"])
def test_walk_panel_matches_translate(browser: Any, tmp_path: Path, name: str) -> None:
    img = build_image(tmp_path / f"{name}.img", name)
    report = tmp_path / f"{name}.html"
    done = subprocess.run(["pagewalk", "view", str(img), "--out", str(report)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    m = pagewalk.open(img)
    vas = sample_vas(m)
    args = ["pagewalk", "translate", "--json", str(img), *map(hex, vas)]
    want = json.loads(subprocess.run(args, capture_output=True, text=True, timeout=120).stdout)
    page, errors = open_page(browser, report)
    kinds = set()
    for va, t in zip(vas, want, strict=True):
        got = walk_panel(page, va)
        assert got["incomplete"] == "", got
        assert got["pa"] == ("" if t["pa"] is None else hex(t["pa"])), (hex(va), got, t)
        assert got["pageSize"] == ("" if t["page_size"] is None else str(t["page_size"]))
        fault = t["fault"] or {"kind": "", "level": None}
        assert got["faultKind"] == fault["kind"], (hex(va), got, t)
        assert got["faultLevel"] == ("" if fault["level"] is None else str(fault["level"]))
        steps = m.walk(va).steps
        assert got["perms"] == [s.perm.letters() if s.entry.fault is None else "-" for s in steps]
        kinds.add(fault["kind"] or f"mapped {t['page_size']}")
    assert any(k.startswith("mapped") and k != f"mapped {m.mode.page_size}" for k in kinds), kinds
    assert any(not k.startswith("mapped") for k in kinds), kinds
    page.click("#pw-map", position={"x": 300, "y": 40})
    OUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUT / f"view-{name}.png"), full_page=True)
    assert errors == []


def test_boot_html_steps(browser: Any, tmp_path: Path) -> None:
    report = tmp_path / "boot.html"
    done = subprocess.run(["pagewalk", "boot", "--json", "--html", str(report)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)["events"]
    page, errors = open_page(browser, report)
    assert page.eval_on_selector_all("#pw-events li", "l => l.length") == len(events)
    page.click("#pw-next")
    assert page.inner_text("#pw-stepno") == f"2 / {len(events)}"
    assert events[1]["message"] in page.inner_text("#pw-event")
    names = page.eval_on_selector_all("#pw-space option", "o => o.map(x => x.textContent)")
    assert "final kernel tables" in names and "early tables" in names
    OUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUT / "view-boot.png"), full_page=True)
    assert errors == []
