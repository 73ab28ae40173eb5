"""Columnar results (issue 14): whole-process ``pagewalk maps`` on images of many runs.

Run: ``python benchmarks/bench_columns.py`` (``--quick``: 32,768 and 131,072 runs instead of
262,144 and 1,048,576, one round: a smoke test, not the targets' sizes). Every figure is the
median of ROUNDS rounds in which the commands take turns, and every ratio is the median of the
ratios of one round, so a busy minute on the shared machine weighs on both sides of a ratio.
Each command is timed as a whole process (interpreter start-up included) by
:func:`_util.run_child`, with stdout to a file (``--json``, ``--format qemu-info-tlb``) or to
a pipe this script drains (the table view).

The images (x86-64, built once with ``AddressSpace`` and :func:`pagewalk.image.save` into
``$PAGEWALK_BENCH_CACHE`` or ``~/.cache/pagewalk/bench``, then reused):

- ``scatter4k``: 1 GiB mapped in 262,144 4 KiB pages whose frames are a random permutation of
  the 1 GiB of RAM, no two neighbours contiguous, so every page is its own run;
- ``scatter2m``: as many runs (262,144) of one 2 MiB page each, frames repeating in 64 MiB,
  no two neighbours contiguous (512 GiB of VA, 512 leaf tables, as ``scatter4k`` has);
- ``direct2m``: 1 GiB mapped in 512 2 MiB pages to contiguous frames: one run. It is also the
  *tiny* image whose time and RSS stand for start-up (interpreter, imports, a 3-table walk);
- ``dense4k``: 1,048,576 runs, 4 GiB of VA in 4 KiB pages whose frames repeat in 64 MiB of RAM,
  no two neighbours contiguous.

The targets:

1. ``maps --json`` and ``maps --format qemu-info-tlb`` on ``scatter4k`` at least 20x faster than
   Volatility 3's ``Intel32e.mapping()`` over the whole VA space, run as a process (a small
   script built the way ``tests/inspect/test_volatility_diff.py`` builds its layers; it counts
   the entries, which must equal the runs). Stretch: 50x.
2. Cost per run, not per object. The issue: "<= 1.5x the time of the same command on a 1-run
   direct map of the same size in 2 MiB pages times the run count ratio". Read literally
   (T(scatter4k) <= 1.5 x T(direct2m) x 262,144) it is met by anything that finishes within
   days, so it is printed for information only. The reading checked: a run must cost the same
   whatever it is made of, so the per-run cost of ``scatter4k`` (time minus the start-up of
   ``direct2m``, divided by its runs) must be <= 1.5x the per-run cost of ``scatter2m``, the
   same number of runs made of 2 MiB pages. Both read 512 leaf tables; only the page size and
   the frames differ. Start-up is taken off both sides, which makes the ratio stricter; the
   costs come from the medians over rounds (a per-round ratio of two small differences of
   whole-process times is mostly noise), and a 2 MiB cost lost in the noise is a FAIL.
3. The table view of ``dense4k`` (stdout a pipe) in <= 3x the ``--json`` time on that image.
4. Peak RSS of ``maps --json`` on ``dense4k``, minus that of the same command on ``direct2m``
   (interpreter and imports), <= 64 bytes per run. The peak is the command's own ``ru_maxrss``,
   read by a small launcher process (a child of this process would inherit its peak).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).parent))

from _util import report, run_child, verdict
from pagewalk import AddressSpace, Perm, PhysicalMemory, make_mode
from pagewalk.alloc import SimpleFrameAllocator
from pagewalk.image import save

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
BASE_VA = 0x100000000000  # low half: Volatility's Intel32e takes VAs as they are
ROUNDS = 5
SCATTER = ("scatter4k", "scatter2m")
VERSION = 1  # bump to rebuild cached images when their recipe changes

# Run as ``python -c VOL_SCRIPT IMAGE CR3``: a FileLayer over the raw image and an Intel32e
# layer whose page_map_offset is CR3 (no OS symbols), as the differential test builds them.
VOL_SCRIPT = """
import sys
from pathlib import Path
from volatility3.framework import contexts
from volatility3.framework.layers import intel, physical
ctx = contexts.Context()
ctx.config["pw.base.location"] = Path(sys.argv[1]).resolve().as_uri()
ctx.add_layer(physical.FileLayer(ctx, "pw.base", "base"))
ctx.config["pw.paged.memory_layer"] = "base"
ctx.config["pw.paged.page_map_offset"] = int(sys.argv[2])
layer = intel.Intel32e(ctx, "pw.paged", "paged")
ctx.add_layer(layer)
n = 0
for _ in layer.mapping(0, layer.maximum_address + 1, ignore_errors=True):
    n += 1
print(n)
"""


@dataclass(frozen=True)
class Image:
    path: Path
    runs: int
    cr3: int


# ------------------------------------------------------------------------ building images
def apart(frames: npt.NDArray[np.int64], rng: np.random.Generator, permute: bool) -> None:
    """Make sure no frame follows its predecessor's frame + 1 (so no two pages merge), by
    swapping (``permute``: keeps a permutation) or redrawing the offenders, in place."""
    top = len(frames) if permute else int(frames.max()) + 1
    while (bad := np.flatnonzero(frames[1:] == frames[:-1] + 1) + 1).size:
        if permute:
            others = rng.integers(0, len(frames), bad.size).tolist()
            for a, b in zip(bad.tolist(), others, strict=True):
                frames[a], frames[b] = frames[b], frames[a]
        else:
            frames[bad] = rng.integers(0, top, bad.size)


def build(path: Path, n: int, page: int, frames: npt.NDArray[np.int64] | None, ram: int) -> int:
    """Map ``n`` pages of ``page`` bytes at BASE_VA, then point page i at ``frames[i]`` (None:
    contiguous frames from PA 0), and save the image; returns CR3.

    ``map_range`` builds the tables; the frames are then rewritten in the leaf tables in bulk,
    through the mode's own address mask (a page-by-page ``map`` would take minutes)."""
    tables = (n * page // (2 * MIB) + 64) * 4 * KIB if page == 4 * KIB else 8 * MIB
    mode = make_mode("x86_64")
    mem = PhysicalMemory(ram + tables)
    space = AddressSpace(mode, mem, SimpleFrameAllocator(ram, tables))
    space.map_range(BASE_VA, 0, n * page, Perm.READ | Perm.WRITE, page_sizes=(page,)).ignore()
    if frames is not None:
        per = 512  # x86-64: 512 entries of 8 bytes per table (Intel SDM vol. 3A 4.5)
        data = mem.array()
        for first in range(0, n, per):
            step = space.walk(BASE_VA + first * page).steps[-1]
            k = min(per, n - first)
            keep = np.uint64(~mode.address_mask(step.level, leaf=True) & (2**64 - 1))
            raws = data[step.entry_pa : step.entry_pa + 8 * k].view("<u8")
            pas = frames[first : first + k].astype(np.uint64) * np.uint64(page)
            mem.write_table(step.entry_pa, (raws & keep) | pas, 8)
        for i in (0, n // 2, n - 1):
            assert space.translate(BASE_VA + i * page + 8) == int(frames[i]) * page + 8
    save(path, mem, mode, space.roots)
    return space.roots[0]


def image(cache: Path, name: str, n: int, runs: int, make: Callable[[Path], int]) -> Image:
    """The cached image ``name`` (built by ``make`` if it or its register file is missing)."""
    path = cache / f"{name}-{n}-v{VERSION}.raw"
    side = Path(f"{path}.cr3")
    if not (path.exists() and Path(f"{path}.json").exists() and side.exists()):
        print(f"building {path} ...", flush=True)
        side.write_text(str(make(path)))
    return Image(path, runs, int(side.read_text()))


def images(cache: Path, quick: bool) -> dict[str, Image]:
    n_scatter = 32_768 if quick else 262_144
    n_dense = 131_072 if quick else 1_048_576
    rng = np.random.default_rng(14)
    cache.mkdir(parents=True, exist_ok=True)

    def scatter4k(path: Path) -> int:
        frames = rng.permutation(n_scatter)
        apart(frames, rng, permute=True)
        return build(path, n_scatter, 4 * KIB, frames, n_scatter * 4 * KIB)

    def scatter2m(path: Path) -> int:
        frames = rng.integers(0, 32, n_scatter)
        apart(frames, rng, permute=False)
        return build(path, n_scatter, 2 * MIB, frames, 64 * MIB)

    def dense4k(path: Path) -> int:
        frames = rng.integers(0, 16_384, n_dense)
        apart(frames, rng, permute=False)
        return build(path, n_dense, 4 * KIB, frames, 64 * MIB)

    def direct2m(path: Path) -> int:
        return build(path, 512, 2 * MIB, None, GIB)

    return {
        "scatter4k": image(cache, "scatter4k", n_scatter, n_scatter, scatter4k),
        "scatter2m": image(cache, "scatter2m", n_scatter, n_scatter, scatter2m),
        "dense4k": image(cache, "dense4k", n_dense, n_dense, dense4k),
        "direct2m": image(cache, "direct2m", 512, 1, direct2m),
    }


# ------------------------------------------------------------------------------ commands
def count_runs(path: Path) -> int:
    """JSON objects in a ``maps --json`` output file (each has one ``"va"`` key)."""
    needle, total, tail = b'"va":', 0, b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            buf = tail + chunk
            total += buf.count(needle)
            tail = buf[-(len(needle) - 1) :]
    return total


class Bench:
    """Runs the commands and keeps every timing: ``times[key]`` and ``rss[key]``, one per round."""

    def __init__(self, work: Path, imgs: dict[str, Image]) -> None:
        exe = shutil.which("pagewalk")
        self.pagewalk = [exe] if exe else [sys.executable, "-m", "pagewalk"]
        self.env = {k: v for k, v in os.environ.items() if k != "PAGEWALK_MAX_MAPPINGS"}
        self.work, self.imgs = work, imgs
        self.times: dict[str, list[float]] = {}
        self.rss: dict[str, list[int]] = {}
        self.spread = ""
        self.lines: int | None = None

    def run(self, key: str, cmd: list[str], pipe: bool = False) -> Path:
        """Run and record one command; returns its output file (its line count if piped is
        kept in ``self.lines``)."""
        out = self.work / "out"
        child = run_child(cmd, None if pipe else out, self.env)
        self.times.setdefault(key, []).append(child.seconds)
        self.rss.setdefault(key, []).append(child.peak_rss)
        self.lines = child.lines
        return out

    def maps(self, name: str, fmt: str, pipe: bool = False) -> Path:
        args = ["--json"] if fmt == "json" else [] if fmt == "table" else ["--format", fmt]
        return self.run(
            f"{name} {fmt}", [*self.pagewalk, "maps", str(self.imgs[name].path), *args], pipe
        )

    def volatility(self) -> int:
        img = self.imgs["scatter4k"]
        out = self.run(
            "volatility", [sys.executable, "-c", VOL_SCRIPT, str(img.path), str(img.cr3)]
        )
        return int(out.read_text().split()[-1])

    def round(self, first: bool) -> None:
        n_vol = self.volatility()
        for name in ("direct2m", "scatter4k", "scatter2m", "dense4k"):
            out = self.maps(name, "json")
            if first:
                got = count_runs(out)
                assert got == self.imgs[name].runs, f"{name}: {got} runs"
            if name != "dense4k":
                self.maps(name, "qemu-info-tlb")
        self.maps("dense4k", "table", pipe=True)
        runs = self.imgs["dense4k"].runs
        assert (self.lines or 0) > runs, f"the table view printed {self.lines} lines"
        assert n_vol == self.imgs["scatter4k"].runs, f"Volatility counted {n_vol} entries"

    def t(self, key: str) -> float:
        return statistics.median(self.times[key])

    def ratio(self, num: str, den: str) -> float:
        """The median over rounds of ``num / den`` in each round; ``self.spread`` keeps the
        rounds' range."""
        each = [n / d for n, d in zip(self.times[num], self.times[den], strict=True)]
        self.spread = f"rounds {min(each):.2f}-{max(each):.2f}"
        return statistics.median(each)


# ------------------------------------------------------------------------------- results
def results(b: Bench, imgs: dict[str, Image]) -> None:
    runs, dense = imgs["scatter4k"].runs, imgs["dense4k"].runs
    print(f"\nwhole-process medians, {len(b.times['volatility'])} round(s):")
    report("Volatility 3 Intel32e.mapping(), scatter4k", b.t("volatility"), "s")
    for key in sorted(b.times):
        if key != "volatility":
            rss = statistics.median(b.rss[key]) / MIB
            report(f"pagewalk maps {key}", b.t(key), "s", f"peak RSS {rss:.1f} MiB")

    print("\ntargets:")
    for fmt in ("json", "qemu-info-tlb"):
        r = b.ratio("volatility", f"scatter4k {fmt}")
        note = f"{b.spread}; stretch 50x {'met' if r >= 50 else 'not met'}"
        verdict(f"1. {runs:,} runs, {fmt}: Volatility / pagewalk", r, "x", ">= 20x", r >= 20, note)
    for fmt in ("json", "qemu-info-tlb"):
        base = b.t(f"direct2m {fmt}")
        cost4k, cost2m = ((b.t(f"{name} {fmt}") - base) / runs * 1e6 for name in SCATTER)
        r = cost4k / cost2m if cost2m > 0 else float("nan")
        note = f"{cost4k:.2f} against {cost2m:.2f} us/run"
        if cost2m <= 0:
            note += ": not measurable, start-up noise exceeds the runs' cost"
        name = f"2. {fmt}: per-run cost, 4K scattered / 2M runs"
        verdict(name, r, "x", "<= 1.5x", cost2m > 0 and r <= 1.5, note)
        lit = b.ratio(f"scatter4k {fmt}", f"direct2m {fmt}")
        print(f"   literal reading (information only): {lit:.1f}x, bound {1.5 * runs:,.0f}x")
    print(
        "   reading checked: (T - T[direct2m]) / runs, scatter4k against scatter2m (the same\n"
        "   number of runs, of one 2 MiB page each), so a run costs the same whatever its pages"
    )
    r = b.ratio("dense4k table", "dense4k json")
    verdict(f"3. {dense:,} runs: table (pipe) / --json", r, "x", "<= 3x", r <= 3, b.spread)
    grown = statistics.median(b.rss["dense4k json"]) - statistics.median(b.rss["direct2m json"])
    per = grown / dense
    verdict(f"4. {dense:,} runs, --json: peak RSS above start-up", per, "B/run", "<= 64", per <= 64)


def main() -> None:
    quick = "--quick" in sys.argv
    cache = Path(os.environ.get("PAGEWALK_BENCH_CACHE", "~/.cache/pagewalk/bench")).expanduser()
    imgs = images(cache, quick)
    with tempfile.TemporaryDirectory(dir=os.environ.get("PAGEWALK_BENCH_DIR")) as tmp:
        b = Bench(Path(tmp), imgs)
        for i in range(1 if quick else ROUNDS):
            b.round(first=i == 0)
            print(f"round {i + 1} done", flush=True)
    results(b, imgs)


if __name__ == "__main__":
    main()
