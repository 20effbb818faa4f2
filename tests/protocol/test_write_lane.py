"""A Write's data through the target's lane must never change what the queue does.

``ControllerQueue.buffer_updated`` takes a plain H2CData by value: whole in staging it is copied
into the command's buffer; cut by a receive it waits in staging when small, else the rest of its
payload is received in place (``payload_buffers`` or ``get_buffer()``). Everything the checks
refuse stops the lane at that byte and goes the full path (framer → PDU record → ``_h2c_data``),
which decides and reports it. Here an engine with the lane and one without get the same Write
capsules and data — well-formed, in several PDUs, and broken in each field the lane reads — in
the same random pieces, and must send the same bytes in the same order, hand the target the
same commands with the same data, and end in the same state. (Not after every piece: where the
full path receives a payload's end through the framer's small header window, the lane waits with
the PDU in staging and then receives into all of it, so it may take the PDUs after it sooner.)
"""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pynvmetcp.protocol import CommandReceived, ControllerQueue, QueueState
from pynvmetcp.spec.opcodes import NvmOpcode, SglId
from pynvmetcp.spec.sqe import PSDT_SGL
from pynvmetcp.wire import codec

CAPSULE = struct.Struct("<BBBBIBBHI16xQI3xBQH14x")  # as tests/target/test_read_lane.py
XFER = codec.XFER
MAXH2CDATA = 65536
SIZES = (512, 4096, 20000, 40000, 65536, 150000)  # a Write's bytes; above 64 KiB: two PDUs
_BYTES = bytes(range(251))  # a prime length: each command's data differs from the others'


def _data(cid: int, size: int) -> bytes:
    start = cid * 37 % 251
    return (_BYTES[start:] + _BYTES * (size // 251 + 1))[:size]


def _write(cid: int, size: int) -> bytes:
    return CAPSULE.pack(4, 0, 72, 0, 72, NvmOpcode.WRITE, PSDT_SGL, cid, 1, 0, size,
                        SglId.TRANSPORT_DATA_BLOCK, cid * 512, size // 512 - 1 if size >= 512
                        else 0)


def _h2c(cid: int, ttag: int, offset: int, data: bytes, flags: int, *, pdo: int = 24,
         datal: int | None = None) -> bytes:
    n = len(data) if datal is None else datal
    return XFER.pack(6, flags, 24, pdo, pdo + len(data), cid, ttag, offset, n) + bytes(
        pdo - 24) + data


# Variants of a Write's data: 0 in PDUs of MAXH2CDATA, LAST on the final one; 1 in two PDUs
# split at an odd byte; 2 an unknown TTAG; 3 another command's CCCID; 4 a wrong DATAO; 5 beyond
# the R2T; 6 LAST missing at the end; 7 LAST before the end; 8 a reserved flag bit; 9 PDO 28;
# 10 DATAL ≠ PLEN − 24; 11 more than MAXH2CDATA in one PDU; 12 no data.
VARIANTS = 13


def _data_pdus(cid: int, ttag: int, data: bytes, variant: int) -> bytes:
    n = len(data)
    if variant == 0:
        return b"".join(_h2c(cid, ttag, off, data[off:off + MAXH2CDATA],
                             0x04 if off + MAXH2CDATA >= n else 0)
                        for off in range(0, n, MAXH2CDATA))
    if variant == 1 and n <= 2 * MAXH2CDATA - 2:
        cut = max(1, min(n // 2 + 1, MAXH2CDATA))
        return _h2c(cid, ttag, 0, data[:cut], 0) + _h2c(cid, ttag, cut, data[cut:], 0x04)
    data = data[:MAXH2CDATA]  # the broken ones: one PDU, its fields as the variant says
    whole = 0x04 if len(data) == n else 0
    if variant == 2:
        return _h2c(cid, 0x7777, 0, data, whole)
    if variant == 3:
        return _h2c(cid ^ 0x100, ttag, 0, data, whole)
    if variant == 4:
        return _h2c(cid, ttag, 512, data, whole)
    if variant == 5:
        return _h2c(cid, ttag, 0, data + b"\x01" * 512, whole)
    if variant == 6:
        return _h2c(cid, ttag, 0, data, 0)
    if variant == 7:
        return _h2c(cid, ttag, 0, data[:len(data) // 2], 0x04)
    if variant == 8:
        return _h2c(cid, ttag, 0, data, whole | 0x40)
    if variant == 9:
        return _h2c(cid, ttag, 0, data, whole, pdo=28)
    if variant == 10:
        return _h2c(cid, ttag, 0, data, whole, datal=len(data) - 4)
    if variant == 11:
        return _h2c(cid, ttag, 0, _data(cid, MAXH2CDATA + 512), whole)
    return _h2c(cid, ttag, 0, b"", whole)


# Variants of a Write with its data in the capsule (``_with_data``): 0 well-formed; 1 PDO 76
# (padding before the data); 2 the SGL's length 4 short of the data; 3 an SGL address; 4 the
# transport SGL type with data; 5 a Read with data; 6 the CID of a Write still outstanding; 7 a
# reserved flag bit; 8 no data at all (PDO and PLEN 72, SGL length 0). Its size may also exceed
# the queue's in-capsule size (150000 > 128 KiB).
IC_VARIANTS = 9


def _with_data(cid: int, size: int, variant: int) -> bytes:
    data = _data(cid, size)
    pdo, length, addr, sgl, op, flags = 72, size, 0, SglId.DATA_BLOCK_OFFSET, NvmOpcode.WRITE, 0
    if variant == 1:
        pdo = 76
    elif variant == 2:
        length = size - 4
    elif variant == 3:
        addr = 512
    elif variant == 4:
        sgl = SglId.TRANSPORT_DATA_BLOCK
    elif variant == 5:
        op = NvmOpcode.READ
    elif variant == 6:
        cid = 0  # (_compare's first Write, whose data comes after every capsule)
    elif variant == 7:
        flags = 0x40
    elif variant == 8:
        data, size, length = b"", 0, 0
    nlb = size // 512 - 1 if size >= 512 else 0
    header = bytearray(CAPSULE.pack(4, flags, 72, pdo, pdo + size, op, PSDT_SGL, cid, 1, 0,
                                    length, sgl, cid * 512, nlb))
    struct.pack_into("<Q", header, 32, addr)
    return bytes(header) + bytes(pdo - 72) + data


def _live(**limits) -> ControllerQueue:
    """A live I/O queue (ICReq answered, Connect done) that takes H2CData of MAXH2CDATA, or as
    ``limits`` say."""
    q = ControllerQueue(**{"maxh2cdata": MAXH2CDATA, **limits})
    q.receive(codec.ic_req())
    q.data_to_send()
    q.configure(1, 127)
    return q


def _engine(lane: bool, **limits) -> tuple[ControllerQueue, list]:
    """A live I/O queue whose target records each command with its data and succeeds."""
    q = _live(**limits)
    seen: list = []

    def run(cid, sqe, data, c2h_length):
        seen.append((cid, bytes(sqe), None if data is None else bytes(data), c2h_length))
        q.complete(cid, 0)

    q.on_command = run
    if lane:
        assert q.open_read_lane(lambda nsid, slba, nlb, length: None)
    return q, seen


def _feed(q: ControllerQueue, data: bytes, sizes: list[int], scatter: bool) -> bytes:
    """``data`` received in pieces of ``sizes`` (then whatever the buffers take); the bytes
    sent."""
    out, pos, pieces = [], 0, iter(sizes)
    while pos < len(data) and q.state is not QueueState.TERMINATED:
        assert scatter or q.payload_buffers is None  # offered only when taken
        plan = q.payload_buffers or [q.get_buffer()]
        n = min(sum(map(len, plan)), len(data) - pos, next(pieces, len(data)))
        rest = memoryview(data)[pos:pos + n]
        for buf in plan:
            k = min(len(buf), len(rest))
            buf[:k] = rest[:k]
            rest = rest[k:]
        events = q.buffer_updated(n)
        assert not [e for e in events if type(e) is CommandReceived]  # they ran (on_command)
        out.append(b"".join(bytes(b) for b in q.data_to_send()))
        pos += n
    return b"".join(out)


def _compare(writes: list[tuple[int, int]], sizes: list[int], scatter: bool,
             with_data: tuple[tuple[int, int], ...] = ()) -> None:
    """Write capsules (size index, variant) sent first, their data after, in that order; each
    of ``with_data`` (size index, variant) is a Write with its data in the capsule, after the
    capsule of the same index."""
    capsules = []
    for cid, (k, _) in enumerate(writes):
        capsules.append(_write(cid, SIZES[k]))
        if cid < len(with_data):
            k, variant = with_data[cid]
            capsules.append(_with_data(0x200 + cid, SIZES[k], variant))
    stream = b"".join(capsules) + b"".join(
        _data_pdus(cid, ttag, _data(cid, SIZES[k]), variant)
        for ttag, (cid, (k, variant)) in enumerate(enumerate(writes)))
    laned, laned_seen = _engine(True)
    laned.scatter = scatter
    plain, plain_seen = _engine(False)
    assert _feed(laned, stream, sizes, scatter) == _feed(plain, stream, sizes, False)
    assert laned_seen == plain_seen
    assert (laned.state, laned.sqhd, laned.outstanding, sorted(laned._ttags)) == (
        plain.state, plain.sqhd, plain.outstanding, sorted(plain._ttags))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writes=st.lists(st.tuples(st.integers(0, len(SIZES) - 1),
                                 st.sampled_from([0] * 6 + [1] * 3 + list(range(2, VARIANTS)))),
                       min_size=1, max_size=4),
       sizes=st.lists(st.integers(1, 70000), max_size=12), scatter=st.booleans())
def test_the_lane_and_the_full_path_agree_on_write_data(writes, sizes, scatter):
    _compare(writes, sizes, scatter)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(writes=st.lists(st.tuples(st.integers(0, len(SIZES) - 1), st.sampled_from([0, 0, 1, 2])),
                       min_size=1, max_size=3),
       with_data=st.lists(st.tuples(st.integers(0, len(SIZES) - 1),
                                    st.sampled_from([0] * 6 + list(range(1, IC_VARIANTS)))),
                          max_size=3),
       sizes=st.lists(st.integers(1, 70000), max_size=12), scatter=st.booleans())
def test_the_lane_and_the_full_path_agree_on_writes_with_data(writes, with_data, sizes,
                                                               scatter):
    _compare(writes, sizes, scatter, tuple(with_data))


@pytest.mark.parametrize("variant", range(IC_VARIANTS))
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("cut", [1, 71, 72, 73, 600, 4096, -1, -100, -8192, None])
def test_every_write_with_data_variant_agrees(size, variant, cut):
    """A Write with its data in the capsule, good or broken in one field, after a Write
    whose data comes after an R2T: its first receive cut ``cut`` bytes into it (negative:
    before its end; None: not cut)."""
    before = 72
    whole = len(_with_data(0x200, size, variant))
    first = None if cut is None else before + (cut if cut > 0 else whole + cut)
    _compare([(0, 0)], [] if first is None else [first, 4096], False, ((SIZES.index(size),
                                                                           variant),))
    _compare([(0, 0)], [] if first is None else [first, 4096], True, ((SIZES.index(size),
                                                                          variant),))


@pytest.mark.parametrize("variant", range(VARIANTS))
@pytest.mark.parametrize("size", SIZES)
def test_every_write_data_variant_agrees(size, variant):
    """Each variant of a Write's data, good or broken in one field, after a good Write's, cut
    after its header, inside its payload, and not at all."""
    capsules = 72 * 2 + 24 + 512
    for sizes in ([capsules], [capsules + 24], [capsules + 24 + 5000, 30000], []):
        _compare([(0, 0), (SIZES.index(size), variant)], sizes, False)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("cut", [1, 23, 24, 25, 100, 4096, 9000, -1, -100, -8191, -8192])
@pytest.mark.parametrize("scatter", [False, True])
def test_write_data_cut_anywhere_agrees(size, cut, scatter):
    """One well-formed Write after a small one, its data's first receive cut at ``cut`` (a
    negative cut: that many bytes before the end of its first H2CData)."""
    capsules = 72 * 2 + 24 + 512
    first = capsules + 24 + min(size, MAXH2CDATA)
    _compare([(0, 0), (SIZES.index(size), 0)],
             [capsules + cut if cut > 0 else first + cut, 4096], scatter)


def _forbid_the_full_path(monkeypatch, q: ControllerQueue, *handlers: str) -> None:
    """A PDU record made, or one of ``handlers`` called, fails the test."""
    def taken(*_):
        raise AssertionError("full path taken")

    for name in handlers:
        monkeypatch.setattr(ControllerQueue, name, taken)
    q.framer.data_sink = taken


def _receive(q: ControllerQueue, pieces) -> list[bool]:
    """Each piece received as a transport would (into ``payload_buffers`` when offered, else
    ``get_buffer()``); per receive, whether it went into a buffer other than staging."""
    in_place = []
    for piece in pieces:
        while piece:
            plan = q.payload_buffers or [q.get_buffer()]
            in_place.append(plan[0].obj is not q.framer.staging)
            n = min(sum(map(len, plan)), len(piece))
            rest = piece[:n]
            for buf in plan:
                k = min(len(buf), len(rest))
                buf[:k] = rest[:k]
                rest = rest[k:]
            q.buffer_updated(n)
            piece = piece[n:]
    return in_place


def test_large_write_data_is_received_in_place_without_the_full_path(monkeypatch):
    """The lane really takes it (else the comparisons above prove nothing): a 128 KiB Write's
    capsule is answered with its R2T, and its data in two PDUs, cut after each header, goes
    into the command's own buffer, with no PDU record made and nothing handled the full way."""
    q, seen = _engine(True)
    q.scatter = True
    _forbid_the_full_path(monkeypatch, q, "_capsule", "_h2c_data")
    data = _data(3, 128 << 10)
    q.receive(_write(3, 128 << 10))
    r2t = b"".join(bytes(b) for b in q.data_to_send())
    assert r2t[0] == 9 and XFER.unpack_from(r2t)[6] == 0  # an R2T with TTAG 0
    pdus = _data_pdus(3, 0, data, 0)
    first = len(_h2c(3, 0, 0, data[:MAXH2CDATA], 0))
    in_place = _receive(q, (pdus[:30], pdus[30:first + 10], pdus[first + 10:]))
    (cid, _, got, _), = seen
    assert cid == 3 and got == data and any(in_place)
    assert q.payload_buffers is None and q.get_buffer == q.framer.get_buffer
    resp = b"".join(bytes(b) for b in q.data_to_send())
    assert resp[0] == 5 and struct.unpack_from("<HH", resp, 20) == (3, 0)  # its success


def _read(cid: int, size: int) -> bytes:
    return CAPSULE.pack(4, 0, 72, 0, 72, NvmOpcode.READ, PSDT_SGL, cid, 1, 0, size,
                        SglId.TRANSPORT_DATA_BLOCK, 0, size // 512 - 1)


@pytest.mark.parametrize("flush", [False, True])
def test_answers_after_a_write_whose_target_sends_at_once_are_not_lost(flush):
    """A Write completed by its data in the lane runs the target there (``on_command``), and
    a target may take the engine's output at once (``data_to_send``). The Reads the lane then
    answers in the same receive must still go out, as they do on the full path. (The lane
    used to keep the output list it found on entry, and they were lost.)"""
    def pattern(n):
        return bytes(range(256)) * (n // 256)

    def engine(lane: bool):
        q = _live()
        sent: list = []

        def run(cid, sqe, data, c2h_length):
            q.complete(cid, 0, data=pattern(c2h_length) if c2h_length else None)
            if flush:
                sent.append(b"".join(bytes(b) for b in q.data_to_send()))

        q.on_command = run
        if lane:
            assert q.open_read_lane(lambda nsid, slba, nlb, length: pattern(length))
        return q, sent

    out = []
    for lane in (True, False):
        q, sent = engine(lane)
        for piece in (_write(1, 4096), _h2c(1, 0, 0, _data(1, 4096), 0x04) + _read(2, 4096)
                      + _read(3, 8192)):
            q.receive(piece)
            sent.append(b"".join(bytes(b) for b in q.data_to_send()))
        out.append(b"".join(sent))
    assert out[0] == out[1]
    assert len(out[0]) == 24 + 24 + (24 + 4096 + 24) + (24 + 8192 + 24)  # R2T, 3 answers


@pytest.mark.parametrize("scatter", [False, True])
def test_a_write_with_its_data_is_taken_by_the_lane(monkeypatch, scatter):
    """The lane really takes a Write whose data is in the capsule (else the comparisons above
    prove nothing): 128 KiB of it, cut after the header, goes into a buffer of its own, in
    place, with no PDU record made; a small one whole in one receive is taken there too."""
    q, seen = _engine(True)
    q.scatter = scatter
    _forbid_the_full_path(monkeypatch, q, "_capsule")
    pdu = _with_data(5, 128 << 10, 0) + _with_data(6, 4096, 0)
    in_place = _receive(q, (pdu[:100], pdu[100:]))
    assert [(cid, data) for cid, _, data, _ in seen] == [(5, _data(5, 128 << 10)),
                                                          (6, _data(6, 4096))]
    assert any(in_place) and q.payload_buffers is None and q.outstanding == 0
    resp = b"".join(bytes(b) for b in q.data_to_send())
    assert [struct.unpack_from("<H", resp, at)[0] for at in (20, 44)] == [5, 6]  # successes


def test_a_write_with_data_beyond_the_queue_depth_is_refused_alike():
    """Two Writes outstanding on a queue of depth 2 (their data not yet sent), then a Write
    with its data in the capsule: a command too many, refused with the same TermReq either
    way."""
    sent = []
    for lane in (True, False):
        q, seen = _engine(lane)
        q.configure(1, 1)  # SQSIZE 1: two entries
        q.receive(_write(0, 4096) + _write(1, 4096) + _with_data(2, 4096, 0))
        sent.append((b"".join(bytes(b) for b in q.data_to_send()), seen, q.state))
    assert sent[0] == sent[1]
    assert sent[0][2] is QueueState.TERMINATED and sent[0][0][48] == 3  # after 2 R2Ts, a TermReq


@pytest.mark.parametrize("size", [4096, 20000, 100000])
@pytest.mark.parametrize("limits", [dict(max_transfer=65536),
                                    dict(maxh2cdata=4096, icd_size=16384)])
def test_writes_with_data_at_the_queues_other_limits_agree(limits, size):
    """In-capsule Writes against an MDTS below the in-capsule size, and against an in-capsule
    size raised above what the framer takes in one PDU (``io_icd_size`` after the engine was
    made): refused as the full path refuses them."""
    answers = []
    for lane in (True, False):
        q, seen = _engine(lane, **limits)
        if "icd_size" in limits:
            q.io_icd_size = 32768
            q.configure(1, 127)
        q.receive(_with_data(7, size, 0))
        answers.append((b"".join(bytes(b) for b in q.data_to_send()), seen, q.state))
    assert answers[0] == answers[1]
