"""The streaming framer: any segmentation gives the same PDUs, in-place receive (get_buffer /
buffer_updated, data_sink into the caller's buffer), digests checked, PDO padding honoured."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pynvmetcp.errors import ProtocolError
from pynvmetcp.spec.pdu import Fes, PduType
from pynvmetcp.wire import codec
from pynvmetcp.wire.crc import crc32c
from pynvmetcp.wire.framer import _AFTER_LARGE, Framer
from tests.wire.strategies import (RECEIVES, Case, Link, cases, decoded, expected, fields_for,
                                   links)

SETTINGS = settings(max_examples=80, deadline=None)
receivers = st.sampled_from(sorted(RECEIVES))


@st.composite
def streams(draw, big=True):
    """(receiver, link, cases, bytes): several valid PDUs back to back."""
    receiver = draw(receivers, label="receiver")
    link = draw(links, label="link")
    pdus = draw(st.lists(cases(receiver, big), min_size=1, max_size=6), label="pdus")
    return receiver, link, pdus, b"".join(c.encode(link) for c in pdus)


def _check(got, pdus, link):
    assert [decoded(p) for p in got] == [expected(c, link) for c in pdus]
    for p in got:
        if p.ddgst is not None:
            assert p.ddgst_ok is True


@SETTINGS
@given(streams(), st.data())
def test_any_segmentation(stream, data):
    receiver, link, pdus, raw = stream
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12), label="cuts"))
    framer = link.framer(receiver)
    got = []
    for a, b in zip([0] + cuts, cuts + [len(raw)]):
        got += framer.feed(raw[a:b])
    _check(got, pdus, link)
    assert framer.idle


@settings(max_examples=25, deadline=None)
@given(streams(big=False))
def test_one_byte_feeds(stream):
    receiver, link, pdus, raw = stream
    framer = link.framer(receiver)
    got = []
    for i in range(len(raw)):
        got += framer.feed(raw[i:i + 1])
        assert not framer.idle or raw[:i + 1] == b"".join(c.encode(link) for c in pdus[:len(got)])
    _check(got, pdus, link)
    assert framer.idle


@SETTINGS
@given(streams())
def test_many_pdus_in_one_feed(stream):
    receiver, link, pdus, raw = stream
    framer = link.framer(receiver)
    _check(framer.feed(raw), pdus, link)
    _check(framer.feed(bytearray(raw)), pdus, link)  # any buffer type, twice in a row
    _check(framer.feed(memoryview(raw)), pdus, link)


def _recv_into_all(framer: Framer, raw: bytes, rng: random.Random, max_chunk: int) -> list:
    """Like a socket: each recv_into writes what is available, up to the buffer's length."""
    got, pos = [], 0
    while pos < len(raw):
        buf = framer.get_buffer()
        assert len(buf) > 0
        n = min(len(buf), rng.randint(1, max_chunk), len(raw) - pos)
        buf[:n] = raw[pos:pos + n]
        pos += n
        got += framer.buffer_updated(n)
    return got


@SETTINGS
@given(streams(), st.randoms(use_true_random=False), st.sampled_from([7, 100, 5000, 70000]))
def test_get_buffer_buffer_updated(stream, rng, max_chunk):
    receiver, link, pdus, raw = stream
    framer = link.framer(receiver)
    _check(_recv_into_all(framer, raw, rng, max_chunk), pdus, link)
    assert framer.idle


@settings(SETTINGS, max_examples=30, suppress_health_check=[HealthCheck.large_base_example])
@given(st.data())
def test_staging_buffer_wraps_over_long_streams(data):
    """Hundreds of small PDUs through a small staging buffer: compaction keeps every byte."""
    receiver = data.draw(receivers)
    link = data.draw(links)
    pdus = data.draw(st.lists(cases(receiver, big=False), min_size=50, max_size=120))
    raw = b"".join(c.encode(link) for c in pdus)
    framer = link.framer(receiver, staging=4096)
    rng = data.draw(st.randoms(use_true_random=False))
    _check(_recv_into_all(framer, raw, rng, 3000), pdus, link)


def test_big_payload_is_received_in_place():
    """A large C2HData payload: get_buffer hands out the data buffer itself (no staging copy)."""
    payload = random.Random(1).randbytes(100_000)
    raw = codec.encode(codec.c2h_data(5, 0, payload, last=True))
    framer = Framer("host")
    framer.feed(raw[:24 + 1000])  # header and the start of the payload, through staging
    buf = framer.get_buffer()
    assert len(buf) == len(payload) - 1000  # exactly the payload's remainder
    buf[:] = raw[24 + 1000:]
    (p,) = framer.buffer_updated(len(buf))
    assert bytes(p.data) == payload and buf.obj is p.data.obj


def test_headers_are_received_in_a_small_window_while_payloads_come_in_place():
    """After a payload received in place, the next receive into staging takes at most
    _AFTER_LARGE bytes (the next large payload's start is then copied from staging, not most
    of 64 KiB of it); a small payload, whole in staging, opens the full window again."""
    big = random.Random(2).randbytes(100_000)
    small = b"s" * 512
    raw = b"".join(codec.encode(codec.c2h_data(i, 0, p, last=True))
                   for i, p in enumerate((big, big, small, small)))
    framer = Framer("host")
    assert len(framer.get_buffer()) == 1 << 16  # nothing seen yet: the whole staging buffer
    got, pos = [], 0
    windows = []
    while pos < len(raw):
        buf = framer.get_buffer()
        windows.append((framer.idle, len(buf)))
        k = min(len(buf), len(raw) - pos)
        buf[:k] = raw[pos:pos + k]
        pos += k
        got += framer.buffer_updated(k)
    assert [bytes(p.data) for p in got] == [big, big, small, small]
    assert windows[2] == (True, _AFTER_LARGE)  # after the first payload, received in place
    assert len(framer.get_buffer()) > _AFTER_LARGE  # the small payloads came whole: full again


@pytest.mark.parametrize("size", [1, 100, 8191, 8192, 65536])
@pytest.mark.parametrize("chunked", [False, True])
def test_data_sink_receives_into_the_callers_buffer(size, chunked):
    """data_sink returns a slice of the caller's read buffer: the payload lands there, and the
    delivered PDU's data is that very memory."""
    payload = random.Random(size).randbytes(size)
    target = bytearray(size + 64)
    view = memoryview(target)
    seen = []

    def sink(p):
        seen.append((p.pdu_type, p.cccid, p.datao, p.datal))
        return view[32:32 + p.datal]

    raw = codec.encode(codec.c2h_data(9, 4096, payload, last=True, hdgst=True, ddgst=True,
                                      pda=3))
    framer = Link(True, True, 3).framer("host")
    framer.data_sink = sink
    if chunked:
        got = _recv_into_all(framer, raw, random.Random(size), 3000)
    else:
        got = framer.feed(raw)
    (p,) = got
    assert seen == [(PduType.C2HData, 9, 4096, size)]
    assert target[32:32 + size] == payload and target[:32] == bytes(32)
    assert target[32 + size:] == bytes(32)
    assert p.data.obj is target and p.ddgst_ok is True


def test_data_sink_wrong_length_or_none_gets_a_private_buffer():
    payload = b"abcd" * 10
    raw = codec.encode(codec.h2c_data(1, 2, 0, payload, last=True))
    framer = Framer("controller")
    framer.data_sink = lambda p: memoryview(bytearray(3))  # wrong size: ignored
    (p,) = framer.feed(raw)
    assert bytes(p.data) == payload
    framer.data_sink = lambda p: None
    (p,) = framer.feed(raw)
    assert bytes(p.data) == payload


def test_data_sink_may_return_a_bytearray():
    """A bytearray (not a memoryview) from data_sink still receives the payload in place."""
    payload = random.Random(3).randbytes(50_000)
    raw = codec.encode(codec.c2h_data(1, 0, payload, last=True))
    target = bytearray(len(payload))
    framer = Framer("host")
    framer.data_sink = lambda p: target
    got = _recv_into_all(framer, raw, random.Random(4), 20_000)
    assert target == payload and bytes(got[0].data) == payload
    assert got[0].data.obj is target


def test_read_only_data_sink_is_not_written():
    raw = codec.encode(codec.c2h_data(1, 0, b"abcd", last=True))
    framer = Framer("host")
    framer.data_sink = lambda p: memoryview(bytes(4))
    (p,) = framer.feed(raw)
    assert bytes(p.data) == b"abcd"


# ---- digests ----

@SETTINGS
@given(receiver=receivers, data=st.data())
def test_bad_header_digest_is_fatal(receiver, data):
    link = Link(hdgst=True, ddgst=data.draw(st.booleans()), pda=data.draw(st.integers(0, 31)))
    t = data.draw(st.sampled_from([t for t in RECEIVES[receiver]
                                   if t in (4, 5, 6, 7, 9)]))
    case = data.draw(fields_for(t, big=False))
    raw = bytearray(case.encode(link))
    hlen = raw[2]
    good = int.from_bytes(raw[hlen:hlen + 4], "little")
    bit = data.draw(st.integers(0, 8 * (hlen + 4) - 1), label="flipped bit")
    if bit >= 8 * hlen:  # in the digest itself
        raw[hlen + (bit - 8 * hlen) // 8] ^= 1 << (bit % 8)
    else:  # in a header byte the framer does not validate (a PSH field)
        byte = 8 + (bit // 8) % (hlen - 8)
        raw[byte] ^= 1 << (bit % 8)  # (DATAL too: the digest is checked before datal)
    framer = link.framer(receiver)
    with pytest.raises(ProtocolError) as exc:
        framer.feed(bytes(raw))
    err = exc.value
    received = int.from_bytes(raw[hlen:hlen + 4], "little")
    assert err.fes == Fes.HEADER_DIGEST_ERROR
    assert err.fei == received != crc32c(raw[:hlen])  # FEI carries the received digest
    assert (received == good) == (bit < 8 * hlen)
    assert err.header == bytes(raw[:hlen])


@SETTINGS
@given(receiver=receivers, pda=st.integers(0, 31), data=st.data())
def test_bad_data_digest_is_delivered_flagged(receiver, pda, data):
    link = Link(hdgst=data.draw(st.booleans()), ddgst=True, pda=pda)
    t = PduType.CapsuleCmd if receiver == "controller" else PduType.C2HData
    case = data.draw(fields_for(t).filter(lambda c: c.data))
    raw = bytearray(case.encode(link))
    pos = data.draw(st.integers(raw[3], len(raw) - 1), label="corrupted byte")  # data or DDGST
    raw[pos] ^= data.draw(st.integers(1, 255))
    (p,) = link.framer(receiver).feed(bytes(raw))
    assert p.ddgst_ok is False
    assert p.ddgst == int.from_bytes(raw[-4:], "little")
    assert bytes(p.data) == bytes(raw[raw[3]:-4])


def test_next_pdu_after_a_bad_data_digest_still_decodes():
    link = Link(ddgst=True)
    bad = bytearray(codec.encode(codec.h2c_data(1, 1, 0, b"x" * 16, last=True, ddgst=True)))
    bad[-1] ^= 0xFF
    good = codec.encode(codec.capsule_cmd(bytes(64)))
    a, b = link.framer("controller").feed(bytes(bad) + good)
    assert a.ddgst_ok is False and b.pdu_type == PduType.CapsuleCmd and b.ddgst is None


# ---- PDO padding ----

@SETTINGS
@given(receiver=receivers, pda=st.integers(1, 31), hdgst=st.booleans(), ddgst=st.booleans(),
       payload=st.binary(min_size=1, max_size=64), junk=st.integers(0, 255))
def test_pdo_padding(receiver, pda, hdgst, ddgst, payload, junk):
    """Data starts at PDO, a multiple of (pda+1)*4 past the header (and header digest); the pad
    bytes in between are skipped whatever they hold."""
    link = Link(hdgst, ddgst, pda)
    if receiver == "controller":
        raw = bytearray(codec.encode(codec.capsule_cmd(bytes(64), payload, hdgst=hdgst,
                                                       ddgst=ddgst, pda=pda)))
        hlen = 72
    else:
        raw = bytearray(codec.encode(codec.c2h_data(1, 0, payload, last=True, hdgst=hdgst,
                                                    ddgst=ddgst, pda=pda)))
        hlen = 24
    align = (pda + 1) * 4
    pdo = raw[3]
    start = hlen + (4 if hdgst else 0)
    assert pdo % align == 0 and start <= pdo < start + align
    raw[start:pdo] = bytes([junk]) * (pdo - start)
    (p,) = link.framer(receiver).feed(bytes(raw))
    assert bytes(p.data) == payload and p.pdo == pdo


def test_larger_than_minimal_pdo_is_accepted():
    """PDO further out than the minimum, still aligned: the data starts where PDO says."""
    hdr = bytearray(codec.encode(codec.capsule_cmd(bytes(64), b"DATA")))
    pdo = 96
    raw = hdr[:3] + bytes([pdo]) + (pdo + 4).to_bytes(4, "little") + hdr[8:72] + bytes(
        pdo - 72) + b"DATA"
    framer = Link(pda=7).framer("controller")  # 32-byte alignment
    (p,) = framer.feed(bytes(raw))
    assert bytes(p.data) == b"DATA"


def test_termreq_data_follows_the_header_whatever_pdo_says():
    """TermReq PDO is reserved (pitfall 3): the offending header starts at byte 24."""
    raw = bytearray(codec.term_req(PduType.C2HTermReq, 1, 3, b"\x04\x00\x48\x00" + bytes(20)))
    raw[3] = 0x40
    (p,) = Framer("host").feed(bytes(raw))
    assert (p.fes, p.fei, bytes(p.data)) == (1, 3, b"\x04\x00\x48\x00" + bytes(20))


def test_pdu_records():
    (p,) = Framer("controller").feed(codec.encode(codec.capsule_cmd(
        bytes([0x7F, 0, 0x34, 0x12]) + bytes(60))))
    assert p.name == "CapsuleCmd" and p.opcode == 0x7F and p.cid == 0x1234
    assert p.raw_header == codec.encode(codec.capsule_cmd(p.sqe))[:72]
    case = Case(PduType.ICReq, dict(pfv=0, hpda=2, dgst=3, maxr2t=0))
    (p,) = Framer("controller").feed(case.encode(Link()))
    assert (p.name, p.hpda, p.dgst) == ("ICReq", 2, 3)
