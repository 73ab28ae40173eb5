"""The ctypes bridge to the compiled batch walker (``_walk.c``): its structures and its loader.

The shared library is built by ``setup.py`` when the package is installed (an optional
extension: a machine without a C compiler simply has no fast path). It is plain C without
Python headers, loaded with ctypes, which releases the GIL for the call. The structures below
mirror ``pw_walker``, ``pw_half`` and ``pw_level`` in ``_walk.c`` field for field. The walk it
runs is the one of Intel SDM vol. 3A §4.3-4.5, Arm ARM D8.2-D8.3 and the RISC-V privileged
spec, with the mode supplied as data (see :mod:`pagewalk.fast._rules`).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

MAX_LEVELS = 6
MAX_SEGS = 64
#: the interface version ``pw_abi()`` must return; a library built from older sources is ignored
ABI = 4

c_u64 = ctypes.c_uint64
c_i64 = ctypes.c_int64
c_i32 = ctypes.c_int32
c_ptr = ctypes.c_void_p


class PwLevel(ctypes.Structure):
    """``pw_level``: one level of one half."""

    _fields_ = [
        ("index_mask", c_u64),
        ("leaf_bits", c_u64),
        ("leaf_size", c_u64),
        ("shape_mask", c_u64 * 2),
        ("amask", (c_u64 * 2) * 2),
        ("ashift", (c_i32 * 2) * 2),
        ("keys", c_ptr),
        ("vals", c_ptr),
        ("hmask", c_u64),
        ("hshift", c_i32),
        ("shift", c_i32),
        ("leaf_rule", c_i32),
        ("number", c_i32),
    ]


class PwHalf(ctypes.Structure):
    """``pw_half``: the VA range a root register serves, and its levels.

    ``select_bit`` is -1 or the VA bit that must equal ``root_index`` (from
    ``mode.facts.half_select_bit``); ``ignore_top`` means the range is checked with the top byte
    ignored (bits 63:56 read as copies of bit 55; from ``mode.tbi``).
    """

    _fields_ = [
        ("lo", c_u64),
        ("hi", c_u64),
        ("root", c_u64),
        ("select_bit", c_i32),
        ("ignore_top", c_i32),
        ("root_index", c_i32),
        ("early_code", c_i32),
        ("nlevels", c_i32),
        ("pad", c_i32),
        ("levels", PwLevel * MAX_LEVELS),
    ]


class PwWalker(ctypes.Structure):
    """``pw_walker``: memory segments, entry size, fault codes and the halves."""

    _fields_ = [
        ("buf", c_ptr),
        ("seg_start", c_u64 * MAX_SEGS),
        ("seg_end", c_u64 * MAX_SEGS),
        ("seg_delta", c_i64 * MAX_SEGS),
        ("nseg", c_i32),
        ("esize", c_i32),
        ("nhalves", c_i32),
        ("nc_code", c_i32),
        ("nc_level", c_i32),
        ("np_code", c_i32),
        ("bad_code", c_i32),
        ("present_mask", ctypes.c_uint32),
        ("halves", PwHalf * 2),
    ]


def _find_library() -> Path | None:
    here = Path(__file__).parent
    for candidate in sorted(here.glob("_walk*.so")) + sorted(here.glob("_walk*.pyd")):
        return candidate
    return None


def load() -> ctypes.CDLL | None:
    """The compiled walker, or None (not built, or disabled by ``PAGEWALK_NO_FAST=1``)."""
    if os.environ.get("PAGEWALK_NO_FAST", "") not in ("", "0"):
        return None
    path = _find_library()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
        fn, abi, _ = lib.pw_translate, lib.pw_abi, lib.pw_cache_bytes
    except (OSError, AttributeError):
        return None
    abi.restype, abi.argtypes = c_i32, ()
    if abi() != ABI:
        return None
    fn.restype = c_i64
    fn.argtypes = (ctypes.POINTER(PwWalker), c_ptr, c_ptr, c_i64, *([c_ptr] * 9))
    lib.pw_cache_bytes.restype, lib.pw_cache_bytes.argtypes = c_i64, ()
    return lib
