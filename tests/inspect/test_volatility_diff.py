"""Differential test: pagewalk against Volatility 3's Intel, IntelPAE and Intel32e layers.

Volatility is the reference for translation and for the list of mapped ranges (it merges
chunks contiguous in both VA and PA, and knows nothing of permissions, so only addresses are
compared). Its layers are built over the raw image with no OS symbols: a FileLayer as the
physical layer and an Intel layer whose ``page_map_offset`` is the root table.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from volatility3.framework import contexts, exceptions
from volatility3.framework.layers import intel, physical

from pagewalk.enumerate import mappings
from pagewalk.image import build, save
from pagewalk.walk import translate

LAYERS = {"x86": intel.Intel, "pae": intel.IntelPAE, "x86_64": intel.Intel32e}
SIZES = {"x86": [4096, 4 << 20], "pae": [4096, 2 << 20], "x86_64": [4096, 2 << 20, 1 << 30]}


def random_spec(mode: str, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    ram = 64 << 20
    maps = []
    slot = 1 << 30 if mode == "x86_64" else 16 << 20
    slots = rng.sample(range(1, 400 if mode == "x86_64" else 250), 40)
    for s in slots:
        size = rng.choice(SIZES[mode])
        pa = 0 if size == 1 << 30 else rng.randrange(0, (ram // 2) // size) * size
        count = rng.randint(1, 3) if size < (1 << 30) else 1
        va = s * slot
        if mode == "x86_64" and rng.random() < 0.5:
            va |= 0xFFFF800000000000
        maps.append(
            {"va": hex(va), "pa": hex(pa), "size": hex(size * count), "page_size": hex(size),
             "perm": rng.choice(["r", "rw", "rwx", "rxu", "rwu"])}
        )  # fmt: skip
    # RAM covers every page, 1 GiB ones included (the image file stays sparse).
    ram_text = "2G" if mode == "x86_64" else "64M"
    return {
        "mode": mode,
        "ram": ram_text,
        "tables": {"base": "0x2000000", "size": "16M"},
        "map": maps,
    }


def vol_layer(path: Path, mode: str, root: int) -> Any:
    ctx = contexts.Context()
    ctx.config["pw.base.location"] = path.resolve().as_uri()
    ctx.add_layer(physical.FileLayer(ctx, "pw.base", "base"))
    ctx.config["pw.paged.memory_layer"] = "base"
    ctx.config["pw.paged.page_map_offset"] = root
    layer = LAYERS[mode](ctx, "pw.paged", "paged")
    ctx.add_layer(layer)
    return layer


@pytest.fixture(params=[("x86", 1), ("pae", 2), ("x86_64", 3), ("x86_64", 4)], ids=str)
def image(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Any, Any, Path]:
    mode, seed = request.param
    built = build(random_spec(mode, seed))
    path = tmp_path / "img.raw"
    save(path, built.mem, built.mode, built.space.roots)
    return built, vol_layer(path, mode, built.space.roots[0]), path


def test_full_mapping_list_matches(image: tuple[Any, Any, Path]) -> None:
    built, layer, _ = image
    mask = layer.maximum_address
    ours: list[tuple[int, int, int]] = []
    for m in mappings(built.mem, built.mode, built.space.roots):
        va = m.va & mask
        if ours and ours[-1][0] + ours[-1][1] == va and ours[-1][2] + ours[-1][1] == m.pa:
            ours[-1] = (ours[-1][0], ours[-1][1] + m.size, ours[-1][2])
        else:
            ours.append((va, m.size, m.pa))
    theirs = [
        (off, size, pa) for off, size, pa, _, _ in layer.mapping(0, mask + 1, ignore_errors=True)
    ]
    assert len(theirs) > 10
    assert ours == theirs


def test_translations_match(image: tuple[Any, Any, Path]) -> None:
    built, layer, _ = image
    rng = random.Random(7)
    rows = list(mappings(built.mem, built.mode, built.space.roots))
    vas = [m.va + rng.randrange(m.size) for m in rows for _ in range(3)]
    vas += [rng.randrange(layer.maximum_address) & ~0xFFF for _ in range(300)]
    for va in vas:
        va = built.mode.canonical(va)
        pa, _, _ = translate(built.mem, built.mode, built.space.roots, va)
        try:
            expected: int | None = layer.translate(va & layer.maximum_address)[0]
        except exceptions.InvalidAddressException:
            expected = None
        assert pa == expected, hex(va)
