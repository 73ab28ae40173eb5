"""``pagewalk boot``: the main job. Boot a seed kernel's memory manager and show everything.

It prints, with rich tables: the memory map, the allocator's state, the kernel's mappings
(merged), each process and its mappings, one annotated page walk, the demand-paging,
copy-on-write, shared-memory and isolation demo with its faults, and the TLB statistics. With
``--save DIR`` it writes the physical image and ``memory.img.json`` (registers, roots, the
processes' roots) as one unit that ``pagewalk maps``/``translate`` read directly; ``--force``
lets it replace an earlier save. The kernel design follows the seed documents; the
paging follows Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import Progress

from pagewalk.cli.common import console, emit_json
from pagewalk.cli.render import mappings_table, print_walk, size_text
from pagewalk.enumerate import mappings
from pagewalk.errors import hx
from pagewalk.image import number, save
from pagewalk.kernel import Kernel, get_profile, profile_names
from pagewalk.kernel.demo import DemoReport, run_demo
from pagewalk.safeio import check_target

if TYPE_CHECKING:
    from rich.console import Console


@click.command()
@click.option(
    "--profile",
    "profile_name",
    default="powernex",
    show_default=True,
    type=click.Choice(profile_names()),
)
@click.option("--ram", help="RAM size (e.g. 128M, 1G); the profile's default otherwise.")
@click.option(
    "--memmap",
    "memmap_file",
    type=click.Path(dir_okay=False),
    help="A firmware memory map (JSON, TOML, e820 log).",
)
@click.option(
    "--processes",
    default=2,
    show_default=True,
    type=click.IntRange(2, 64),
    help="Processes to start.",
)
@click.option(
    "--save",
    "save_dir",
    type=click.Path(file_okay=False),
    help="Write the image and registers here.",
)
@click.option("--force", is_flag=True, help="Let --save replace an image already there.")
@click.option("--json", "as_json", is_flag=True, help="A machine-readable summary.")
@click.option(
    "--html", "html", type=click.Path(dir_okay=False),
    help="Also write the boot as an interactive HTML page (timeline, maps, walks); an existing "
    "file only with --force.",
)  # fmt: skip
def boot(
    profile_name: str,
    ram: str | None,
    memmap_file: str | None,
    processes: int,
    save_dir: str | None,
    force: bool,
    as_json: bool,
    html: str | None = None,
) -> None:
    """Boot a seed kernel's memory manager on a simulated machine and show what it built."""
    save_inputs = [memmap_file] if memmap_file else []
    if save_dir:
        _check_save(Path(save_dir), save_inputs, force)  # before any work
    if html:
        check_target(html, inputs=save_inputs, force=force)
    profile = get_profile(profile_name)
    memmap = None
    if memmap_file is not None:
        from pagewalk.memory.memmap_readers import load_memory_map

        memmap = load_memory_map(memmap_file)
    size = None if ram is None else number(ram, "--ram")
    if size == 0:
        raise click.BadParameter("RAM of 0 bytes", param_hint="--ram")
    kernel = Kernel(profile, ram=size, memmap=memmap)
    recorder = _recorder(kernel) if html else None
    out = console()
    with Progress(console=out, transient=True, disable=as_json or not out.is_terminal) as bar:
        task = bar.add_task(f"booting {profile.name}", total=None)
        kernel.boot()
        bar.update(task, description="running the demo")
        report = run_demo(kernel, processes)
    saved = _save(kernel, Path(save_dir), save_inputs, force) if save_dir else None
    if recorder is not None and html:
        from pagewalk.view import write_report

        write_report(html, recorder.report(report), inputs=save_inputs, force=force)
    if as_json:
        emit_json(_summary(kernel, report, saved))
    else:
        _print(out, kernel, report, saved)
    if not report.ok:
        raise click.exceptions.Exit(1)


def _recorder(kernel: Kernel) -> Any:
    """The HTML view's timeline recorder, attached before the kernel boots."""
    from pagewalk.view.timeline import Recorder

    return Recorder(kernel)


def _check_save(where: Path, inputs: list[str], force: bool) -> None:
    """Refuse early what :func:`_save` would refuse at the end (a link, an input, an old image)."""
    image = where / "memory.img"
    if where.is_dir():
        for target in (image, Path(f"{image}.json")):
            check_target(target, inputs=inputs, force=force)


def _save(kernel: Kernel, where: Path, inputs: list[str], force: bool) -> Path:
    """Save the image and its register file (with the processes and profile) as one unit."""
    where.mkdir(parents=True, exist_ok=True)
    assert kernel.kernel_space is not None
    image = where / "memory.img"
    processes = [
        {
            "pid": p.pid,
            "name": p.name,
            "asid": p.asid,
            "roots": dict(zip(kernel.mode.root_names, p.space.roots, strict=False)),
        }
        for p in kernel.processes.values()
    ]
    extra = {"processes": processes, "profile": kernel.profile.name}
    roots = kernel.kernel_space.roots
    save(image, kernel.mem, kernel.mode, roots, extra=extra, overwrite=force, inputs=inputs)
    return image


def _summary(kernel: Kernel, report: DemoReport, saved: Path | None) -> dict[str, Any]:
    assert kernel.kernel_space is not None
    usage = kernel.frames.usage()
    return {
        "profile": kernel.profile.name,
        "mode": kernel.mode.name,
        "ram": kernel.mem.size,
        "memory_map": [
            {"base": r.base, "length": r.length, "type": r.type.value} for r in kernel.memmap
        ],
        "allocator": {
            "kind": type(kernel.frames).__name__,
            "total": usage.total,
            "free": usage.free,
            "used": usage.used,
        },
        "kernel_roots": dict(zip(kernel.mode.root_names, kernel.kernel_space.roots, strict=False)),
        "kernel_mappings": [
            m.to_json() for m in mappings(kernel.mem, kernel.mode, kernel.kernel_space.roots)
        ],
        "processes": [
            {
                "pid": p.pid,
                "name": p.name,
                "asid": p.asid,
                "mappings": [m.to_json() for m in kernel.user_mappings(p)],
            }
            for p in kernel.processes.values()
        ],
        "checks": [
            {"name": c.name, "ok": c.ok, "detail": c.detail, "fault": c.fault}
            for c in report.checks
        ],
        "walk": report.walk.to_json() if report.walk else None,
        "events": [{"kind": e.kind, "message": e.message} for e in kernel.events],
        "tlb": kernel.tlb_stats(),
        "saved": str(saved) if saved else None,
    }


def _print(out: Console, kernel: Kernel, report: DemoReport, saved: Path | None) -> None:
    from rich.table import Table
    from rich.text import Text

    assert kernel.kernel_space is not None
    out.rule(
        f"[bold]{kernel.profile.name}[/] on {kernel.mode.describe()}, "
        f"{size_text(kernel.mem.size)} RAM"
    )
    out.print(f"design: {kernel.profile.seed}", style="dim")
    out.rule("1. memory map")
    table = Table(show_edge=False, header_style="bold")
    for col in ("base", "end", "size", "type"):
        table.add_column(col)
    for r in kernel.memmap:
        table.add_row(hx(r.base), hx(r.end - 1), size_text(r.length), r.type.value)
    out.print(table)
    out.rule("2. frame allocator")
    usage = kernel.frames.usage()
    out.print(
        f"{type(kernel.frames).__name__}: {usage.total} frames, "
        f"{usage.used} used, {usage.free} free"
    )
    out.rule("3. kernel mappings")
    out.print(
        mappings_table(mappings(kernel.mem, kernel.mode, kernel.kernel_space.roots), kernel.mode)
    )
    out.rule("4. processes")
    for p in kernel.processes.values():
        roots = ", ".join(
            f"{n}={hx(r)}" for n, r in zip(kernel.mode.root_names, p.space.roots, strict=False)
        )
        out.print(f"[bold]pid {p.pid}[/] {p.name} (ASID {p.asid}, {roots})")
        out.print(mappings_table(kernel.user_mappings(p), kernel.mode))
    out.rule("5. an annotated page walk")
    if report.walk is not None:
        out.print(f"pid {report.walk_process}, its heap:")
        print_walk(out, report.walk, kernel.mode)
    out.rule("6. demand paging, copy-on-write, sharing and isolation")
    for c in report.checks:
        mark = Text("ok  ", style="green") if c.ok else Text("FAIL", style="bold red")
        out.print(mark, Text(f"{c.name}: {c.detail}"))
    out.rule("7. TLB")
    stats = kernel.tlb_stats()
    out.print(", ".join(f"{k}={v}" for k, v in stats.items()) if stats else "no TLB attached")
    if saved is not None:
        out.print(f"saved {saved} and {saved}.json: try `pagewalk maps {saved}`", style="dim")


COMMANDS = [boot]
