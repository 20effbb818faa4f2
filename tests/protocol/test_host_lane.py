"""The host queue's completion lane must never change what the queue does.

``HostQueue.buffer_updated`` completes plain C2HData and CapsuleResp PDUs by value and leaves
everything else, from the first PDU it does not pass, to the full path (framer → PDU record →
``_handle``). A reference engine here routes every receive through the full path only; both are
fed the same controller bytes — well-formed answers and answers broken in each field the lane
reads — in the same random segmentation, and must give the same events, the same bytes to send
(TermReqs), the same state and the same data in the callers' buffers.
"""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pynvmetcp.host import commands as C
from pynvmetcp.protocol import HostQueue
from pynvmetcp.protocol.events import Completion, ProtocolFailure
from pynvmetcp.protocol.queue import _QueueEngine
from pynvmetcp.wire import codec

from .conftest import Pair, wire


class FullPath(HostQueue):
    """The reference: the same engine without the lane."""

    buffer_updated = _QueueEngine.buffer_updated


# Bytes per read command: 20000 spans several receives; 40000 is more than half of staging and
# 150000 more than all of it, so the lane receives their payloads in place.
READS = (512, 4096, 8192, 20000, 40000, 150000)
C2H, RESP = codec.XFER, codec.RESP


def _live(cls, sqflow_disabled: bool) -> HostQueue:
    return Pair(host_cls=cls, sqflow_disabled=sqflow_disabled).host


def _submit(q: HostQueue, kinds: list[int]) -> list[tuple[int, bytearray | None]]:
    """One command per kind: a read of READS[k], or (k == -1) a command without data."""
    out = []
    for i, k in enumerate(kinds):
        if k < 0:
            out.append((q.submit(C.flush(1)), None))
        else:
            buf = bytearray(READS[k])
            out.append((q.submit(C.read(1, i * 64, READS[k] // 512), read_into=buf), buf))
    q.data_to_send()
    return out


# One answer step: (what, command index, variant). Variants of a C2HData: 0 all of the data
# at offset 0 with LAST; 1 with SUCCESS too; 2 in two PDUs; 3 wrong offset; 4 beyond the
# buffer; 5 SUCCESS before the end; 6 DATAL ≠ PLEN − 24; 7 reserved flag bit; 8 PDO 28; 9 an
# unknown CCCID; 10 PLEN beyond DATAL (a CapsuleResp inside). Of a CapsuleResp: 0 success; 1 an error status; 2 a
# nonzero flag; 3 PLEN 28; 4 an unknown CID; 5 DW0/DW1/SQHD set; 6 DW1 alone; 7 SQID 2.
DATA_VARIANTS, RESP_VARIANTS = 11, 8
STEPS = st.lists(st.tuples(st.sampled_from(("data", "resp")), st.integers(0, 5),
                           st.integers(0, DATA_VARIANTS - 1)), min_size=1, max_size=14)


_BYTES = bytes(range(256))


def _pattern(n: int, seed: int) -> bytes:
    start = seed * 7 & 0xFF
    return (_BYTES[start:] + _BYTES * (n // 256 + 1))[:n]


def _c2h(cid: int, offset: int, data: bytes, flags: int = 0x04, *, pdo: int = 24,
         datal: int | None = None) -> bytes:
    n = len(data) if datal is None else datal
    pad = bytes(pdo - 24)
    return C2H.pack(7, flags, 24, pdo, pdo + len(data), cid, 0, offset, n) + pad + data


def _answer(steps, cmds) -> bytes:
    out = bytearray()
    for what, i, variant in steps:
        cid, buf = cmds[i % len(cmds)]
        size = len(buf) if buf is not None else 4096
        data = _pattern(size, i + variant)
        if what == "data":
            if variant == 0:
                out += _c2h(cid, 0, data)
            elif variant == 1:
                out += _c2h(cid, 0, data, 0x0C)
            elif variant == 2:
                half = size // 2
                out += _c2h(cid, 0, data[:half], 0) + _c2h(cid, half, data[half:])
            elif variant == 3:
                out += _c2h(cid, 512, data[:512])
            elif variant == 4:
                out += _c2h(cid, 0, data + b"\x01" * 512)
            elif variant == 5:
                out += _c2h(cid, 0, data[:512], 0x0C)
            elif variant == 6:
                out += _c2h(cid, 0, data, datal=size - 4)
            elif variant == 7:
                out += _c2h(cid, 0, data, 0x44)
            elif variant == 8:
                out += _c2h(cid, 0, data, pdo=28)
            elif variant == 9:
                out += _c2h(0x7777, 0, data)
            else:  # a successful CapsuleResp for it, inside the C2HData
                tail = RESP.pack(5, 0, 24, 0, 24, 0, 0, 0, 1, cid, 0)
                out += _c2h(cid, 0, data + tail, datal=size)
        else:
            fields = dict(flags=0, plen=24, cid=cid, status=0, dw0=0, dw1=0, sqhd=0, sqid=1)
            if variant == 1:
                fields["status"] = 0x0281 << 1 | 1
            elif variant == 2:
                fields["flags"] = 0x04
            elif variant == 3:
                fields["plen"] = 28
            elif variant == 4:
                fields["cid"] = 0x6666
            elif variant == 5:
                fields.update(dw0=0xDEADBEEF, dw1=7, sqhd=3)
            elif variant == 6:
                fields.update(dw1=7)
            elif variant == 7:
                fields.update(sqid=2)
            out += RESP.pack(5, fields["flags"], 24, 0, fields["plen"], fields["dw0"],
                             fields["dw1"], fields["sqhd"], fields["sqid"], fields["cid"],
                             fields["status"])
            if fields["plen"] == 28:
                out += bytes(4)
    return bytes(out)


def _feed(q: HostQueue, stream: bytes, cuts: list[int]) -> list:
    """``stream`` as a socket would deliver it in pieces of the given sizes (recv_into)."""
    events = []
    pos = 0
    sizes = iter(cuts)
    while pos < len(stream) and q.state.value != "terminated":
        buf = q.get_buffer()
        n = min(len(buf), len(stream) - pos, next(sizes, len(stream)))
        buf[:n] = stream[pos:pos + n]
        events += q.buffer_updated(n)
        pos += n
    return events


def _seen(events) -> list:
    """Events compared by value: a successful completion's data by content, a failure by its
    report. A failed read's buffer is not compared: its content is undefined, and the full path
    differs there — its framer decodes a receive's PDUs before the engine handles them, so the
    payload of a C2HData that follows a command's early CapsuleResp in the same receive still
    lands in that command's buffer; the lane stops at that PDU and the full path then finds it
    for a command no longer outstanding."""
    out = []
    for ev in events:
        if isinstance(ev, Completion):
            data = bytes(ev.data) if ev.data is not None and not ev.status else None
            out.append(ev._replace(data=data, context=None))
        elif isinstance(ev, ProtocolFailure):
            err = ev.error
            out.append(("failure", str(err), err.fes, err.fei, err.header))
        else:
            out.append(ev)
    return out


@settings(max_examples=300, deadline=None)
@given(kinds=st.lists(st.integers(-1, len(READS) - 1), min_size=1, max_size=6), steps=STEPS,
       cuts=st.lists(st.integers(1, 9000), max_size=12), sqflow_disabled=st.booleans())
def test_the_lane_and_the_full_path_agree(kinds, steps, cuts, sqflow_disabled):
    lane, full = _live(HostQueue, sqflow_disabled), _live(FullPath, sqflow_disabled)
    lane_cmds, full_cmds = _submit(lane, kinds), _submit(full, kinds)
    assert [c for c, _ in lane_cmds] == [c for c, _ in full_cmds]
    stream = _answer(steps, lane_cmds)
    seen = _seen(_feed(lane, stream, cuts))
    assert seen == _seen(_feed(full, stream, cuts))
    assert [bytes(b) for b in lane.data_to_send()] == [bytes(b) for b in full.data_to_send()]
    assert (lane.state, lane.sqhd, sorted(lane._cmds)) == (full.state, full.sqhd,
                                                            sorted(full._cmds))
    assert seen or lane.state.value != "terminated"  # a failure is always reported


@pytest.mark.parametrize("cut", [None, 24, 25, 2000, 4119, 4120])
def test_the_lane_completes_a_plain_read_without_the_full_path(monkeypatch, cut):
    """The common answer really takes the lane (else the comparison above proves nothing),
    also when a receive ends inside its C2HData: a small one waits in staging for the rest.
    (A receive ending inside a header goes to the framer, which judges its first fields at
    once, so that a peer that stops there is still answered.)"""
    q = _live(HostQueue, False)
    (cid, buf), = _submit(q, [1])
    monkeypatch.setattr(_QueueEngine, "buffer_updated",
                        lambda *a: (_ for _ in ()).throw(AssertionError("full path taken")))
    stream = _c2h(cid, 0, _pattern(4096, 1)) + codec.encode(codec.capsule_resp(cid, sqid=1))
    done, = _feed(q, stream, [cut or len(stream), len(stream)])
    assert done.cid == cid and done.status == 0 and bytes(buf) == _pattern(4096, 1)


@pytest.mark.parametrize("size,cut", [(65536, 65536), (65536, 60000), (40960, 40000),
                                      (32768, 30000)])
def test_a_large_c2hdata_cut_near_its_end_leaves_room_to_receive(size, cut):
    """Only a C2HData that fits in half of staging waits there whole; a larger one whose rest
    is small goes the framer's way (else staging fills with it and nothing can be received)."""
    q = _live(HostQueue, False)
    (cid, buf), = _submit_size(q, size)
    stream = _c2h(cid, 0, _pattern(size, 3)) + codec.encode(codec.capsule_resp(cid, sqid=1))
    events, pos, sizes = [], 0, iter([cut])
    while pos < len(stream):
        room = q.get_buffer()
        assert len(room), "no room to receive"
        n = min(len(room), len(stream) - pos, next(sizes, len(stream)))
        room[:n] = stream[pos:pos + n]
        events += q.buffer_updated(n)
        pos += n
    done, = events
    assert done.cid == cid and done.status == 0 and bytes(buf) == _pattern(size, 3)


@pytest.mark.parametrize("size", [40000, 128 << 10, 150000])
@pytest.mark.parametrize("cuts", [[24], [25, 9000], [4120], [4120, -100], [9000, -8192],
                                  [100, -8191, 3], [24, -1]])
@pytest.mark.parametrize("success", [False, True])
@pytest.mark.parametrize("scatter", [False, True])
def test_a_large_read_received_in_place_by_the_lane_agrees_with_the_full_path(size, cuts,
                                                                              success, scatter):
    """A large C2HData cut after its header is finished by the lane: the rest of its payload
    is received straight into the read's buffer while at least DIRECT_MIN of it is missing,
    through staging after that, and the read completes by value — the same events, data and
    state as the full path gives, with no C2HData going the full path (a negative cut: that
    many bytes left of the payload; a receive that ends inside a later header still goes to
    the framer, as in the test above). With ``scatter`` the receives use ``payload_buffers``
    where offered, as the blocking host does (recvmsg_into), else ``get_buffer()``."""
    lane, full = _live(HostQueue, False), _live(FullPath, False)
    lane.scatter = scatter
    (big, lane_buf), = _submit_size(lane, size)
    (_, full_buf), = _submit_size(full, size)
    small = [(q.submit(C.read(1, 8, 8), read_into=bytearray(4096))) for q in (lane, full)]
    lane.data_to_send(), full.data_to_send()
    flags = 0x0C if success else 0x04
    stream = _c2h(big, 0, _pattern(size, 5), flags)
    if not success:
        stream += codec.encode(codec.capsule_resp(big, sqid=1))
    stream += _c2h(small[0], 0, _pattern(4096, 6)) + codec.encode(
        codec.capsule_resp(small[0], sqid=1))
    sizes = [c if c > 0 else 24 + size + c - sum(cuts[:i]) for i, c in enumerate(cuts)]
    in_place = []
    events, pos = [], 0
    pieces = iter(sizes)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HostQueue, "_c2h_data",
                   lambda *a: (_ for _ in ()).throw(AssertionError("full path taken")))
        mp.setattr(lane.framer, "data_sink",
                   lambda *a: (_ for _ in ()).throw(AssertionError("full path taken")))
        while pos < len(stream):
            assert scatter or lane.payload_buffers is None  # offered only when taken
            plan = lane.payload_buffers or [lane.get_buffer()]
            in_place.append(plan[0].obj is lane_buf)
            n = min(sum(map(len, plan)), len(stream) - pos, next(pieces, len(stream)))
            _receive_into(plan, stream[pos:pos + n])
            events += lane.buffer_updated(n)
            pos += n
    assert _seen(events) == _seen(_feed(full, stream, sizes))
    assert [c.cid for c in events] == [big, small[0]] and not any(c.status for c in events)
    assert bytes(lane_buf) == bytes(full_buf) == _pattern(size, 5)
    assert (lane.state, lane.sqhd, lane._cmds) == (full.state, full.sqhd, {})
    assert any(in_place)  # the payload's rest went straight into the read's buffer
    assert lane.get_buffer == lane.framer.get_buffer


def _receive_into(plan: list, data: bytes) -> None:
    """``data`` written into the buffers in order, as ``recvmsg_into`` fills them."""
    for buf in plan:
        k = min(len(buf), len(data))
        buf[:k] = data[:k]
        data = data[k:]


def test_one_receive_ends_a_large_payload_and_brings_what_follows():
    """While the lane fills a payload, ``payload_buffers`` offers the read's rest and staging
    after it: one receive then ends the payload and takes the CapsuleResp and the next read's
    header (two with ``get_buffer()``, which is the read's buffer alone)."""
    q = _live(HostQueue, False)
    q.scatter = True  # as the blocking host's queue says
    (big, buf), = _submit_size(q, 128 << 10)
    nxt = q.submit(C.read(1, 8, 8), read_into=bytearray(4096))
    q.data_to_send()
    assert q.payload_buffers is None
    stream = (_c2h(big, 0, _pattern(128 << 10, 7)) + codec.encode(codec.capsule_resp(big, sqid=1))
              + _c2h(nxt, 0, _pattern(4096, 8)) + codec.encode(codec.capsule_resp(nxt, sqid=1)))
    q.get_buffer()[:100] = stream[:100]
    assert q.buffer_updated(100) == []
    rest, window = q.payload_buffers
    assert rest.obj is buf and len(rest) == (128 << 10) - 76 and len(window) >= 48
    _receive_into([rest, window], stream[100:100 + len(rest) + 48])
    done, = q.buffer_updated(len(rest) + 48)  # the read, and the next one's header taken
    assert done.cid == big and done.status == 0 and bytes(buf) == _pattern(128 << 10, 7)
    assert q.payload_buffers is None and q.get_buffer == q.framer.get_buffer
    tail = stream[100 + len(rest) + 48:]
    q.get_buffer()[:len(tail)] = tail
    done, = q.buffer_updated(len(tail))
    assert done.cid == nxt and done.status == 0


def test_small_reads_after_a_large_one_receive_into_all_of_staging_again():
    """A 128 KiB payload is received in place and the headers after it through a 4 KiB
    window; once payloads come through staging again (4 KiB reads, cut or whole, taken by the
    lane) receives use the whole buffer, else each 4 KiB answer took two receives."""
    q = _live(HostQueue, False)
    (big, _), = _submit_size(q, 128 << 10)
    small = [q.submit(C.read(1, 8 * i, 8), read_into=bytearray(4096)) for i in range(14)]
    q.data_to_send()
    stream = _c2h(big, 0, _pattern(128 << 10, 4)) + codec.encode(codec.capsule_resp(big, sqid=1))
    for cid in small:
        stream += _c2h(cid, 0, _pattern(4096, cid)) + codec.encode(codec.capsule_resp(cid, sqid=1))
    done, pos = [], 0
    while pos < len(stream):
        room = q.get_buffer()
        n = min(len(room), len(stream) - pos)
        room[:n] = stream[pos:pos + n]
        done += q.buffer_updated(n)
        pos += n
    assert [c.cid for c in done] == [big, *small] and all(c.status == 0 for c in done)
    assert len(q.get_buffer()) == len(q.framer.staging)


def _submit_size(q: HostQueue, size: int) -> list[tuple[int, bytearray]]:
    buf = bytearray(size)
    cid = q.submit(C.read(1, 0, size // 512), read_into=buf)
    q.data_to_send()
    return [(cid, buf)]


def test_a_link_with_digests_never_takes_the_lane(monkeypatch):
    p = Pair(hdgst=True)
    full = []
    monkeypatch.setattr(_QueueEngine, "buffer_updated",
                        lambda q, n, real=_QueueEngine.buffer_updated: full.append(n) or real(q, n))
    cid = p.host.submit(C.read(1, 0, 8), read_len=4096)
    p.to_ctrl()
    p.ctrl.complete(cid, data=_pattern(4096, 2))
    done, = p.to_host()
    assert done.status == 0 and bytes(done.data) == _pattern(4096, 2)
    assert full and all(full)  # every received byte went the full way


@settings(max_examples=200, deadline=None)
@given(sqe=st.binary(min_size=64, max_size=64), length=st.integers(0, 1 << 20),
       hdgst=st.booleans())
def test_submit_packs_the_capsule_the_codec_builds(sqe, length, hdgst):
    """``submit`` packs a command without data in one call; the bytes must be the codec's
    CapsuleCmd of the SQE with its CID, PSDT and transport SGL1 filled in."""
    q = Pair(hdgst=hdgst).host
    cid = q.submit(sqe, read_len=length)
    want = bytearray(sqe)
    want[1] |= 0x40
    struct.pack_into("<H", want, 2, cid)
    struct.pack_into("<QI3xB", want, 24, 0, length, 0x5A)  # SGL1: transport data block
    assert wire(q) == codec.encode(codec.capsule_cmd(bytes(want), hdgst=hdgst))


@settings(max_examples=200, deadline=None)
@given(opcode=st.sampled_from([0x02, 0x86]),  # controller-to-host opcodes (bits 1:0 = 10)
       nsid=st.integers(0, 0xFFFFFFFF),
       slba=st.integers(0, (1 << 64) - 1), nlb=st.integers(1, 1 << 16),
       blocks=st.integers(1, 64), hdgst=st.booleans())
def test_submit_read_sends_what_submit_sends_for_the_same_sqe(opcode, nsid, slba, nlb, blocks,
                                                            hdgst):
    """``submit_read`` packs the capsule from the read's values; it must be byte for byte the
    capsule ``submit`` sends for the SQE ``commands`` builds (SLBA, 0's based NLB, the rest 0),
    and the command must complete into the caller's buffer the same way."""
    by_values, by_sqe = Pair(hdgst=hdgst), Pair(hdgst=hdgst)
    a, b = bytearray(512 * blocks), bytearray(512 * blocks)
    cid = by_values.host.submit_read(opcode, nsid, slba, nlb, a, "ctx")
    sqe = bytearray(C.read(nsid, slba, nlb))
    sqe[0] = opcode
    assert by_sqe.host.submit(bytes(sqe), read_into=b, context="ctx") == cid
    sent = wire(by_values.host)
    assert sent == wire(by_sqe.host)
    for p in (by_values, by_sqe):
        p.ctrl.receive(sent)
        p.ctrl.complete(cid, data=_pattern(len(a), 7))
    (one,), (two,) = by_values.to_host(), by_sqe.to_host()
    assert one == two and one.data.obj is a and bytes(a) == _pattern(len(a), 7)


def test_submit_read_refuses_what_submit_refuses():
    q = Pair().host
    with pytest.raises(ValueError, match="writable"):
        q.submit_read(0x02, 1, 0, 1, b"\0" * 512)
    idle = HostQueue(1)
    with pytest.raises(RuntimeError, match="not live"):
        idle.submit_read(0x02, 1, 0, 1, bytearray(512))


def test_submit_read_with_values_out_of_range_keeps_no_slot():
    """A read whose values do not fit the SQE fails before it is recorded: the queue is as
    before (nothing outstanding, nothing to send) and the next command goes as usual."""
    p = Pair(queue_size=4)
    q = p.host
    for slba, nlb in ((-1, 1), (1 << 64, 1), (0, (1 << 16) + 1), (0, 0)):
        with pytest.raises(struct.error):
            q.submit_read(0x02, 1, slba, nlb, bytearray(512))
    assert (q.outstanding, q.held, q.outbox) == (0, 0, [])
    a = bytearray(512)
    cid = q.submit_read(0x02, 1, 0, 1, a)
    p.to_ctrl()
    p.ctrl.complete(cid, data=_pattern(512, 3))
    done, = p.to_host()
    assert done.status == 0 and bytes(a) == _pattern(512, 3)


def test_submit_keeps_a_view_of_its_own_of_the_callers_buffer():
    """``submit`` reads into its own view: a caller may release the memoryview it passed
    before the data arrives, and the data still lands in the buffer under it."""
    p = Pair()
    buf = bytearray(4096)
    with memoryview(buf) as mv:
        cid = p.host.submit(C.read(1, 0, 8), read_into=mv)
    p.to_ctrl()
    p.ctrl.complete(cid, data=_pattern(4096, 5))
    done, = p.to_host()
    assert done.status == 0 and bytes(buf) == _pattern(4096, 5)


# R2T variants for a Write of WRITE bytes: 0 all of it; 1 in two R2Ts; 2 an unknown CCCID;
# 3 R2TL 0; 4 a wrong R2TO; 5 beyond the data; 6 a nonzero flag; 7 PLEN 28; 8 for the read;
# 9 for a Write whose data went in its capsule.
WRITE = 20480
R2T = codec.XFER


def _r2ts(write_cid: int, read_cid: int, small_cid: int, variant: int) -> bytes:
    def r2t(cid, off, n, flags=0, plen=24):
        return R2T.pack(9, flags, 24, 0, plen, cid, 7, off, n) + bytes(plen - 24)
    half = WRITE // 2 + 2
    return [r2t(write_cid, 0, WRITE), r2t(write_cid, 0, half) + r2t(write_cid, half,
                                                                      WRITE - half),
            r2t(0x7777, 0, WRITE), r2t(write_cid, 0, 0), r2t(write_cid, 512, WRITE - 512),
            r2t(write_cid, 0, WRITE + 4), r2t(write_cid, 0, WRITE, flags=0x04),
            r2t(write_cid, 0, WRITE, plen=28), r2t(read_cid, 0, 4096),
            r2t(small_cid, 0, 512)][variant]


@pytest.mark.parametrize("variant", range(10))
@pytest.mark.parametrize("cut", [None, 1, 23, 24, 30])
def test_the_lane_answers_an_r2t_as_the_full_path(variant, cut, monkeypatch):
    """A Write's R2T, good or broken in one field the lane reads, after a read's answer: the
    same H2CData (or TermReq), events and state on both ways, and a good one really taken by
    the lane."""
    out = []
    for cls in (HostQueue, FullPath):
        q = _live(cls, False)
        data = _pattern(WRITE, 9)
        rbuf = bytearray(4096)
        rcid = q.submit(C.read(1, 0, 8), read_into=rbuf)
        wcid = q.submit(C.write(1, 64, WRITE // 512), write=data)
        scid = q.submit(C.write(1, 128, 1), write=bytes(512))
        assert q._cmds[scid].in_capsule and not q._cmds[wcid].in_capsule
        q.data_to_send()
        stream = (_c2h(rcid, 0, _pattern(4096, 1)) + codec.encode(codec.capsule_resp(rcid, sqid=1))
                  + _r2ts(wcid, rcid, scid, variant))
        with monkeypatch.context() as mp:
            if cls is HostQueue and variant in (0, 1):
                mp.setattr(HostQueue, "_r2t",
                           lambda *a: (_ for _ in ()).throw(AssertionError("full path taken")))
            cuts = [4144 + cut] if cut else []
            events = _seen(_feed(q, stream, cuts))
        out.append((events, [bytes(b) for b in q.data_to_send()], q.state, sorted(q._cmds),
                    q._cmds[wcid].sent if wcid in q._cmds else None))
    assert out[0] == out[1]


@pytest.mark.parametrize("size,max_data,cuts", [(128 << 10, 65536, [100]), (8192, 4096, []),
                                                (8192, 4096, [30]), (65536, 32768, [24])])
def test_a_c2hdata_beyond_max_data_fails_on_the_lane_as_on_the_full_path(size, max_data, cuts):
    """The framer refuses a data PDU longer than ``max_data`` (Data Transfer Limit Exceeded,
    FEI 4); the lane, which takes the PDU before the framer sees it, must refuse it too,
    whole in staging or received in place."""
    seen = []
    for cls in (HostQueue, FullPath):
        q = cls(1, queue_size=16, max_data=max_data)
        q.initiate()
        q.data_to_send()
        q.receive(codec.ic_resp(maxh2cdata=8192))
        buf = bytearray(size)
        cid = q.submit(C.read(1, 0, size // 512), read_into=buf)
        q.data_to_send()
        assert q.receive_buffers() is None  # nor is a lone read beyond it offered the scatter
        stream = _c2h(cid, 0, _pattern(size, 2), 0x0C)
        seen.append((_seen(_feed(q, stream, cuts)), [bytes(b) for b in q.data_to_send()],
                     q.state))
    assert seen[0] == seen[1]
    (failure,), term, state = seen[0]
    assert failure[2:4] == (0x05, 4) and state.value == "terminated" and term
