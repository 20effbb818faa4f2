"""Every header validation rule of the framer raises ProtocolError with the documented FES and FEI
(the byte offset of the field: type 0, flags 1, hlen 2, pdo 3, plen 4, datal 16), the lowest
incorrect field first; hostile bytes never raise anything else nor allocate past max_data; a
failed framer stays failed."""
from __future__ import annotations

import random
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pynvmetcp.errors import ProtocolError
from pynvmetcp.spec.pdu import HLEN, VALID_FLAGS, Fes, PduFlags, PduType
from pynvmetcp.wire import codec
from pynvmetcp.wire.framer import Framer
from tests.wire.strategies import RECEIVES, Link, cases, fields_for, links

TYPE, FLAGS, HLEN_, PDO, PLEN, DATAL = 0, 1, 2, 3, 4, 16
INVALID = Fes.INVALID_HEADER_FIELD


def _raises(framer: Framer, raw: bytes, fes: int, fei: int) -> ProtocolError:
    with pytest.raises(ProtocolError) as exc:
        framer.feed(raw)
    err = exc.value
    assert (err.fes, err.fei) == (fes, fei), str(err)
    assert err.header == raw[:len(err.header)] and 8 <= len(err.header) <= 128
    return err


def _patch(raw: bytes, **fields) -> bytes:
    b = bytearray(raw)
    for name, value in fields.items():
        if name == "plen":
            b[4:8] = value.to_bytes(4, "little")
        elif name == "datal":
            b[16:20] = value.to_bytes(4, "little")
        else:
            b[{"type": 0, "flags": 1, "hlen": 2, "pdo": 3}[name]] = value
    return bytes(b)


CMD = codec.encode(codec.capsule_cmd(bytes(64)))
CMD_DATA = codec.encode(codec.capsule_cmd(bytes(64), b"d" * 16))
RESP = codec.encode(codec.capsule_resp(1, 0))
H2C = codec.encode(codec.h2c_data(1, 2, 0, b"d" * 16, last=True))
C2H = codec.encode(codec.c2h_data(1, 0, b"d" * 16, last=False))
R2T = codec.encode(codec.r2t(1, 2, 0, 4096))
TERM_H2C = codec.term_req(PduType.H2CTermReq, 1, 0, bytes(8))
TERM_C2H = codec.term_req(PduType.C2HTermReq, 1, 0, bytes(8))


@pytest.mark.parametrize("receiver,raw,fes,fei", [
    # type: wrong direction, unknown
    ("host", CMD, INVALID, TYPE),
    ("host", H2C, INVALID, TYPE),
    ("host", codec.ic_req(), INVALID, TYPE),
    ("host", TERM_H2C, INVALID, TYPE),
    ("controller", RESP, INVALID, TYPE),
    ("controller", C2H, INVALID, TYPE),
    ("controller", R2T, INVALID, TYPE),
    ("controller", codec.ic_resp(), INVALID, TYPE),
    ("controller", _patch(CMD, type=8), INVALID, TYPE),
    ("host", _patch(RESP, type=0x0B), INVALID, TYPE),
    ("controller", _patch(CMD, type=0xFE), INVALID, TYPE),
    # flags: bits a type may not carry
    ("controller", _patch(CMD, flags=PduFlags.LAST_PDU), INVALID, FLAGS),
    ("host", _patch(RESP, flags=PduFlags.DDGSTF), INVALID, FLAGS),
    ("host", _patch(R2T, flags=PduFlags.LAST_PDU), INVALID, FLAGS),
    ("controller", _patch(H2C, flags=PduFlags.SUCCESS | PduFlags.LAST_PDU), INVALID, FLAGS),
    ("host", _patch(C2H, flags=0x10), INVALID, FLAGS),
    ("controller", _patch(codec.ic_req(), flags=PduFlags.HDGSTF), INVALID, FLAGS),
    ("host", _patch(TERM_C2H, flags=PduFlags.HDGSTF), INVALID, FLAGS),
    # SUCCESS without LAST_PDU
    ("host", _patch(C2H, flags=PduFlags.SUCCESS), INVALID, FLAGS),
    # digest flags that were not negotiated
    ("controller", _patch(CMD, flags=PduFlags.HDGSTF, plen=76), INVALID, FLAGS),
    ("controller", _patch(CMD_DATA, flags=PduFlags.DDGSTF, plen=92), INVALID, FLAGS),
    ("host", _patch(C2H, flags=PduFlags.DDGSTF, plen=44), INVALID, FLAGS),
    # hlen
    ("controller", _patch(CMD, hlen=64), INVALID, HLEN_),
    ("controller", _patch(H2C, hlen=28), INVALID, HLEN_),
    ("host", _patch(RESP, hlen=16), INVALID, HLEN_),
    ("host", _patch(codec.ic_resp(), hlen=120), INVALID, HLEN_),
    ("controller", _patch(TERM_H2C, hlen=128), INVALID, HLEN_),
    # pdo: on PDUs without data, inside the header, misaligned, missing on data PDUs
    ("host", _patch(RESP, pdo=24), INVALID, PDO),
    ("host", _patch(R2T, pdo=24), INVALID, PDO),
    ("controller", _patch(codec.ic_req(), pdo=128), INVALID, PDO),
    ("controller", _patch(CMD_DATA, pdo=68), INVALID, PDO),
    ("controller", _patch(CMD_DATA, pdo=74), INVALID, PDO),
    ("host", _patch(C2H, pdo=0), INVALID, PDO),
    ("controller", _patch(H2C, pdo=0), INVALID, PDO),
    # plen: too small, too big for a PDU without data
    ("host", _patch(RESP, plen=28), INVALID, PLEN),
    ("host", _patch(RESP, plen=23), INVALID, PLEN),
    ("host", _patch(R2T, plen=0), INVALID, PLEN),
    ("controller", _patch(CMD, plen=80), INVALID, PLEN),
    ("controller", _patch(CMD_DATA, plen=72), INVALID, PLEN),
    ("controller", _patch(CMD_DATA, plen=60), INVALID, PLEN),
    ("host", _patch(C2H, plen=24), INVALID, PLEN),
    ("controller", _patch(codec.ic_req(), plen=132), INVALID, PLEN),
    ("host", _patch(codec.ic_resp(), plen=0xFFFFFFFF), INVALID, PLEN),
    # TermReq plen bounds: 24 ≤ plen ≤ 152
    ("controller", _patch(TERM_H2C, plen=23), INVALID, PLEN),
    ("host", _patch(TERM_C2H, plen=153), INVALID, PLEN),
    ("host", _patch(TERM_C2H, plen=0xFFFFFFFF), INVALID, PLEN),
    # plen beyond max_data: Data Transfer Limit Exceeded
    ("controller", _patch(CMD_DATA, plen=0xFFFFFFFF), Fes.DATA_TRANSFER_LIMIT_EXCEEDED, PLEN),
    ("host", _patch(C2H, plen=24 + (1 << 20) + 1), Fes.DATA_TRANSFER_LIMIT_EXCEEDED, PLEN),
    # datal must match the data carried
    ("controller", _patch(H2C, datal=15), INVALID, DATAL),
    ("host", _patch(C2H, datal=0), INVALID, DATAL),
    ("host", _patch(C2H, datal=0xFFFFFFFF), INVALID, DATAL),
], ids=lambda v: v.hex()[:24] if isinstance(v, bytes) else None)
def test_validation_rule(receiver, raw, fes, fei):
    assert len(raw) < 200
    _raises(Framer(receiver), raw, fes, fei)


@pytest.mark.parametrize("receiver,raw,link,fei", [
    # negotiated digests that the PDU does not carry
    ("controller", CMD, Link(hdgst=True), FLAGS),
    ("host", RESP, Link(hdgst=True), FLAGS),
    ("host", R2T, Link(hdgst=True), FLAGS),
    ("controller", CMD_DATA, Link(ddgst=True), FLAGS),
    ("controller", H2C, Link(ddgst=True), FLAGS),
    ("host", C2H, Link(ddgst=True), FLAGS),
    # DDGSTF on a PDU without data
    ("controller", _patch(CMD, flags=PduFlags.DDGSTF, plen=76), Link(ddgst=True), FLAGS),
    # PDO alignment follows the negotiated PDA
    ("controller", codec.encode(codec.capsule_cmd(bytes(64), b"x" * 8, pda=0)), Link(pda=3),
     PDO),
    ("host", codec.encode(codec.c2h_data(1, 0, b"x" * 8, last=True, pda=3)), Link(pda=15),
     PDO),
    # PDO inside the header digest
    ("controller", _patch(codec.encode(codec.capsule_cmd(bytes(64), b"x" * 8, hdgst=True)),
                          pdo=72), Link(hdgst=True), PDO),
    # data digest leaves no data
    ("controller", _patch(codec.encode(codec.capsule_cmd(bytes(64), b"x" * 8, ddgst=True)),
                          plen=76), Link(ddgst=True), PLEN),
], ids=lambda v: v.hex()[:24] if isinstance(v, bytes) else None)
def test_negotiated_rules(receiver, raw, link, fei):
    _raises(link.framer(receiver), raw, INVALID, fei)


def _cmd_ddgst(**patch) -> bytes:
    raw = codec.encode(codec.capsule_cmd(bytes(64), b"x" * 8, ddgst=True))
    return _patch(raw, flags=raw[1] & ~PduFlags.DDGSTF, **patch)  # DDGSTF missing


@pytest.mark.parametrize("raw,fei", [
    (_cmd_ddgst(), FLAGS),
    (_cmd_ddgst(hlen=70), FLAGS),  # flags (1) is lower than hlen (2)
    (_cmd_ddgst(pdo=73), FLAGS),  # ... and than pdo (3)
    (_cmd_ddgst(plen=72), FLAGS),  # ... and than plen (4)
    (_patch(CMD, flags=PduFlags.DDGSTF, hlen=70), FLAGS),  # DDGSTF without data, bad hlen
    (_patch(CMD, flags=PduFlags.DDGSTF, hlen=70, pdo=71), HLEN_),
    (_patch(CMD, flags=PduFlags.DDGSTF, pdo=71, plen=1), PDO),
    (_patch(CMD, pdo=72), FLAGS),  # PDO set means data: DDGSTF is then required
], ids=lambda v: v.hex()[:24] if isinstance(v, bytes) else None)
def test_lowest_field_first_examples(raw, fei):
    _raises(Link(ddgst=True).framer("controller"), raw, INVALID, fei)


def test_header_is_checked_before_the_whole_header_arrives():
    """The common header alone is enough to reject a PDU: 8 bytes, no waiting for plen bytes."""
    framer = Framer("controller")
    _raises(framer, _patch(CMD, hlen=99)[:8], INVALID, HLEN_)


def test_plen_4gib_is_refused_without_allocating():
    sink_calls = []
    framer = Framer("controller", max_data=1 << 16)
    framer.data_sink = lambda p: sink_calls.append(p)
    raw = _patch(CMD_DATA, plen=0xFFFFFFFF)
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError) as exc:
            framer.feed(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert exc.value.fes == Fes.DATA_TRANSFER_LIMIT_EXCEEDED == 0x05 and exc.value.fei == PLEN
    assert sink_calls == [] and peak < 64 * 1024


@pytest.mark.parametrize("max_data", [4096, 1 << 16])
def test_max_data_is_the_limit(max_data):
    f = Framer("host", max_data=max_data)
    (p,) = f.feed(codec.encode(codec.c2h_data(1, 0, bytes(max_data), last=True)))
    assert len(p.data) == max_data
    raw = codec.encode(codec.c2h_data(1, 0, bytes(max_data + 4), last=True))
    _raises(Framer("host", max_data=max_data), raw, Fes.DATA_TRANSFER_LIMIT_EXCEEDED, PLEN)


def test_termreq_sizes():
    f = Framer("host")
    (p,) = f.feed(codec.term_req(PduType.C2HTermReq, 2, 0))
    assert p.plen == 24 and bytes(p.data) == b""
    (p,) = f.feed(codec.term_req(PduType.C2HTermReq, 2, 0, bytes(range(128))))
    assert p.plen == 152 and bytes(p.data) == bytes(range(128))


# ---- lowest incorrect field first ----

def _corrupt(field: str, t: int, raw: bytes, link: Link, draw) -> dict:
    """A value for ``field`` that is wrong whatever the later fields hold (earlier ones valid)."""
    hlen, pdo = HLEN[t], raw[3]
    if field == "type":
        return {"type": draw(st.sampled_from([t ^ 1, 8, 10, 0x40, 0xFF]))}
    if field == "flags":
        options = [raw[1] | 0x10, raw[1] | 0x80]
        if t in (4, 5, 6, 7, 9):
            options.append(raw[1] ^ PduFlags.HDGSTF)
        if t in (4, 6, 7) and pdo and link.ddgst:
            options.append(raw[1] & ~PduFlags.DDGSTF)  # data digest negotiated, flag missing
        if t == 7:
            options.append((raw[1] | PduFlags.SUCCESS) & ~PduFlags.LAST_PDU)
        return {"flags": draw(st.sampled_from(options[::-1]))}
    if field == "hlen":
        return {"hlen": draw(st.sampled_from([h for h in (0, 8, 23, 25, 64, 71, 73, 127, 255)
                                              if h != hlen]))}
    if field == "pdo":
        if pdo:
            return {"pdo": pdo + draw(st.integers(1, 3))}  # misaligned (alignment ≥ 4)
        return {"pdo": draw(st.integers(1, 255))} if t not in (0, 1, 2, 3, 4) else {}
    if field == "plen":
        if t in (2, 3):
            return {"plen": draw(st.sampled_from([0, 23, 153, 0xFFFF]))}
        if pdo:
            return {"plen": pdo}  # no room for data
        return {"plen": len(raw) + draw(st.integers(1, 1000))}
    raise ValueError(field)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_lowest_incorrect_field_is_reported(data):
    receiver = data.draw(st.sampled_from(sorted(RECEIVES)), label="receiver")
    link = data.draw(links, label="link")
    t = data.draw(st.sampled_from(RECEIVES[receiver]), label="type")
    case = data.draw(fields_for(t, big=False).filter(lambda c: len(c.data) >= 8 or not c.data))
    raw = case.encode(link)
    wrong = data.draw(st.lists(st.sampled_from(["type", "flags", "hlen", "pdo", "plen"]),
                               min_size=1, max_size=5, unique=True), label="corrupted")
    patch: dict = {}
    for field in wrong:
        patch.update(_corrupt(field, t, raw, link, data.draw))
    if not patch:
        return
    offsets = {"type": TYPE, "flags": FLAGS, "hlen": HLEN_, "pdo": PDO, "plen": PLEN}
    expected_fei = min(offsets[f] for f in patch)
    _raises(link.framer(receiver), _patch(raw, **patch), INVALID, expected_fei)


# ---- hostile input ----

def _spy_framer(receiver: str, link: Link, max_data: int, asked: list) -> Framer:
    f = link.framer(receiver, max_data=max_data)

    def sink(p):
        dd = 4 if p.flags & PduFlags.DDGSTF else 0
        asked.append(p.plen - p.pdo - dd)  # the buffer the framer is about to allocate
        return None

    f.data_sink = sink
    return f


def _feed_hostile(framer: Framer, raw: bytes, cuts: list[int], max_data: int) -> None:
    try:
        for a, b in zip([0] + cuts, cuts + [len(raw)]):
            for p in framer.feed(raw[a:b]):
                assert len(p.data) <= max(max_data, 128)
    except ProtocolError as exc:
        assert 1 <= exc.fes <= 6 and len(exc.header) <= 128
        with pytest.raises(ProtocolError):  # and it stays failed
            framer.feed(b"\0" * 8)


HOSTILE = settings(max_examples=300, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@HOSTILE
@given(receiver=st.sampled_from(sorted(RECEIVES)), link=links, raw=st.binary(max_size=600),
       cuts=st.lists(st.integers(0, 600), max_size=6))
def test_random_bytes(receiver, link, raw, cuts):
    asked: list[int] = []
    max_data = 4096
    f = _spy_framer(receiver, link, max_data, asked)
    _feed_hostile(f, raw, sorted(c for c in cuts if c <= len(raw)), max_data)
    assert all(0 < n <= max_data for n in asked)


@st.composite
def mutated_streams(draw):
    receiver = draw(st.sampled_from(sorted(RECEIVES)))
    link = draw(links)
    pdus = draw(st.lists(cases(receiver, big=False), min_size=1, max_size=5))
    raw = bytearray(b"".join(c.encode(link) for c in pdus))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["set", "flip", "delete", "insert", "le32"]))
        pos = draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "set":
            raw[pos:pos + 1] = bytes([draw(st.integers(0, 255))])
        elif kind == "flip":
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del raw[pos:pos + draw(st.integers(1, 8))]
        elif kind == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:  # a hostile length at a random place
            raw[pos:pos + 4] = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 20,
                                                     (1 << 20) + 1])).to_bytes(4, "little")
    cuts = draw(st.lists(st.integers(0, len(raw)), max_size=5))
    return receiver, link, bytes(raw), sorted(cuts)


@HOSTILE
@given(mutated_streams())
def test_mutated_valid_streams(case):
    receiver, link, raw, cuts = case
    asked: list[int] = []
    max_data = 2048
    f = _spy_framer(receiver, link, max_data, asked)
    _feed_hostile(f, raw, cuts, max_data)
    assert all(0 < n <= max_data for n in asked)


def test_hostile_streams_stay_within_memory_bound():
    """tracemalloc over many hostile streams: the peak stays near staging + max_data."""
    rnd = random.Random(7)
    max_data = 1 << 16
    staging = 1 << 18
    seeds = [codec.encode(codec.capsule_cmd(bytes(64), b"x" * 64)), H2C, CMD, TERM_H2C]
    tracemalloc.start()
    try:
        for i in range(300):
            raw = bytearray(rnd.choice(seeds) * rnd.randint(1, 3))
            for _ in range(rnd.randint(1, 4)):
                pos = rnd.randrange(len(raw))
                if rnd.random() < 0.5:
                    raw[pos] = rnd.randrange(256)
                else:
                    raw[pos:pos + 4] = rnd.choice([0xFFFFFFFF, 0x80000000, max_data + 200]
                                                  ).to_bytes(4, "little")
            f = Framer("controller", max_data=max_data, staging=staging)
            f.hdgst, f.ddgst = bool(i & 1), bool(i & 2)
            try:
                f.feed(bytes(raw))
            except ProtocolError:
                pass
            del f
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < staging + max_data + (256 << 10)


def test_failed_framers_are_freed_without_the_cyclic_gc():
    """A failed framer (and its staging buffer) goes away as soon as nobody holds it: it does not
    keep the exception whose traceback refers back to it."""
    import gc
    import weakref

    gc.disable()
    try:
        refs, errors = [], []
        for _ in range(5):
            f = Framer("controller")
            refs.append(weakref.ref(f))
            try:
                f.feed(b"\x05" * 8)
            except ProtocolError as exc:
                errors.append((exc.fes, exc.fei))
            with pytest.raises(ProtocolError):
                f.feed(CMD)
            del f
        assert [r() for r in refs] == [None] * 5
        assert errors == [(INVALID, TYPE)] * 5
    finally:
        gc.enable()


def test_failed_framer_stays_failed():
    f = Framer("controller")
    err = _raises(f, _patch(CMD, hlen=1), INVALID, HLEN_)
    for attempt in (lambda: f.feed(CMD), lambda: f.get_buffer(), lambda: f.buffer_updated(0)):
        with pytest.raises(ProtocolError) as again:
            attempt()
        assert (str(again.value), again.value.fes, again.value.fei, again.value.header) == (
            str(err), err.fes, err.fei, err.header)
    # a PDU fed together with the bad one after it is still delivered by nothing: raise first
    g = Framer("controller")
    with pytest.raises(ProtocolError):
        g.feed(CMD + _patch(CMD, type=5))
    with pytest.raises(ProtocolError):
        g.feed(CMD)


def test_header_digest_error_stays_failed():
    f = Link(hdgst=True).framer("host")
    raw = bytearray(codec.encode(codec.capsule_resp(1, 0, hdgst=True)))
    raw[-1] ^= 1
    _raises(f, bytes(raw), Fes.HEADER_DIGEST_ERROR, int.from_bytes(raw[-4:], "little"))
    with pytest.raises(ProtocolError):
        f.feed(codec.encode(codec.capsule_resp(1, 0, hdgst=True)))


def test_constructor_arguments():
    with pytest.raises(ValueError):
        Framer("target")
    with pytest.raises(ValueError):
        Framer("host", staging=64)  # too small to hold one PDU header and make progress


def test_valid_flags_table_is_what_the_framer_enforces():
    """Each flag bit a type may not carry is rejected; each it may carry is accepted."""
    for receiver, types in RECEIVES.items():
        for t in types:
            for bit in range(8):
                flag = 1 << bit
                if flag & (PduFlags.HDGSTF | PduFlags.DDGSTF):
                    continue  # digest flags follow negotiation, tested above
                raw = {4: CMD, 5: RESP, 6: H2C, 7: C2H, 9: R2T, 0: codec.ic_req(),
                       1: codec.ic_resp(), 2: TERM_H2C, 3: TERM_C2H}[t]
                raw = _patch(raw, flags=raw[1] | flag | (PduFlags.LAST_PDU if flag ==
                                                         PduFlags.SUCCESS else 0))
                f = Framer(receiver)
                if flag & VALID_FLAGS[t]:
                    assert len(f.feed(raw)) == 1
                else:
                    _raises(f, raw, INVALID, FLAGS)
