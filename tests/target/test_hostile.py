"""Hostile PDUs over a real socket: a C2HTermReq with FES/FEI, then only that connection closes."""
from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pynvmetcp.host import commands as C
from pynvmetcp.spec.pdu import Fes, PduType
from pynvmetcp.wire import codec
from pynvmetcp.wire.crc import crc32c
from tests.target.rawhost import HOSTID, HOSTNQN, RawQueue, admin, decode_pdus, io_queue
from tests.target.support import NQN, running

ICREQ = codec.ic_req()


def _connected_sqe(sqe: bytes) -> bytes:
    return codec.encode(codec.capsule_cmd(sqe))


def _connect_capsule() -> bytes:
    from pynvmetcp.spec.opcodes import SglId

    sqe = bytearray(C.connect(0, 31))
    data = C.connect_data(HOSTID, 0xFFFF, NQN, HOSTNQN)
    struct.pack_into("<QI3xB", sqe, 24, 0, len(data), SglId.DATA_BLOCK_OFFSET)
    return codec.encode(codec.capsule_cmd(bytes(sqe), data))


def termreq_of(raw: RawQueue, payload: bytes) -> tuple:
    """Send ``payload``; return (FES, FEI, copied header) of the TermReq the target answers."""
    raw.send_raw(payload)
    out = raw.read_until_closed()
    pdus = decode_pdus(out)
    assert pdus, "no TermReq before the close"
    term = pdus[-1]
    assert term.pdu_type == PduType.C2HTermReq
    assert term.plen == 24 + len(term.data) <= 152 and term.pdo == 0 and term.flags == 0
    return term.fes, term.fei, bytes(term.data)


@pytest.fixture
def bystander(target):
    """A working association on another connection that must not notice anything."""
    a, cntlid = admin(target.port, NQN)
    io = io_queue(target.port, NQN, cntlid)
    io.ok(C.write(1, 0, 1), write=b"\x77" * 512)
    yield io
    assert bytes(io.ok(C.read(1, 0, 1), read_len=512).data) == b"\x77" * 512
    assert a.cmd(C.keep_alive()).status == 0


def fresh(target, ic: bool = False) -> RawQueue:
    return RawQueue(target.port, ic=ic)


def test_wrong_direction_pdu_type(target, bystander):
    resp = codec.encode(codec.capsule_resp(0))
    fes, fei, hdr = termreq_of(fresh(target), resp)
    assert (fes, fei) == (Fes.INVALID_HEADER_FIELD, 0) and hdr[:8] == resp[:8]


def test_unknown_pdu_type(target, bystander):
    bad = bytes([0x0A, 0, 24, 0]) + struct.pack("<I", 24) + bytes(16)
    assert termreq_of(fresh(target), bad)[:2] == (Fes.INVALID_HEADER_FIELD, 0)


def test_capsule_before_icreq_is_a_sequence_error(target, bystander):
    assert termreq_of(fresh(target), _connect_capsule())[0] == Fes.PDU_SEQUENCE_ERROR


@pytest.mark.parametrize("icreq,fes,fei", [
    (codec.ic_req(pfv=1), Fes.UNSUPPORTED_PARAMETER, 8),
    (codec.ic_req(hpda=32), Fes.INVALID_HEADER_FIELD, 10),
    (codec.ic_req(dgst=0x04), Fes.INVALID_HEADER_FIELD, 11),
])
def test_bad_icreq_fields(target, bystander, icreq, fes, fei):
    assert termreq_of(fresh(target), icreq)[:2] == (fes, fei)


def test_bad_flags_hlen_pdo_plen_in_field_order(target, bystander):
    cmd = bytearray(_connect_capsule())
    for offset, value, fei in [(1, 0x04, 1), (2, 64, 2), (3, 70, 3)]:
        bad = bytearray(cmd)
        bad[offset] = value
        raw = fresh(target, ic=True)
        assert termreq_of(raw, bytes(bad))[:2] == (Fes.INVALID_HEADER_FIELD, fei)
    bad = bytearray(cmd)
    struct.pack_into("<I", bad, 4, 72)  # plen leaves no room for the data PDO points at
    assert termreq_of(fresh(target, ic=True), bytes(bad))[:2] == (Fes.INVALID_HEADER_FIELD, 4)


def test_huge_plen_is_bounded_before_allocating(target, bystander):
    bad = bytearray(_connect_capsule())
    struct.pack_into("<I", bad, 4, 0xFFFFFFF0)
    fes, fei, _ = termreq_of(fresh(target, ic=True), bytes(bad[:72]))
    assert (fes, fei) == (Fes.DATA_TRANSFER_LIMIT_EXCEEDED, 4)


def test_second_icreq_on_a_live_queue(target, bystander):
    assert termreq_of(fresh(target, ic=True), ICREQ)[0] == Fes.PDU_SEQUENCE_ERROR


def test_header_digest_error_reports_the_received_digest(target, bystander):
    raw = RawQueue(target.port, hdgst=True)
    parts = codec.capsule_cmd(C.keep_alive(), hdgst=True)
    pdu = bytearray(codec.encode(parts))
    good = struct.unpack_from("<I", pdu, 72)[0]
    struct.pack_into("<I", pdu, 72, good ^ 0xFFFF)
    fes, fei, hdr = termreq_of(raw, bytes(pdu))
    assert (fes, fei) == (Fes.HEADER_DIGEST_ERROR, good ^ 0xFFFF)
    assert hdr == bytes(pdu[:72])  # the offending header, without its digest


def test_missing_digest_flag_after_negotiation(target, bystander):
    raw = RawQueue(target.port, hdgst=True)
    assert termreq_of(raw, _connected_sqe(C.keep_alive()))[:2] == (Fes.INVALID_HEADER_FIELD, 1)


def test_h2c_data_with_an_unknown_ttag(target, bystander):
    raw = RawQueue(target.port)
    pdu = codec.encode(codec.h2c_data(1, 0x55, 0, bytes(512), last=True))
    assert termreq_of(raw, pdu)[:2] == (Fes.INVALID_HEADER_FIELD, 10)


def test_h2c_data_out_of_order_and_beyond_the_r2t(target, bystander):
    q, cntlid = admin(target.port, NQN)
    io = RawQueue(target.port, 1)
    io.connect(NQN, cntlid=cntlid)
    io.engine.icd_size = 0  # force R2T
    sqe = bytearray(C.write(1, 0, 8))
    struct.pack_into("<H", sqe, 2, 7)
    struct.pack_into("<QI3xB", sqe, 24, 0, 4096, 0x5A)
    io.send_raw(codec.encode(codec.capsule_cmd(bytes(sqe))))
    io.sock.settimeout(5)
    r2t = decode_pdus(io.sock.recv(4096))[0]
    assert (r2t.pdu_type, r2t.cccid, r2t.r2to, r2t.r2tl) == (PduType.R2T, 7, 0, 4096)
    pdu = codec.encode(codec.h2c_data(7, r2t.ttag, 512, bytes(512), last=False))
    assert termreq_of(io, pdu)[:2] == (Fes.DATA_TRANSFER_OUT_OF_RANGE, 12)


def test_host_termreq_closes_without_an_answer(target, bystander):
    raw = RawQueue(target.port)
    raw.send_raw(codec.term_req(PduType.H2CTermReq, Fes.PDU_SEQUENCE_ERROR))
    assert raw.read_until_closed() == b""


def test_garbage_on_many_connections_at_once(target, bystander):
    conns = [socket.create_connection(("127.0.0.1", target.port)) for _ in range(20)]
    for i, s in enumerate(conns):
        s.sendall(bytes([i * 13 % 256]) * (100 + i))
    for s in conns:
        s.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(junk=st.binary(min_size=8, max_size=300), after_ic=st.booleans())
def test_random_bytes_never_harm_the_target(junk, after_ic):
    """Arbitrary bytes get a TermReq (or nothing, if incomplete) and never break others."""
    with running() as t:
        a, cntlid = admin(t.port, NQN)
        s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
        s.sendall((ICREQ if after_ic else b"") + junk)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        for pdu in decode_pdus(data[128:] if after_ic else data):
            assert pdu.pdu_type in (PduType.C2HTermReq, PduType.CapsuleResp, PduType.R2T,
                                    PduType.C2HData)
        assert a.cmd(C.keep_alive()).status == 0


def test_crc_helper_is_castagnoli():
    assert crc32c(b"123456789") == 0xE3069283


def test_a_connection_that_never_connects_is_closed():
    from tests.target.support import make_config

    cfg = make_config()
    cfg.connect_timeout = 0.3
    with running(cfg) as t:
        idle = socket.create_connection(("127.0.0.1", t.port), timeout=5)
        ic_only = RawQueue(t.port)  # ICReq done, but no Connect
        a, _ = admin(t.port, NQN)
        assert idle.recv(100) == b""
        assert ic_only.read_until_closed() == b""
        assert a.cmd(C.keep_alive()).status == 0  # connected queues are not affected
