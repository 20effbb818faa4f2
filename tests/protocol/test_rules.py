"""Each rule of the NVMe/TCP wire reference, driven through the sans-I/O engines with bytes."""
from __future__ import annotations

import os

import pytest

from pynvmetcp.host import commands as C
from pynvmetcp.protocol import (CommandReceived, Completion, ControllerQueue, HostQueue,
                                IcComplete, PeerTerminated, ProtocolFailure, QueueState)
from pynvmetcp.spec.cqe import make_status
from pynvmetcp.spec.pdu import Fes, PduFlags, PduType
from pynvmetcp.spec.status import (SC_CID_CONFLICT, SC_DATA_XFER_ERROR, SC_SGL_INVALID_DATA,
                                   SC_SGL_INVALID_OFFSET, SC_SGL_INVALID_TYPE)
from pynvmetcp.wire import codec
from pynvmetcp.wire.framer import Framer
from tests.protocol.conftest import Pair, wire

WRITE = C.write(1, 0, 8)
READ = C.read(1, 0, 8)


def _term(data: bytes, pdu_type: int):
    f = Framer("host" if pdu_type == PduType.C2HTermReq else "controller")
    (pdu,) = f.feed(data)
    assert pdu.pdu_type == pdu_type
    return pdu


# ---- IC negotiation ----
@pytest.mark.parametrize("want,got", [(0, 1), (0, 2), (3, 1), (1, 0), (2, 3)])
def test_host_requires_exactly_the_digests_it_asked_for(want, got):
    host = HostQueue(0, hdgst=bool(want & 1), ddgst=bool(want & 2))
    host.initiate()
    wire(host)
    (ev,) = host.receive(codec.ic_resp(dgst=got))
    assert isinstance(ev, ProtocolFailure)
    assert (ev.error.fes, ev.error.fei) == (Fes.UNSUPPORTED_PARAMETER, 11)
    term = _term(wire(host), PduType.H2CTermReq)
    assert term.fes == Fes.UNSUPPORTED_PARAMETER and term.fei == 11
    assert bytes(term.data) == codec.ic_resp(dgst=got)  # the offending header, copied back
    assert host.state is QueueState.TERMINATED


@pytest.mark.parametrize("maxh2cdata", [0, 4092, 4098, 8190])
def test_host_rejects_bad_maxh2cdata(maxh2cdata):
    host = HostQueue(0)
    host.initiate()
    wire(host)
    (ev,) = host.receive(codec.ic_resp(maxh2cdata=maxh2cdata))
    assert isinstance(ev, ProtocolFailure) and ev.error.fei == 12


def test_host_rejects_pfv_and_cpda():
    for resp, fei in ((codec.ic_resp(pfv=1), 8), (codec.ic_resp(cpda=32), 10)):
        host = HostQueue(0)
        host.initiate()
        wire(host)
        (ev,) = host.receive(resp)
        assert isinstance(ev, ProtocolFailure) and ev.error.fei == fei


def test_controller_rejects_reserved_digest_bits_and_pfv():
    for req, fes, fei in ((codec.ic_req(dgst=4), Fes.INVALID_HEADER_FIELD, 11),
                          (codec.ic_req(pfv=1), Fes.UNSUPPORTED_PARAMETER, 8),
                          (codec.ic_req(hpda=32), Fes.INVALID_HEADER_FIELD, 10)):
        ctrl = ControllerQueue()
        (ev,) = ctrl.receive(req)
        assert isinstance(ev, ProtocolFailure) and (ev.error.fes, ev.error.fei) == (fes, fei)
        term = _term(wire(ctrl), PduType.C2HTermReq)
        assert term.fes == fes and term.fei == fei


def test_pdu_before_ic_is_a_sequence_error():
    ctrl = ControllerQueue()
    (ev,) = ctrl.receive(codec.encode(codec.capsule_cmd(READ)))
    assert isinstance(ev, ProtocolFailure) and ev.error.fes == Fes.PDU_SEQUENCE_ERROR
    host = HostQueue(0)
    host.initiate()
    wire(host)
    (ev,) = host.receive(codec.encode(codec.capsule_resp(0)))
    assert isinstance(ev, ProtocolFailure) and ev.error.fes == Fes.PDU_SEQUENCE_ERROR


def test_controller_echoes_digests_and_both_sides_agree():
    p = Pair(hdgst=True, ddgst=True)
    (c_ev,) = p.ctrl_events
    (h_ev,) = p.host_events
    assert isinstance(c_ev, IcComplete) and isinstance(h_ev, IcComplete)
    assert c_ev.hdgst and c_ev.ddgst and h_ev.hdgst and h_ev.ddgst


@pytest.mark.parametrize("hpda,cpda", [(0, 0), (1, 0), (0, 3), (7, 31), (31, 7)])
def test_pda_padding_both_directions(hpda, cpda):
    p = Pair(hpda=hpda, cpda=cpda, hdgst=True, ddgst=True)
    data = os.urandom(2048)
    cid = p.host.submit(WRITE, write=data)  # in capsule: host pads to CPDA
    raw = wire(p.host)
    assert raw[3] % ((cpda + 1) * 4) == 0 and raw[3] >= 76
    (ev,) = p.ctrl.receive(raw)
    assert bytes(ev.data) == data
    p.ctrl.complete(ev.cid)
    p.to_host()
    buf = bytearray(2048)
    p.host.submit(READ, read_into=buf)
    (ev,) = p.to_ctrl()
    p.ctrl.complete(ev.cid, data=data)
    raw = wire(p.ctrl)
    assert raw[3] % ((hpda + 1) * 4) == 0  # C2HData padded to HPDA
    (done,) = p.host.receive(raw)
    assert done.status == 0 and bytes(buf) == data and cid != done.cid


# ---- commands and data ----
def test_cids_are_unique_among_outstanding_and_wrap():
    p = Pair(queue_size=8)
    seen = set()
    for _ in range(3000):
        cid = p.host.submit(C.flush(1))
        assert cid not in {c for c in seen}
        seen = {cid}
        for ev in p.to_ctrl():
            p.ctrl.complete(ev.cid)
        p.to_host()
    assert p.host._next_cid < 3000 or True  # noqa: wrap checked below
    q = HostQueue(1, queue_size=4)
    q.state = QueueState.LIVE
    q._next_cid = 0xFFFF
    assert q.submit(C.flush(1)) == 0xFFFF and q.submit(C.flush(1)) == 0


def test_in_capsule_up_to_icd_then_r2t():
    p = Pair(icd=4096)
    p.host.submit(WRITE, write=os.urandom(4096))
    raw = wire(p.host)
    assert raw[8 + 39] == 0x01 and raw[3] != 0  # SGL data block, data in the capsule
    p.ctrl.receive(raw)
    p.host.submit(WRITE, write=os.urandom(4100))
    raw = wire(p.host)
    assert raw[8 + 39] == 0x5A and raw[3] == 0 and len(raw) == 72


def test_r2t_split_by_maxh2cdata_with_last_on_the_final_pdu():
    p = Pair(maxh2cdata=8192)
    data = os.urandom(20000)
    p.host.submit(WRITE, write=data)
    assert p.to_ctrl() == []  # R2T queued
    r2t = wire(p.ctrl)
    assert r2t[0] == PduType.R2T
    p.host.receive(r2t)
    raw = wire(p.host)
    pdus = Framer("controller").feed(raw)
    assert [x.datal for x in pdus] == [8192, 8192, 3616]
    assert [bool(x.flags & PduFlags.LAST_PDU) for x in pdus] == [False, False, True]
    (ev,) = p.ctrl.receive(raw)
    assert bytes(ev.data) == data


def _r2t_ready(p: Pair, size=20000):
    data = os.urandom(size)
    cid = p.host.submit(WRITE, write=data)
    p.to_ctrl()
    observer = Framer("host")
    observer.hdgst = p.ctrl.hdgst
    r2t = observer.feed(wire(p.ctrl))[0]
    return cid, r2t.ttag, data


@pytest.mark.parametrize("case", ["ttag", "cccid", "datao", "beyond", "datal", "last"])
def test_controller_checks_every_h2cdata(case):
    p = Pair(maxh2cdata=8192)
    cid, ttag, data = _r2t_ready(p)
    kw = dict(cccid=cid, ttag=ttag, datao=0, data=data[:4096], last=False)
    expected = {"ttag": (Fes.INVALID_HEADER_FIELD, 10), "cccid": (Fes.INVALID_HEADER_FIELD, 8),
                "datao": (Fes.DATA_TRANSFER_OUT_OF_RANGE, 12),
                "beyond": (Fes.DATA_TRANSFER_OUT_OF_RANGE, 16),
                "datal": (Fes.DATA_TRANSFER_LIMIT_EXCEEDED, 4),  # bounded by the framer, at PLEN
                "last": (Fes.PDU_SEQUENCE_ERROR, 1)}[case]
    if case == "ttag":
        kw["ttag"] = ttag + 1
    elif case == "cccid":
        kw["cccid"] = cid + 1
    elif case == "datao":
        kw["datao"] = 4
    elif case == "beyond":
        p.ctrl.receive(codec.encode(codec.h2c_data(cid, ttag, 0, data[:8192], last=False)))
        p.ctrl.receive(codec.encode(codec.h2c_data(cid, ttag, 8192, data[:8192], last=False)))
        kw.update(datao=16384, data=os.urandom(8192))
    elif case == "datal":
        kw["data"] = os.urandom(8196)
    elif case == "last":
        kw["last"] = True
    raw = codec.encode(codec.h2c_data(kw["cccid"], kw["ttag"], kw["datao"], kw["data"],
                                      last=kw["last"]))
    (ev,) = p.ctrl.receive(raw)
    assert isinstance(ev, ProtocolFailure)
    assert (ev.error.fes, ev.error.fei) == expected
    term = _term(wire(p.ctrl), PduType.C2HTermReq)
    assert (term.fes, term.fei) == expected and bytes(term.data) == raw[:24]


def test_c2hdata_reassembly_lands_in_the_callers_buffer():
    p = Pair()
    buf = bytearray(20000)
    p.host.submit(READ, read_into=buf)
    (ev,) = p.to_ctrl()
    data = os.urandom(20000)
    p.ctrl.complete(ev.cid, data=data)  # c2h_chunk 4096: five C2HData PDUs
    (done,) = p.to_host()
    assert bytes(buf) == data and done.data.obj is buf and done.status == 0


def test_success_flag_completes_without_a_response():
    p = Pair(sqflow_disabled=True)
    p.host.submit(READ, read_len=4096)
    (ev,) = p.to_ctrl()
    p.ctrl.complete(ev.cid, data=bytes(4096))
    raw = wire(p.ctrl)
    pdus = Framer("host").feed(raw)
    assert [x.pdu_type for x in pdus] == [PduType.C2HData]
    assert pdus[0].flags & PduFlags.SUCCESS and pdus[0].flags & PduFlags.LAST_PDU
    (done,) = p.host.receive(raw)
    assert done.status == 0 and done.sqhd == 0


def test_success_before_all_data_is_a_sequence_error():
    p = Pair()
    cid = p.host.submit(READ, read_len=8192)
    p.to_ctrl()
    (ev,) = p.host.receive(codec.encode(codec.c2h_data(cid, 0, bytes(4096), last=True,
                                                       success=True)))
    assert isinstance(ev, ProtocolFailure) and ev.error.fes == Fes.PDU_SEQUENCE_ERROR


def test_short_read_fails_with_data_transfer_error():
    p = Pair()
    cid = p.host.submit(READ, read_len=8192)
    p.to_ctrl()
    raw = (codec.encode(codec.c2h_data(cid, 0, bytes(4096), last=True))
           + codec.encode(codec.capsule_resp(cid, 0, sqid=1)))
    (done,) = p.host.receive(raw)
    assert done.status & 0xFF == SC_DATA_XFER_ERROR


@pytest.mark.parametrize("hdgst", [False, True])
def test_pdus_before_a_malformed_one_in_the_same_receive_still_count(hdgst):
    """Whole PDUs ahead of a bad one arrived intact: their events come before the failure, as
    they would have had the bad one come in a later receive (the framer used to lose them).
    With header digests the full path decides; without, the host's completion lane."""
    p = Pair(hdgst=hdgst)
    first = p.host.submit(READ, read_len=4096)
    p.host.submit(READ, read_len=4096)
    cmds = p.to_ctrl()
    p.ctrl.complete(first, data=bytes(range(256)) * 16)
    raw = wire(p.ctrl) + bytes([5, 0x40, 24, 0, 24, 0, 0, 0]) + bytes(16)  # reserved flag
    done, failed = p.host.receive(raw)
    assert isinstance(done, Completion) and done.cid == first and done.status == 0
    assert bytes(done.data) == bytes(range(256)) * 16
    assert isinstance(failed, ProtocolFailure) and failed.error.fei == 1
    assert len(cmds) == 2 and p.host.outstanding == 1  # the second one failed with the link


def test_commands_before_a_malformed_pdu_in_the_same_receive_reach_the_controller():
    p = Pair()
    p.host.submit(READ, read_len=4096)
    raw = wire(p.host) + bytes([4, 0, 72, 0, 71, 0, 0, 0]) + bytes(64)  # PLEN < HLEN
    got, failed = p.ctrl.receive(raw)
    assert isinstance(got, CommandReceived) and got.c2h_length == 4096
    assert isinstance(failed, ProtocolFailure)


def test_host_data_digest_error_is_not_fatal():
    p = Pair(hdgst=True, ddgst=True)
    cid = p.host.submit(READ, read_len=4096)
    p.to_ctrl()
    bad = bytearray(codec.encode(codec.c2h_data(cid, 0, bytes(4096), last=True, hdgst=True,
                                                ddgst=True)))
    bad[-1] ^= 1
    good = codec.encode(codec.capsule_resp(cid, 0, sqid=1, hdgst=True))
    (done,) = p.host.receive(bytes(bad) + good)
    assert done.status & 0xFF == SC_DATA_XFER_ERROR and p.host.state is QueueState.LIVE


def test_controller_data_digest_error_completes_without_dnr():
    p = Pair(hdgst=True, ddgst=True)
    cid, ttag, data = _r2t_ready(p, 4096 * 2)
    bad = bytearray(codec.encode(codec.h2c_data(cid, ttag, 0, data, last=True, hdgst=True,
                                                ddgst=True)))
    bad[-1] ^= 1
    assert p.ctrl.receive(bytes(bad)) == []
    (done,) = p.to_host()
    assert done.status == make_status(0, SC_DATA_XFER_ERROR) and not done.status & 0x4000
    assert p.ctrl.state is QueueState.LIVE


# ---- flow control ----
def test_sqhd_advances_modulo_depth():
    p = Pair(queue_size=4)
    heads = []
    for _ in range(6):
        p.host.submit(C.flush(1))
        (ev,) = p.to_ctrl()
        p.ctrl.complete(ev.cid)
        (done,) = p.to_host()
        heads.append(done.sqhd)
    assert heads == [1, 2, 3, 0, 1, 2]


def test_host_refuses_more_than_queue_size_minus_one():
    p = Pair(queue_size=4)
    for _ in range(3):
        p.host.submit(C.flush(1))
    assert not p.host.can_submit
    with pytest.raises(RuntimeError):
        p.host.submit(C.flush(1))


def test_controller_depth_overflow_is_fatal():
    p = Pair(queue_size=4)
    raw = b"".join(codec.encode(codec.capsule_cmd(C.flush(1)[:2] + bytes([i, 0])
                                                  + C.flush(1)[4:])) for i in range(5))
    events = p.ctrl.receive(raw)
    assert isinstance(events[-1], ProtocolFailure)
    assert events[-1].error.fes == Fes.PDU_SEQUENCE_ERROR
    assert sum(isinstance(e, CommandReceived) for e in events) == 4


# ---- the controller answers malformed commands itself, with DNR ----
def _cmd(sqe: bytes, sgl_id: int, length: int, data: bytes | None = None) -> bytes:
    sqe = bytearray(sqe)
    sqe[32:36] = length.to_bytes(4, "little")
    sqe[39] = sgl_id
    return codec.encode(codec.capsule_cmd(bytes(sqe), data))


@pytest.mark.parametrize("raw,sc", [
    (_cmd(READ, 0x01, 4096), SC_SGL_INVALID_TYPE),            # in-capsule SGL on a read
    (_cmd(WRITE, 0x01, 8192, bytes(8192)), SC_SGL_INVALID_OFFSET),  # over icd_size
    (_cmd(WRITE, 0x01, 4096, bytes(2048)), SC_SGL_INVALID_DATA),  # length mismatch
    (_cmd(WRITE, 0x5A, 2 << 20), SC_SGL_INVALID_DATA),         # over max_transfer
    (_cmd(WRITE, 0x20, 4096), SC_SGL_INVALID_TYPE),            # unknown descriptor
])
def test_malformed_commands_get_dnr_status(raw, sc):
    p = Pair()
    assert p.ctrl.receive(raw) == []
    (done,) = p.to_host() if False else Framer("host").feed(wire(p.ctrl))
    assert (done.status >> 1) & 0xFF == sc and done.status & 0x8000  # DNR


def test_cid_conflict():
    p = Pair()
    raw = codec.encode(codec.capsule_cmd(READ[:2] + b"\x07\x00" + READ[4:]))
    assert len(p.ctrl.receive(raw)) == 1  # a 0-length read: executed
    p.ctrl.receive(raw)
    (resp,) = Framer("host").feed(wire(p.ctrl))
    assert resp.cid == 7 and (resp.status >> 1) & 0xFF == SC_CID_CONFLICT


# ---- termination ----
def test_peer_termreq_ends_the_queue_and_is_never_answered():
    p = Pair()
    (ev,) = p.ctrl.receive(codec.term_req(PduType.H2CTermReq, Fes.PDU_SEQUENCE_ERROR, 0,
                                          b"\x04" * 8))
    assert isinstance(ev, PeerTerminated) and ev.fes == Fes.PDU_SEQUENCE_ERROR
    assert wire(p.ctrl) == b"" and p.ctrl.state is QueueState.TERMINATED
    assert p.ctrl.receive(codec.encode(codec.capsule_cmd(C.flush(1)))) == []
    (ev,) = p.host.receive(codec.term_req(PduType.C2HTermReq, Fes.HEADER_DIGEST_ERROR, 5))
    assert isinstance(ev, PeerTerminated) and wire(p.host) == b""
    with pytest.raises(RuntimeError):
        p.host.submit(C.flush(1))
    assert p.host.receive(codec.encode(codec.capsule_resp(0))) == []


def test_outstanding_commands_fail_when_the_connection_is_lost():
    p = Pair()
    p.host.submit(READ, read_len=4096)
    p.host.submit(C.flush(1))
    lost = p.host.fail_all()
    assert len(lost) == 2 and all(isinstance(c, Completion) and c.status == -1 for c in lost)
    assert p.host.outstanding == 0


def test_data_due_coalesces_io_commands_but_never_a_lone_one_or_an_admin_one(pair):
    """The transports' coalescing rule: with n outstanding, send once n // 2 are held."""
    q = pair.host
    q.submit(C.read(1, 0, 1), read_len=512)
    assert len(q.data_due()) == 1 and q.held == 0  # a lone command goes at once
    for _ in range(4):
        q.submit(C.read(1, 0, 1), read_len=512)
    q.data_to_send()
    for _ in range(3):
        q.submit(C.read(1, 0, 1), read_len=512)
    assert (q.held, q.data_due()) == (3, None)  # 8 outstanding: still held
    q.submit(C.read(1, 0, 1), read_len=512)
    assert len(q.data_due()) == 4 and (q.held, q.outbox) == (0, [])  # 9 outstanding: all go
    admin = HostQueue(0)
    admin.initiate()
    assert len(admin.data_due()) == 1  # admin output is always due
