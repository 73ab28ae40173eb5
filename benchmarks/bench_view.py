"""The HTML report (issue 17): size and write time for 262,144 runs, and open time in chromium.

Run: ``python benchmarks/bench_view.py`` (``--quick``: 32,768 runs, 1 round). The image is
``scatter4k`` of ``bench_columns.py`` (262,144 4 KiB pages, no two neighbours contiguous, so
every page is its own run and 512 leaf tables are embedded), built once into the same cache.

- write: ``pagewalk view IMAGE --out FILE --force`` as a whole process (start-up included), and
  the in-process :func:`pagewalk.view.machine_report` + write; goal < 2 s.
- open: from ``page.goto`` to the page's ``data-ready`` mark (decode, layout, first drawing) in
  Debian's chromium driven by Playwright; goal < 3 s.

Every figure is the median of ROUNDS rounds.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import pagewalk
from bench_columns import KIB, apart, build
from pagewalk.view import machine_report, write_report

CHROMIUM = "/usr/bin/chromium"


def scatter(cache: Path, n: int) -> Path:
    path = cache / f"view-scatter4k-{n}.raw"
    if not (path.exists() and Path(f"{path}.json").exists()):
        rng = np.random.default_rng(17)
        frames = rng.permutation(n)
        apart(frames, rng, permute=True)
        build(path, n, 4 * KIB, frames, n * 4 * KIB)
    return path


def main() -> None:
    quick = "--quick" in sys.argv
    n = 32_768 if quick else 262_144
    rounds = 1 if quick else 5
    cache = Path(os.environ.get("PAGEWALK_BENCH_CACHE", Path.home() / ".cache/pagewalk/bench"))
    cache.mkdir(parents=True, exist_ok=True)
    img = scatter(cache, n)
    out = Path(tempfile.mkdtemp()) / "report.html"
    procs, inproc = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run(["pagewalk", "view", str(img), "--out", str(out), "--force"], check=True,
                       capture_output=True, timeout=600)  # fmt: skip
        procs.append(time.perf_counter() - t)
        t = time.perf_counter()
        write_report(out, machine_report(pagewalk.open(img)), force=True)
        inproc.append(time.perf_counter() - t)
    size = out.stat().st_size
    print(f"runs: {n}; report: {size / 1e6:.1f} MB ({size / n:.1f} bytes per run)")
    print(f"write, whole process: median {statistics.median(procs):.2f} s (goal < 2 s)")
    print(f"write, in process:    median {statistics.median(inproc):.2f} s")
    if not Path(CHROMIUM).exists():
        print("open: skipped (no chromium; scripts/install_test_tools.sh)")
        return
    from playwright.sync_api import sync_playwright

    opens = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for _ in range(rounds):
            page = browser.new_page()
            t = time.perf_counter()
            page.goto(out.as_uri())
            page.wait_for_function("document.body.dataset.ready", timeout=60_000)
            opens.append(time.perf_counter() - t)
            assert page.evaluate("document.body.dataset.ready") == "1"
            page.close()
        browser.close()
    print(f"open in chromium:     median {statistics.median(opens):.2f} s (goal < 3 s)")


if __name__ == "__main__":
    main()
