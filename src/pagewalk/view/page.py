"""The report file: one self-contained HTML page holding its data, its script and its style.

Nothing is fetched when the page is viewed. The sections' arrays are laid end to end (each at an
8-byte boundary, little-endian, as typed arrays read them), deflated (zlib, which the browser's
``DecompressionStream("deflate")`` reads) and base64-encoded into one ``<script>`` element; the
metadata is JSON in another (``</`` escaped); the script and style (``assets/``, written for this
page) are inlined. The walks the page draws follow pointers computed in Python
(:mod:`pagewalk.view.walkdata`), as Intel SDM vol. 3A ch. 4, Arm ARM D8 and the RISC-V privileged
spec define them. The file is written through :func:`pagewalk.safeio.replacing`: a temporary
file in the target's directory renamed into place, never over an input, never over an existing
file without ``force``.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Any

import numpy as np

from pagewalk.safeio import Source, replacing
from pagewalk.view.space import Section

_SAFE = 1 << 53


def safe_json(value: Any) -> Any:
    """``value`` with every integer a double cannot hold exactly made a hex string."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -_SAFE < value < _SAFE else f"{value:#x}"
    if isinstance(value, dict):
        return {str(k): safe_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [safe_json(v) for v in value]
    return value


def pack(sections: Sequence[Section]) -> tuple[bytes, list[dict[str, list[Any]]]]:
    """The arrays of every section laid end to end, and per section where each one is."""
    parts: list[bytes] = []
    where: list[dict[str, list[Any]]] = []
    offset = 0
    for sec in sections:
        index: dict[str, list[Any]] = {}
        for name, arr in sec.arrays.items():
            data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            index[name] = [arr.dtype.name, offset, int(arr.shape[0])]
            pad = -len(data) % 8
            parts.append(data + bytes(pad))
            offset += len(data) + pad
        where.append(index)
    return b"".join(parts), where


def _asset(name: str) -> str:
    return resources.files("pagewalk.view").joinpath("assets", name).read_text("utf-8")


def render(sections: Sequence[Section], title: str, extra: dict[str, Any] | None = None) -> bytes:
    """The whole page as bytes.

    Args:
        sections: the address spaces, the first one shown first.
        title: the page's title.
        extra: more metadata for the page (the boot timeline).
    """
    blob, where = pack(sections)
    spaces = []
    for sec, index in zip(sections, where, strict=True):
        meta = dict(sec.meta)
        meta["arrays"] = index
        spaces.append(meta)
    meta_all = {"title": title, "spaces": spaces, "extra": extra or {}}
    text = json.dumps(safe_json(meta_all), separators=(",", ":")).replace("</", "<\\/")
    packed = base64.b64encode(zlib.compress(blob, 1)).decode("ascii")
    esc = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f"<title>{esc}</title>\n<style>\n{_asset('view.css')}</style>\n</head>\n<body>\n"
        f"{_asset('body.html')}\n"
        f'<script type="application/json" id="pw-meta">{text}</script>\n'
        f'<script type="application/octet-stream" id="pw-blob">{packed}</script>\n'
        f"<script>\n{_asset('view.js')}</script>\n</body></html>\n"
    )
    return page.encode("utf-8")


def write_report(
    path: str | os.PathLike[str], page: bytes, *, inputs: Iterable[Source] = (), force: bool = False
) -> None:
    """Write ``page`` to ``path`` atomically (temporary file, then rename).

    Raises:
        OutputError: ``path`` exists and ``force`` is false, is an input, is not a regular
            file, or a write fails.
    """
    with replacing([path], inputs=inputs, force=force) as (out,):
        out.write(page)
