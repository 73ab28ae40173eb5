"""AArch64 52-bit addressing (FEAT_LPA, FEAT_LVA, FEAT_LPA2) against the Arm ARM (DDI 0487).

Expected values are written by hand from the manual's field layouts, not computed by the codec:
D8.2 "Input address size" and the start-level tables (level -1 with 4K and TnSZ < 16 under
TCR_EL1.DS=1), D8.3 "Translation table descriptor formats" (OA[51:48] in bits [15:12] with the
64K granule and a 52-bit output size; OA[51:50] in bits [9:8] and bits [49:n] in place with
DS=1; the block levels each granule allows), TTBRn_EL1 (BADDR[51:48] in bits [5:2]) and the
ESR_ELx fault status codes for level -1. Then Hypothesis round trips, and the scalar, numpy and
compiled walkers on built tables, and the AddressSpace state machine on an LPA2 mode.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from tests.test_space_statemachine import (
    FAST,
    TABLE_POOL_BASE,
    TABLE_POOL_FRAMES,
    SpaceMachine,
)

from pagewalk.alloc.simple import SimpleFrameAllocator
from pagewalk.batch import translate_batch
from pagewalk.errors import ConfigError
from pagewalk.fast import compiled_walker
from pagewalk.fast._rules import address_fields, apply_fields, level_rules
from pagewalk.formats import make_mode
from pagewalk.formats.aarch64 import AArch64Mode
from pagewalk.formats.base import EntryKind, Level, MemType, Perm
from pagewalk.memory.physical import PhysicalMemory
from pagewalk.mmu.arm import ArmRules
from pagewalk.space import AddressSpace
from pagewalk.walk import translate, walk

TG0 = {12: 0b00, 16: 0b01, 14: 0b10}
TG1 = {12: 0b10, 16: 0b11, 14: 0b01}
DS = 1 << 59
GIB = 1 << 30


def tcr(granule: int, tsz: int, ips: int = 6, ds: bool = False) -> int:
    """TCR_EL1 with both halves on ``granule`` and ``64 - tsz``-bit VAs."""
    return tsz | tsz << 16 | TG0[granule] << 14 | TG1[granule] << 30 | ips << 32 | (DS if ds else 0)


def mode(granule: int, tsz: int, ips: int = 6, ds: bool = False) -> AArch64Mode:
    m = make_mode("aarch64", tcr=tcr(granule, tsz, ips, ds))
    assert isinstance(m, AArch64Mode)
    return m


def lv(m: AArch64Mode, number: int, half: int = 0) -> Level:
    return next(x for x in m.halves[half].levels if x.number == number)


LPA2_4K = dict(granule=12, tsz=12, ds=True)
LPA2_16K = dict(granule=14, tsz=12, ds=True)
LPA_64K = dict(granule=16, tsz=12)
MODES = {
    "lpa2-4k": LPA2_4K,
    "lpa2-4k-48": dict(granule=12, tsz=16, ds=True),
    "lpa2-4k-ips48": dict(granule=12, tsz=13, ips=5, ds=True),
    "lpa2-16k": LPA2_16K,
    "lpa-64k": LPA_64K,
    "lpa-64k-48va": dict(granule=16, tsz=16),
}


# ------------------------------------------------------------------ levels (D8.2)
@pytest.mark.parametrize(
    ("kw", "start", "entries", "align", "blocks"),
    [
        # 4K, DS=1: TnSZ 12..15 start at level -1 with 2**(52-tsz-48) entries
        (dict(granule=12, tsz=12, ds=True), -1, 16, 128, {0: 1 << 39, 1: GIB, 2: 2 << 20}),
        (dict(granule=12, tsz=15, ds=True), -1, 2, 64, {0: 1 << 39, 1: GIB, 2: 2 << 20}),
        (dict(granule=12, tsz=16, ds=True), 0, 512, 4096, {0: 1 << 39, 1: GIB, 2: 2 << 20}),
        # 16K, DS=1: 52-bit VAs keep 4 levels, with a 32-entry level-0 table; 64 GiB L1 blocks
        (dict(granule=14, tsz=12, ds=True), 0, 32, 256, {1: 64 * GIB, 2: 32 << 20}),
        # 64K, FEAT_LVA: 52-bit VAs with a 1024-entry level-1 table; 4 TiB L1 blocks (LPA)
        (dict(granule=16, tsz=12), 1, 1024, 8192, {1: 4 << 40, 2: 512 << 20}),
        # without DS or a 52-bit IPS, the 48-bit block levels (D8.3 table)
        (dict(granule=12, tsz=16, ips=6), 0, 512, 4096, {1: GIB, 2: 2 << 20}),
        (dict(granule=16, tsz=16, ips=5), 1, 64, 512, {2: 512 << 20}),
    ],
)
def test_start_level_root_size_and_block_levels(
    kw: dict[str, int], start: int, entries: int, align: int, blocks: dict[int, int]
) -> None:
    m = mode(**kw)
    for half in m.halves:
        root = half.levels[0]
        assert (root.number, root.entries, half.table_align) == (start, entries, align)
        assert root.name == f"L{start}"
        got = {x.number: x.leaf_size for x in half.levels if x.leaf_size and x.number != 3}
        assert got == blocks


@pytest.mark.parametrize(
    ("kw", "pa_bits"),
    [
        (dict(granule=12, tsz=16, ips=6), 48),  # IPS=52 without DS: 48 bits (PAMax cap)
        (dict(granule=14, tsz=16, ips=6), 48),
        (dict(granule=12, tsz=16, ips=6, ds=True), 52),
        (dict(granule=16, tsz=16, ips=6), 52),
        (dict(granule=16, tsz=16, ips=6, ds=True), 52),  # DS is ignored with 64K
        (dict(granule=12, tsz=16, ips=2, ds=True), 40),
    ],
)
def test_output_size(kw: dict[str, int], pa_bits: int) -> None:
    assert mode(**kw).pa_bits == pa_bits


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(granule=12, tsz=12), "T0SZ=12 is outside 16..39"),  # no DS: no 52-bit VA
        (dict(granule=14, tsz=15), "T0SZ=15 is outside 16..39"),
        (dict(granule=12, tsz=11, ds=True), "T0SZ=11 is outside 12..39"),
        (dict(granule=16, tsz=11), "T0SZ=11 is outside 12..39"),
    ],
)
def test_tsz_below_the_minimum_is_refused(kw: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        mode(**kw)


# ------------------------------------------------------- descriptors by hand (D8.3)
AF, PAGE, BLOCK, TABLE = 1 << 10, 0b11, 0b01, 0b11
UXN, PXN, NG, AP2 = 1 << 54, 1 << 53, 1 << 11, 1 << 7


@pytest.mark.parametrize(
    ("kw", "level", "raw", "address", "size"),
    [
        # 4K DS page: bits [49:12] = 0x3_1234_5678_9, bits [9:8] = 0b11 -> OA[51:50]
        (LPA2_4K, 3, 0x0003_1234_5678_9000 | 0x300 | AF | PAGE, 0xF_1234_5678_9000, 4096),
        # 4K DS level-0 block (512 GiB): OA[51:50]=0b10, OA[39]=1
        (LPA2_4K, 0, (1 << 39) | 0x200 | AF | BLOCK, 0x8_0080_0000_0000, 1 << 39),
        # 16K DS level-1 block (64 GiB): OA[50]=1 via bit 8, OA[36]=1
        (LPA2_16K, 1, (1 << 36) | 0x100 | AF | BLOCK, 0x4_0010_0000_0000, 1 << 36),
        # 64K LPA page: bits [47:16] = 0x1234, OA[51:48] = 0xA in bits [15:12]
        (LPA_64K, 3, 0x1234_0000 | 0xA000 | AF | PAGE, 0xA_0000_1234_0000, 1 << 16),
        # 64K LPA level-1 block (4 TiB): OA[42]=1, OA[51:48]=5
        (LPA_64K, 1, (1 << 42) | 0x5000 | AF | BLOCK, 0x5_0400_0000_0000, 1 << 42),
        # no DS: bits [9:8] are SH, not address
        (dict(granule=12, tsz=16), 3, 0x1234_5000 | 0x300 | AF | PAGE, 0x1234_5000, 4096),
        # 64K with a 48-bit IPS: bits [15:12] are not address bits (as QEMU)
        (
            dict(granule=16, tsz=16, ips=5),
            3,
            0x1234_0000 | 0xA000 | AF | PAGE,
            0x1234_0000,
            1 << 16,
        ),
    ],
)
def test_leaf_descriptors(
    kw: dict[str, int], level: int, raw: int, address: int, size: int
) -> None:
    m = mode(**kw)
    e = m.decode(raw, lv(m, level))
    assert (e.kind, e.fault, e.address, e.size) == (EntryKind.LEAF, None, address, size)


@pytest.mark.parametrize(
    ("kw", "level", "raw", "address"),
    [
        (LPA2_4K, -1, 0x0000_0000_4000_1000 | 0x300 | TABLE, 0xC_0000_4000_1000),
        (LPA2_4K, 0, 0x0002_0000_0000_3000 | TABLE, 0x2_0000_0000_3000),
        (LPA2_16K, 0, 0x0000_0000_0000_C000 | 0x100 | TABLE, 0x4_0000_0000_C000),
        (LPA_64K, 1, 0x0000_0000_0003_0000 | 0xF000 | TABLE, 0xF_0000_0003_0000),
    ],
)
def test_table_descriptors(kw: dict[str, int], level: int, raw: int, address: int) -> None:
    m = mode(**kw)
    e = m.decode(raw, lv(m, level))
    assert (e.kind, e.fault, e.address) == (EntryKind.TABLE, None, address)
    assert m.encode_table(address, lv(m, level), Perm.READ) == raw


@pytest.mark.parametrize(
    ("kw", "level", "raw", "fault"),
    [
        (LPA2_4K, -1, (1 << 48) | AF | BLOCK, "translation"),  # no block at level -1
        (dict(granule=12, tsz=16), 0, AF | BLOCK, "translation"),  # L0 blocks need DS
        (dict(granule=14, tsz=16), 1, AF | BLOCK, "translation"),
        (dict(granule=16, tsz=16, ips=5), 1, AF | BLOCK, "translation"),  # L1 needs LPA
        # DS with a 48-bit output size: OA[51:50] (bits 9:8) or OA[49:48] set are too wide
        (dict(granule=12, tsz=16, ips=5, ds=True), 3, 0x100 | AF | PAGE, "address-size"),
        (dict(granule=12, tsz=16, ips=5, ds=True), 3, (1 << 48) | AF | PAGE, "address-size"),
        (dict(granule=12, tsz=16, ips=5, ds=True), 2, 0x200 | TABLE, "address-size"),
        (dict(granule=12, tsz=16, ips=2, ds=True), 3, (1 << 40) | AF | PAGE, "address-size"),
    ],
)
def test_descriptor_faults(kw: dict[str, int], level: int, raw: int, fault: str) -> None:
    m = mode(**kw)
    assert m.decode(raw, lv(m, level)).fault == fault


def test_encode_leaf_by_hand() -> None:
    """A kernel rw, non-executable, global 4K page under DS: no SH bits (TCR_EL1.SH0 holds
    the shareability), OA[51:50] in bits [9:8]."""
    m = mode(**LPA2_4K)
    raw = m.encode_leaf(0xF_1234_5678_9000, lv(m, 3), Perm.parse("rwg"))
    assert raw == 0x0003_1234_5678_9000 | 0x300 | AF | PAGE | UXN | PXN
    assert [f.name for f in m.fields(raw, lv(m, 3))].count("OA[51:50]") == 1
    old = mode(granule=12, tsz=16)
    assert old.encode_leaf(0x1234_5000, lv(old, 3), Perm.parse("rwg")) & 0x300 == 0x300
    assert m.memtype_mask(lv(m, 3)) & 0x300 == 0


def test_ttbr_base_address() -> None:
    """TTBRn_EL1 bits [5:2] are BADDR[51:48] with a 52-bit output size (and ignored below)."""
    for kw in (LPA2_4K, LPA_64K):
        m = mode(**kw)
        assert m.root_from_register(0x0000_0000_1000_003C) == 0xF_0000_1000_0000
        assert m.root_from_register(0x0005_0000_1000_0004) == 0x1_0000_1000_0000  # ASID 5
        assert m.ttbr(0xF_0000_1000_0000) == 0x1000_003C
    m48 = mode(granule=12, tsz=16, ips=5)
    assert m48.root_from_register(0x1000_003C) == 0x1000_0000


def test_fault_status_codes_at_level_minus_one() -> None:
    """ESR_ELx.ISS.DFSC: 0b101011 translation level -1, 0b101001 address size level -1."""
    m = mode(**LPA2_4K)
    mem = PhysicalMemory(64 << 10)
    got = walk(mem, m, (0x1000, 0x2000), 0x1234)
    assert got.fault is not None and (got.fault.kind, got.fault.level) == ("translation", -1)
    rules = ArmRules()
    assert rules.walk_fault(m, None, 0x1234, got.fault, "read", False).details["fsc"] == 0x2B
    mem.write(0x2000, (0x300 | TABLE).to_bytes(8, "little"))  # OA[51:50] set, IPS 48
    m48 = mode(granule=12, tsz=12, ips=5, ds=True)
    bad = walk(mem, m48, (0x2000, 0x2000), 0x10).fault
    assert bad is not None and (bad.kind, bad.level) == ("address-size", -1)
    assert rules.walk_fault(m48, None, 0x10, bad, "write", True).details["fsc"] == 0x29
    ok = walk(mem, m, (0x1000, 0x2000), 0xFFF0_0000_0000_0000)  # L-1 table at 0xC_..._0000
    assert ok.fault is not None and ok.fault.kind == "bad-table" and ok.fault.level == 0


# ------------------------------------------------------------- round trips
@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(sorted(MODES)),
    which=st.integers(0, 4),
    pa=st.integers(0, (1 << 52) - 1),
    perm=st.sampled_from(["r", "rw", "rx", "rwu", "rxu", "rg", "rwxg"]),
    memtype=st.sampled_from([MemType.NORMAL, MemType.DEVICE, MemType.WRITE_COMBINING]),
)
def test_leaf_round_trip(name: str, which: int, pa: int, perm: str, memtype: MemType) -> None:
    m = mode(**MODES[name])
    leaves = [x for x in m.halves[0].levels if x.leaf_size]
    level = leaves[which % len(leaves)]
    pa = (pa & ~(level.leaf_size - 1)) % (1 << m.pa_bits)
    raw = m.encode_leaf(pa, level, Perm.parse(perm), memtype)
    e = m.decode(raw, level)
    assert (e.kind, e.fault, e.address, e.size, e.memtype) == (
        EntryKind.LEAF, None, pa, level.leaf_size, memtype
    )  # fmt: skip
    assert e.perm & ~Perm.GLOBAL & ~Perm.EXEC == Perm.parse(perm) & ~Perm.GLOBAL & ~Perm.EXEC
    assert int(m.np_address(np.array([raw], np.uint64), level, True)[0]) == pa
    for other in leaves:  # split / merge keeps every attribute bit
        new_pa = pa & ~(other.leaf_size - 1)
        moved = m.resize_leaf(raw, level, other, new_pa)
        back = m.decode(moved, other)
        assert (back.address, back.size, back.perm, back.memtype) == (
            new_pa, other.leaf_size, e.perm, memtype
        )  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(sorted(MODES)), pa=st.integers(0, (1 << 52) - 1), depth=st.integers())
def test_table_round_trip(name: str, pa: int, depth: int) -> None:
    m = mode(**MODES[name])
    levels = m.halves[0].levels[:-1]
    level = levels[depth % len(levels)]
    pa = (pa & ~((1 << m.granules[0].shift) - 1)) % (1 << m.pa_bits)
    raw = m.encode_table(pa, level, Perm.READ)
    e = m.decode(raw, level)
    assert (e.kind, e.fault, e.address) == (EntryKind.TABLE, None, pa)


@pytest.mark.parametrize("name", sorted(MODES))
def test_compiled_rules_match_the_codec(name: str) -> None:
    """The compiled walker's numbers (fast/_rules.py) reproduce np_address exactly, so the C
    loop needs nothing 52-bit of its own: two shifted fields (OA[51:48] or OA[51:50])."""
    m = mode(**MODES[name])
    rng = random.Random(name)
    raws = np.array([rng.getrandbits(64) | 1 for _ in range(2000)], np.uint64)
    for level in m.halves[0].levels:
        assert level_rules(m, level) is not None
        for leaf in (False, True) if level.leaf_size else (False,):
            fields = address_fields(m, level, leaf)
            assert fields is not None
            assert (apply_fields(fields, raws) == m.np_address(raws, level, leaf)).all()


# ------------------------------------------------------- built tables, three walkers
def build(m: AArch64Mode, seed: int) -> tuple[PhysicalMemory, AddressSpace, list[int]]:
    """Tables with random mappings: blocks at every block level, PAs up to 52 bits."""
    rng = random.Random(seed)
    mem = PhysicalMemory(64 << 20)
    space = AddressSpace(m, mem, SimpleFrameAllocator(32 << 20, 32 << 20))
    vas: list[int] = []
    for half in m.halves:
        sizes = sorted({x.leaf_size for x in half.levels if x.leaf_size})
        for _ in range(6):
            size = rng.choice(sizes[:3])
            span = half.va_end - half.va_start
            va = half.va_start + rng.randrange(span // size) * size
            pa = rng.randrange((1 << m.pa_bits) // size) * size
            try:
                space.map_range(va, pa, size, Perm.parse(rng.choice(["rw", "rxu"]))).ignore()
            except Exception:  # an overlap with an earlier mapping
                continue
            vas += [va + rng.randrange(size) for _ in range(50)]
        vas += [half.va_start + rng.randrange(half.va_end - half.va_start) for _ in range(300)]
    return mem, space, vas


@pytest.mark.parametrize("name", sorted(MODES))
def test_scalar_batch_and_compiled_walkers_agree(name: str) -> None:
    m = mode(**MODES[name])
    mem, space, vas = build(m, 7)
    roots = space.roots
    arr = np.array(vas, np.uint64)
    fast = compiled_walker(mem, m, roots)
    assert fast is not None
    results = [translate_batch(mem, m, roots, arr), fast.translate(arr)]
    mapped = 0
    for i, va in enumerate(vas):
        pa, size, fault = translate(mem, m, roots, va)
        full = walk(mem, m, roots, va)
        assert (full.pa, full.page_size) == (pa, size)
        want = (
            0xFFFF_FFFF_FFFF_FFFF if pa is None else pa,
            size or 0,
            -1 if fault is None else fault.level,
        )
        for r in results:
            assert (int(r.pa[i]), int(r.page_size[i]), int(r.level[i])) == want, hex(va)
        mapped += pa is not None
    assert mapped > 100


class Lpa2SpaceMachine(SpaceMachine):
    """The AddressSpace state machine on 4K LPA2 with 52-bit VAs (walks start at level -1)."""

    mode_name = "aarch64"

    def __init__(self) -> None:
        super().__init__()
        self.mode = make_mode("aarch64", tcr=tcr(12, 12, ds=True))
        self.frames = SimpleFrameAllocator(TABLE_POOL_BASE, TABLE_POOL_FRAMES * 4096)
        self.space = AddressSpace(self.mode, self.mem, self.frames)


def test_space_state_machine_lpa2() -> None:
    run_state_machine_as_test(Lpa2SpaceMachine, settings=FAST)


# ------------------------------------------------------------------ the command line
SPEC = """
mode = "aarch64"
ram = "64M"

[registers]
tcr = "0x%x"

[[map]]
va = "0x000F000000000000"
pa = "0xF000000000000"
size = "512G"
perm = "rw"

[[map]]
va = "0xFFF0000000001000"
pa = "0xC000000003000"
size = "4K"
perm = "rx"
"""


def pagewalk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pagewalk", *args], capture_output=True, text=True, timeout=120)


def test_build_translate_walk_and_maps_an_lpa2_image(tmp_path: Path) -> None:
    """`pagewalk build` makes LPA2 tables (a 512 GiB level-0 block, a page at a 52-bit PA) and
    `translate`, `walk` and `maps` read the image back with no options."""
    spec, img = tmp_path / "lpa2.toml", tmp_path / "lpa2.img"
    spec.write_text(SPEC % tcr(12, 12, ds=True))
    built = pagewalk("build", str(spec), "--out", str(img))
    assert built.returncode == 0, built.stderr
    vas = ["0x000F001234567890", "0xFFF0000000001234", "0x0001000000000000"]
    done = pagewalk("translate", "--json", str(img), *vas)
    assert done.returncode == 0, done.stderr
    got = [(r["pa"], r["page_size"], r["fault"]) for r in json.loads(done.stdout)]
    assert got == [
        (0xF_0012_3456_7890, 1 << 39, None),
        (0xC_0000_0000_3234, 4096, None),
        (None, None, {"kind": "translation", "level": -1}),
    ]
    steps = json.loads(pagewalk("walk", "--json", str(img), vas[1]).stdout)["steps"]
    assert [s["name"] for s in steps] == ["L-1", "L0", "L1", "L2", "L3"]
    assert steps[-1]["fields"]["OA[51:50]"] == 3
    listing = pagewalk("maps", str(img))
    assert listing.returncode == 0 and "FEAT_LPA2" in listing.stdout
    assert "0xf000000000000" in listing.stdout and "512G" in listing.stdout
