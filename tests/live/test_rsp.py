"""The remote protocol's framing against the GDB manual's rules (§E.1): checksums, escapes,
run-length runs, and a reader that refuses what a hostile peer sends."""

from __future__ import annotations

import socket
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pagewalk.errors import LiveError
from pagewalk.live.rsp import PacketReader, checksum, decode, escape, frame


def test_frame_matches_the_manual_example() -> None:
    # '$m0,4#fd': 'm' + '0' + ',' + '4' = 0x6d + 0x30 + 0x2c + 0x34 = 0xfd
    assert frame(b"m0,4") == b"$m0,4#fd"
    assert checksum(b"OK") == 0x9A


def test_escapes_every_special_byte() -> None:
    assert escape(b"a#b$c}d*e") == b"a}\x03b}\x04c}]d}\x0ae"


@given(st.binary(max_size=300))
def test_escape_then_decode_is_identity(data: bytes) -> None:
    wire = escape(data)
    assert not set(wire) & set(b"#$*")
    assert decode(wire) == data


def test_run_length_decoding() -> None:
    # "0* " is '0' and 32 - 29 = 3 more: four zeros (the manual's example)
    assert decode(b"0* ") == b"0000"
    assert decode(b'ab*"c') == b"a" + b"b" * 6 + b"c"


@pytest.mark.parametrize("bad", [b"*#", b"}", b"a*\x01"])
def test_bad_encodings_are_refused(bad: bytes) -> None:
    with pytest.raises(LiveError):
        decode(bad)


def _pair(data: bytes, timeout: float = 0.5) -> tuple[PacketReader, socket.socket]:
    a, b = socket.socketpair()
    b.sendall(data)
    return PacketReader(a, "peer", timeout, limit=4096), b


def test_reader_skips_acks_and_notifications_and_acks_back() -> None:
    reader, peer = _pair(b"++%Stop:T05#xx-" + frame(b"OK"))
    assert reader.packet() == b"OK"
    assert peer.recv(10) == b"+"


def test_bad_checksum_is_nakked_then_times_out() -> None:
    reader, peer = _pair(b"$OK#00")
    with pytest.raises(LiveError, match="timed out"):
        reader.packet()
    assert peer.recv(10) == b"-"


def test_bad_checksum_without_acks_is_an_error() -> None:
    reader, _ = _pair(b"$OK#00")
    reader.acks = False
    with pytest.raises(LiveError, match="bad checksum"):
        reader.packet()


def test_endless_packet_is_refused_not_buffered() -> None:
    a, b = socket.socketpair()
    reader = PacketReader(a, "peer", 5.0, limit=4096)
    stop = threading.Event()

    def flood() -> None:
        try:
            b.sendall(b"$")
            while not stop.is_set():
                b.sendall(b"A" * 1024)
        except OSError:
            pass

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    with pytest.raises(LiveError, match="longer than 4096"):
        reader.packet()
    stop.set()
    a.close()
    b.close()


def test_garbage_and_closed_connection() -> None:
    reader, _ = _pair(b"hello")
    with pytest.raises(LiveError, match="garbage"):
        reader.packet()
    reader, peer = _pair(b"")
    peer.close()
    with pytest.raises(LiveError, match="closed"):
        reader.packet()


def test_silence_times_out() -> None:
    reader, _ = _pair(b"", timeout=0.2)
    with pytest.raises(LiveError, match=r"timed out after 0.2 s"):
        reader.packet()
