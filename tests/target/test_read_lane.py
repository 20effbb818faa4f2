"""The target's read lane must never change an answer.

``ControllerQueue.buffer_updated`` answers plain Read capsules itself, through the target's own
checks (``nvm.read_lane``), and leaves everything else, from the first PDU it does not take, to
the full path (framer → CommandReceived → ``Controller.execute`` → ``nvm._read``). That is only
an optimisation if no host can tell. Here two targets configured alike, one with the lane and one
without (``ControllerOptions.read_lane = False``), get the same byte streams on an I/O queue taken
over from a real pynvmetcp host, and must answer them byte for byte alike (data, status, SQHD,
order), count the same reads and log the same errors; a count of what the lane answered keeps
the comparison from passing because the lane never ran. The engine-level tests at the end do the
same without sockets, in every segmentation of the stream.
"""
from __future__ import annotations

import dataclasses
import random
import socket
import struct
import zlib
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pynvmetcp
from pynvmetcp.host import commands as C
from pynvmetcp.host.procedures import Command
from pynvmetcp.protocol import CommandReceived, ControllerQueue, QueueState
from pynvmetcp.spec.opcodes import AdminOpcode, NvmOpcode, Property, SglId
from pynvmetcp.spec.pdu import (T_C2H_DATA, T_C2H_TERMREQ, T_CAPSULE_CMD, T_CAPSULE_RESP, T_R2T,
                                Fes, PduFlags, PduType)
from pynvmetcp.spec.sqe import PSDT_SGL
from pynvmetcp.target import NamespaceConfig, Target
from pynvmetcp.target.namespace import MemoryBackend, Namespace
from pynvmetcp.wire import codec
from tests.target.rawhost import HOSTNQN, OTHER_HOSTNQN
from tests.target.support import NQN, make_config

# A CapsuleCmd with its SQE: type, flags, hlen, pdo, plen, opcode, SQE flags, CID, NSID, SGL
# address, length and id, SLBA, NLB (0's based), as benchmarks/_peers.py's BareHost packs it.
CAPSULE = struct.Struct("<BBBBIBBHI16xQI3xBQH14x")
RESP_PSH = codec.RESP_PSH  # dw0, dw1, sqhd, sqid, cid, status at byte 8 of a CapsuleResp
XFER_PSH = codec.XFER_PSH  # cccid, ttag, offset, length at byte 8 of C2HData / R2T
T_TERMREQ, T_CMD, T_RESP, T_C2H = T_C2H_TERMREQ, T_CAPSULE_CMD, T_CAPSULE_RESP, T_C2H_DATA
F_LAST, F_SUCCESS = PduFlags.LAST_PDU, PduFlags.SUCCESS
READ, WRITE, FLUSH, COMPARE = NvmOpcode.READ, NvmOpcode.WRITE, NvmOpcode.FLUSH, NvmOpcode.COMPARE
FABRICS = AdminOpcode.FABRICS
PLAIN = PSDT_SGL  # SQE flags: PSDT = SGL, not fused
TRANSPORT, IN_CAPSULE = SglId.TRANSPORT_DATA_BLOCK, SglId.DATA_BLOCK_OFFSET  # SGL ids
C2H_CHUNK = 128 << 10  # the target's C2HData size: the lane's limit (MDTS is 1 MiB)
MIB = 1 << 20
SENTINEL = 0xFFFF  # the CID of the Flush that closes every exchange; never used otherwise
TIMEOUT = 10.0

# The namespaces of both targets: 1 plain, 2 with 4096-byte blocks, 3 hidden from this host by
# its access list, 4 in ANA group 2 (inaccessible on the I/O port), 5 in ANA group 3
# (non-optimized there: still readable). Each holds its own pattern, identical on both targets.
BLOCK = {1: 512, 2: 4096, 3: 512, 4: 512, 5: 512}
NBLOCKS = {nsid: MIB // bs for nsid, bs in BLOCK.items()}
SERVED = {1, 2, 5}  # the namespaces a Read of this host succeeds on
PATTERN = {nsid: random.Random(nsid).randbytes(MIB) for nsid in BLOCK}


# ---- commands ----
class Cmd:
    """One PDU the host sends, and what the lane model (``expectations``) needs of it."""

    __slots__ = ("wire", "kind", "cid", "lane", "answers", "nsid", "slba", "ttag", "data",
                 "ok")

    def __init__(self, wire: bytes, kind: str, cid: int, lane: bool = False,
                 answers: int = 1, *, nsid: int = 0, slba: int = 0, ttag: int = -1,
                 data: bytes = b"", ok: bool = False) -> None:
        self.wire = wire
        self.kind = kind  # "read" (opcode 2), "r2t" (a Write answered by an R2T: it waits),
        #                   "h2c" (the data of an "r2t", completing it) or "other"
        self.cid = cid
        self.lane = lane  # a Read whose header and target checks the lane passes (CID aside)
        self.answers = answers  # the PDUs that answer it: a completion, or an R2T
        self.nsid = nsid
        self.slba = slba
        self.ttag = ttag  # of an "r2t": the one the target will choose (0, 1, … per queue)
        self.data = data  # of an "r2t"
        self.ok = ok  # an "r2t" / "h2c" whose Write succeeds

    def __repr__(self) -> str:
        w = self.wire
        if w[0] == T_CMD:
            (opcode, flags, cid, nsid, addr, length, sgl_id, slba,
             nlb) = CAPSULE.unpack_from(w)[5:]
            return (f"<{self.kind} opc={opcode:#x} flags={flags:#x} cid={cid:#x} nsid={nsid:#x}"
                    f" slba={slba} nlb={nlb + 1} sgl=({addr:#x}, {length}, {sgl_id:#x})"
                    f"{f' data={len(w) - 72}' if w[3] else ''}{' lane' if self.lane else ''}>")
        return f"<{self.kind} cid={self.cid:#x} {w[:24].hex()}… {len(w)} bytes>"


def capsule(opcode, cid, nsid=1, *, slba=0, nlb=1, length=0, sgl_id=TRANSPORT, flags=PLAIN,
            addr=0, control=0, data=b"") -> bytes:
    raw = bytearray(CAPSULE.pack(T_CMD, 0, 72, 72 if data else 0, 72 + len(data), opcode,
                                 flags, cid, nsid, addr, length, sgl_id, slba,
                                 (nlb - 1) & 0xFFFF))
    raw[58:60] = control.to_bytes(2, "little")  # CDW12 bits 31:16 (FUA, LR, PRINFO)
    return bytes(raw) + data


def _block(nsid):
    return BLOCK.get(nsid, 512)


def _pattern(nsid, slba, nlb):
    """The blocks' current content (writes here only ever write it again), or zeros outside."""
    bs = _block(nsid)
    if nsid in PATTERN and slba + nlb <= NBLOCKS[nsid]:
        return PATTERN[nsid][slba * bs:(slba + nlb) * bs]
    return bytes(nlb * bs)


def read(cid, nsid=1, slba=0, nlb=1, *, length=None, flags=PLAIN, sgl_id=TRANSPORT, addr=0,
         control=0, lane=None) -> Cmd:
    """A Read; ``lane``: whether the lane may answer it (default: from the static config)."""
    bs = _block(nsid)
    length = nlb * bs if length is None else length
    if lane is None:
        lane = (flags == PLAIN and sgl_id == TRANSPORT and 0 < length <= C2H_CHUNK
                and nsid in SERVED and slba + nlb <= NBLOCKS[nsid] and nlb * bs == length)
    return Cmd(capsule(READ, cid, nsid, slba=slba, nlb=nlb, length=length, flags=flags,
                       sgl_id=sgl_id, addr=addr, control=control), "read", cid, lane,
               nsid=nsid, slba=slba)


def write(cid, nsid=1, slba=0, nlb=1) -> Cmd:
    """A Write with in-capsule data (the blocks' own pattern: the media never changes)."""
    data = _pattern(nsid, slba, nlb)
    return Cmd(capsule(WRITE, cid, nsid, slba=slba, nlb=nlb, length=len(data),
                       sgl_id=IN_CAPSULE, data=data), "other", cid)


def r2t_write(cid, nsid=1, slba=0, nlb=1, *, ttag) -> Cmd:
    """A Write with a transport SGL: the target answers with an R2T (``ttag``: the one it will
    choose, 0, 1, … per connection) and waits for its data."""
    data = _pattern(nsid, slba, nlb)
    return Cmd(capsule(WRITE, cid, nsid, slba=slba, nlb=nlb, length=len(data)), "r2t", cid,
               ttag=ttag, data=data,
               ok=nsid in SERVED and slba + nlb <= NBLOCKS[nsid])


def h2c(w: Cmd) -> Cmd:
    """All the data of the outstanding ``r2t_write`` ``w``, in one H2CData."""
    return Cmd(codec.encode(codec.h2c_data(w.cid, w.ttag, 0, w.data, last=True)), "h2c",
               w.cid, ok=w.ok)


def flush(cid, nsid=1) -> Cmd:
    return Cmd(capsule(FLUSH, cid, nsid), "other", cid)


def compare_cmd(cid, nsid=1, slba=0, nlb=1, *, equal=True) -> Cmd:
    data = _pattern(nsid, slba, nlb)
    if not equal:
        data = bytes(b ^ 0xFF for b in data)
    return Cmd(capsule(COMPARE, cid, nsid, slba=slba, nlb=nlb, length=len(data),
                       sgl_id=IN_CAPSULE, data=data), "other", cid)


def other(cid, wire, answers=1) -> Cmd:
    return Cmd(wire, "other", cid, answers=answers)


def disconnect(cid) -> Cmd:
    return other(cid, capsule(FABRICS, cid, 0x08))  # FCTYPE (SQE byte 4) = Disconnect


def expectations(sends):
    """From the commands alone: (least, most) Reads the lane answers, and per send the CIDs
    that must succeed. Every send starts at a PDU boundary (the previous one answered), so its
    lane-able Reads before its first other PDU are always the lane's; a later one is when a
    receive happens to begin at it."""
    outstanding: set[int] = set()
    least = most = 0
    must_succeed = []
    for send in sends:
        prefix = True
        ok = set()
        for cmd in send:
            if cmd.kind == "read" and cmd.lane and cmd.cid not in outstanding:
                most += 1
                least += prefix
                ok.add(cmd.cid)
            else:
                prefix = False
            if cmd.kind == "r2t":
                outstanding.add(cmd.cid)
            elif cmd.kind == "h2c":  # the Write runs as soon as its data is parsed
                outstanding.discard(cmd.cid)
                if cmd.ok:
                    ok.add(cmd.cid)
        must_succeed.append(ok)
    return least, most, must_succeed


# ---- reading answers ----
def pdus(stream):
    """(type, flags, header, payload) of each whole PDU of ``stream``."""
    pos = 0
    while pos + 8 <= len(stream):
        t, flags, hlen, pdo, plen = struct.unpack_from("<BBBBI", stream, pos)
        if plen < 8 or pos + plen > len(stream):
            return
        yield t, flags, stream[pos:pos + hlen], stream[pos + (pdo or plen):pos + plen]
        pos += plen


def describe(stream) -> str:
    """A stream as one line per PDU, the fields a difference would be in."""
    lines = []
    for t, flags, hdr, payload in pdus(stream):
        if t == T_C2H:
            cid, _, off, n = XFER_PSH.unpack_from(hdr, 8)
            lines.append(f"C2HData cid={cid:#x} flags={flags:#x} off={off} len={n} "
                         f"crc={zlib.crc32(payload):#010x}")
        elif t == T_RESP:
            dw0, dw1, sqhd, sqid, cid, status = RESP_PSH.unpack_from(hdr, 8)
            lines.append(f"CapsuleResp cid={cid:#x} status={status >> 1:#x} sqhd={sqhd} "
                         f"sqid={sqid} dw0={dw0:#x} dw1={dw1:#x}")
        elif t == T_R2T:
            cid, ttag, off, n = XFER_PSH.unpack_from(hdr, 8)
            lines.append(f"R2T cid={cid:#x} ttag={ttag} off={off} len={n}")
        elif t == T_TERMREQ:
            fes, fei = struct.unpack_from("<HI", hdr, 8)
            lines.append(f"C2HTermReq fes={fes:#x} fei={fei:#x} data={bytes(payload).hex()}")
        else:
            lines.append(f"type {t} flags={flags:#x} {bytes(hdr).hex()}")
    return "\n    ".join(lines) or "(nothing)"


def statuses(stream) -> dict[int, int]:
    """CID → 15-bit status of each completion in ``stream``."""
    out = {}
    for t, flags, hdr, _ in pdus(stream):
        if t == T_RESP:
            *_, cid, status = RESP_PSH.unpack_from(hdr, 8)
            out[cid] = status >> 1
        elif t == T_C2H and flags & F_SUCCESS:
            out[XFER_PSH.unpack_from(hdr, 8)[0]] = 0
    return out


# ---- the two targets ----
def config():
    return make_config(namespaces=[
        NamespaceConfig("mem:1M", nsid=1),
        NamespaceConfig("mem:1M", nsid=2, block_size=4096),
        NamespaceConfig("mem:1M", nsid=3, hosts=[OTHER_HOSTNQN]),
        NamespaceConfig("mem:1M", nsid=4, ana_group=2),
        NamespaceConfig("mem:1M", nsid=5, ana_group=3),
    ], discovery_port=False)


@contextmanager
def serving(read_lane: bool, loop: str):
    """A target of ``config()`` on event loop ``loop`` (as tests/target/conftest.py's), its
    namespaces filled; ``read_lane=False`` switches the lane off (no TargetConfig field does:
    the server's ControllerOptions are set before start, and every connection reads them when
    it is made)."""
    target = Target(config())
    if not read_lane:
        target.server.options = dataclasses.replace(target.server.options, read_lane=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYNVMETCP_LOOP", loop)
        target.start_in_thread()
    try:
        assert type(target._loop).__module__.split(".")[0] == loop
        fill(target)
        yield target
    finally:
        target.stop_in_thread()


def io_port(target) -> int:
    return target.ports[0].portid


def fill(target) -> None:
    with pynvmetcp.connect("127.0.0.1", target.port, NQN, hostnqn=HOSTNQN, nr_io_queues=1,
                           kato=0, ctrl_loss_tmo=0) as ctrl:
        for nsid in (1, 2, 4, 5):
            ctrl.namespace(nsid).write(0, PATTERN[nsid])
    hidden = target.subsystem(NQN).namespaces[3]
    target.call(lambda: hidden.backend.write(0, PATTERN[3]))
    assert target.set_ana_state(NQN, io_port(target), 2, "inaccessible")
    assert target.set_ana_state(NQN, io_port(target), 3, "non-optimized")


LOOPS = ["uvloop", "asyncio"]


@pytest.fixture(autouse=True)
def loop_kind():
    """Each test here picks its targets' event loops itself (``serving``), not conftest's."""
    return None


@pytest.fixture(scope="module", params=LOOPS)
def targets(request):
    """Two targets alike, the first with the read lane, the second without."""
    with serving(True, request.param) as lane, serving(False, request.param) as full:
        yield lane, full


def counters(target) -> dict:
    def snap():
        return {nsid: (ns.read_cmds, ns.bytes_read, ns.write_cmds, ns.bytes_written)
                for nsid, ns in target.subsystem(NQN).namespaces.items()}
    return target.call(snap)


class Host:
    """A pynvmetcp host connected to ``target``, its I/O queue's socket then driven by hand
    (the Connect done, nothing outstanding on it), as BareHost does."""

    def __init__(self, target, **connect_kw) -> None:
        self.target = target
        self.ctrl = pynvmetcp.connect("127.0.0.1", target.port, NQN, hostnqn=HOSTNQN,
                                      nr_io_queues=1, kato=0, ctrl_loss_tmo=0, **connect_kw)
        self.closed = False
        try:
            self.sock = self.ctrl.io[0].sock
            self.sock.settimeout(TIMEOUT)
            self.lane = target.call(self._watch_lane)
        except BaseException:
            self.ctrl.close()
            raise

    def _watch_lane(self):
        """In the target's loop: count what the lane of our I/O connection answers (None: the
        connection has no lane)."""
        peer = "%s:%d" % self.sock.getsockname()[:2]
        (conn,) = [c for c in self.target.server.connections if c.peer == peer]
        assert conn.qid == 1
        inner = conn.engine.read_lane
        if inner is None:
            return None
        stats = {"calls": 0, "answered": 0}

        def lane(nsid, slba, nlb, length):
            stats["calls"] += 1
            data = inner(nsid, slba, nlb, length)
            stats["answered"] += data is not None
            return data

        conn.engine.read_lane = lane
        return stats

    def lane_stats(self):
        return None if self.lane is None else self.target.call(lambda: dict(self.lane))

    def error_log(self):
        def snap():
            ctrl = self.target.subsystem(NQN).controllers[self.ctrl.cntlid]
            return ctrl.error_count, [dict(e) for e in ctrl.errors]
        return self.target.call(snap)

    def exchange(self, cmds, splits=()) -> bytes:
        """Send ``cmds`` (cut at ``splits``, each piece its own send) and return every byte
        the target answers, up to the last of their answers (a CapsuleResp, C2HData with
        SUCCESS, or R2T each) or the end of the connection."""
        data = b"".join(c.wire for c in cmds)
        edges = [0, *sorted({s for s in splits if 0 < s < len(data)}), len(data)]
        for a, b in zip(edges, edges[1:]):
            self.sock.sendall(data[a:b])
        want = sum(c.answers for c in cmds)
        got = bytearray()
        pos = done = 0
        while done < want:
            plen = int.from_bytes(got[pos + 4:pos + 8], "little") if len(got) - pos >= 8 else 0
            if len(got) - pos < 8 or len(got) - pos < plen:
                if not self._receive(got):
                    return bytes(got)
                continue
            assert plen >= 8, f"bad PLEN {plen}: {describe(got)}"
            t, flags = got[pos], got[pos + 1]
            pos += plen
            if t == T_RESP or t == T_R2T or (t == T_C2H and flags & F_SUCCESS):
                done += 1
            elif t == T_TERMREQ:  # the target closes now: take all it sent
                while self._receive(got):
                    pass
                return bytes(got)
        return bytes(got)

    def _receive(self, got) -> bool:
        try:
            chunk = self.sock.recv(1 << 20)
        except ConnectionResetError:
            chunk = b""
        except socket.timeout:
            raise AssertionError(f"no answer within {TIMEOUT} s; so far:\n    "
                                 f"{describe(got)}") from None
        if not chunk:
            self.closed = True
            return False
        got += chunk
        return True

    def close(self) -> None:
        self.ctrl.close()  # shuts down and closes every queue, this socket too


@dataclass
class Outcome:
    answers: list  # the bytes answered to each send (the last: the sentinel Flush's)
    closed: bool
    counts: dict  # per namespace: (read_cmds, bytes_read, write_cmds, bytes_written) added
    errors: tuple  # the controller's error count and log
    lane: dict | None  # what the lane was asked and answered (None: no lane)


def run(target, sends, *, splits=None, **connect_kw) -> Outcome:
    """A fresh host sends ``sends`` in turn, each answered before the next; an entry that is
    a function is called with (target, host) instead (a change between two sends)."""
    before = counters(target)
    host = Host(target, **connect_kw)
    try:
        answers = []
        for i, send in enumerate([*sends, [flush(SENTINEL)]]):
            if host.closed:
                break
            if callable(send):
                send(target, host)
            else:
                answers.append(host.exchange(send, splits[i] if splits and i < len(splits)
                                             else ()))
        errors = host.error_log()
        lane = host.lane_stats()
        closed = host.closed
    finally:
        host.close()
    after = counters(target)
    added = {nsid: tuple(a - b for a, b in zip(after[nsid], before.get(nsid, (0,) * 4)))
             for nsid in after}
    return Outcome(answers, closed, added, errors, lane)


def compare(targets, sends, *, splits=None, lane_answers=None, **connect_kw) -> Outcome:
    """Run ``sends`` on both targets and require the same answers, counters and error log;
    ``lane_answers``: how many Reads the lane must answer (default: ``expectations``)."""
    lane_target, full_target = targets
    lane = run(lane_target, sends, splits=splits, **connect_kw)
    full = run(full_target, sends, splits=splits, **connect_kw)
    for i, (a, b) in enumerate(zip(lane.answers, full.answers)):
        assert a == b, (f"send {i} answered differently\n  lane: {describe(a)}\n"
                        f"  full: {describe(b)}")
    assert len(lane.answers) == len(full.answers) and lane.closed == full.closed, \
        f"one side closed earlier: lane {lane.answers[-1:]}, full {full.answers[-1:]}"
    assert lane.counts == full.counts
    assert lane.errors == full.errors
    # the comparison means something only if the lane was there and answered what it should
    assert full.lane is None
    assert lane.lane is not None
    data_sends = [s for s in sends if not callable(s)]
    least, most, must_succeed = expectations(data_sends)
    if lane_answers is not None:
        least = most = lane_answers
    assert least <= lane.lane["answered"] <= most, (lane.lane, least, most)
    for send, answer, ok in zip(data_sends, lane.answers, must_succeed):
        done = statuses(answer)
        assert all(done.get(cid) == 0 for cid in ok), (describe(answer), ok)
        check_data(send, answer)
    return lane


def check_data(cmds, answer) -> None:
    """Every C2HData carries the blocks its Read asked for; Reads that share a CID (a host
    may reuse one once it is answered) are matched in turn."""
    reads: dict[int, list] = {}
    for c in cmds:
        if c.kind == "read":
            reads.setdefault(c.cid, []).append(c)
    for t, flags, hdr, payload in pdus(answer):
        if t == T_C2H:
            cid, _, off, n = XFER_PSH.unpack_from(hdr, 8)
            cmd = reads[cid][0]
            start = cmd.slba * BLOCK[cmd.nsid] + off
            assert bytes(payload) == PATTERN[cmd.nsid][start:start + n], f"data of cid {cid:#x}"
        if t == T_RESP or (t == T_C2H and flags & F_SUCCESS):  # the end of a command
            cid = hdr[20] | hdr[21] << 8 if t == T_RESP else hdr[8] | hdr[9] << 8
            if len(reads.get(cid, ())) > 1:
                reads[cid].pop(0)


# ---- the cases ----
R, W = read, write
_w20 = r2t_write(0x20, 1, 0, 8, ttag=0)
_w30, _w31 = r2t_write(0x30, 1, 8, 8, ttag=0), r2t_write(0x31, 2, 1, 1, ttag=1)
_bad_hlen = bytearray(capsule(READ, 3, 1, length=512))
_bad_hlen[2] = 71
_h2c_termreq = codec.term_req(PduType.H2CTermReq, Fes.INVALID_HEADER_FIELD)


def case(name, *sends, connect=None):
    return pytest.param(list(sends), connect or {}, id=name)


# Found by this test as differences, when the full path ran a receive's commands only after
# parsing all of it: the engine's own answers (R2T, a rejected SGL, a CID conflict) overtook the
# Reads ahead of them, and what one receive held decided what was outstanding — so a reused CID
# or more commands than the depth were faults, and Reads before a malformed PDU or a TermReq
# went unanswered. Commands now run as they are parsed (ControllerQueue.on_command), on both
# paths. (name, sends, connect arguments); each send arrives in one receive on loopback.
SAME_RECEIVE = [
    ("r2t_after_a_read_in_one_send", [[R(1), r2t_write(2, 1, 0, 1, ttag=0)]], None),
    ("sgl_reject_after_a_read_in_one_send", [[R(1), R(2, sgl_id=IN_CAPSULE), R(3)]], None),
    ("over_mdts_after_a_read_in_one_send", [[R(1), R(2, 1, 0, 2049)]], None),
    ("cid_conflict_after_a_read_in_one_send", [[_w20], [R(0x23), R(0x20)]], None),
    ("duplicate_cid_in_one_send", [[R(1, 1, 0, 1), R(1, 1, 1, 1)]], None),
    ("more_commands_than_the_queue_depth_in_one_send", [[R(i, 1, i, 1) for i in range(9)]],
     {"queue_size": 8}),
    ("malformed_pdu_after_reads", [[R(1), R(2), other(3, bytes(_bad_hlen))]], None),
    ("h2c_termreq_after_reads", [[R(1), R(2), other(0, _h2c_termreq, answers=0)]], None),
]

CASES = [
    case("reads_pipelined",
         [R(0x10, 1, 0, 1), R(0x11, 1, 7, 8), R(0x12, 1, 100, 256), R(0x13, 2, 0, 1),
          R(0x14, 2, 9, 32), R(0x15, 5, 3, 5), R(0x16, 1, 2047, 1), R(0x17, 2, 255, 1)]),
    case("reads_one_per_send",
         [R(1, 1, 0, 1)], [R(2, 1, 1, 8)], [R(3, 2, 5, 2)], [R(4, 5, 0, 256)], [R(0, 1, 3, 1)]),
    case("read_last_blocks",
         [R(1, 1, 2047, 1)], [R(2, 1, 1792, 256)], [R(3, 2, 255, 1)], [R(4, 2, 224, 32)]),
    case("range_beyond_end",
         [R(1, 1, 2047, 2)], [R(2, 1, 2048, 1)], [R(3, 2, 256, 1)], [R(4, 2, 255, 2)],
         [R(5, 1, 2**64 - 1, 1)], [R(6, 1, 2**63, 256)], [R(7, 1, 0, 1), R(8, 1, 2048, 1)]),
    case("nlb_and_sgl_length_disagree",
         [R(1, 1, 0, 1, length=1024)], [R(2, 1, 0, 2, length=512)], [R(3, 2, 0, 1, length=512)],
         [R(4, 2, 0, 1, length=4097)], [R(5, 1, 0, 1, length=511)],
         [R(6, 2, 0, 2, length=4096), R(7, 2, 0, 2)]),
    case("unknown_nsid",
         [R(1, 0)], [R(2, 99)], [R(3, 0xFFFFFFFF)], [R(4, 6)],
         [R(5, 0), R(6, 99), R(7, 0xFFFFFFFF), R(8, 1)]),
    case("hidden_namespace", [R(1, 3)], [R(2, 3, 5, 8), R(3, 1, 5, 8)], [R(4, 1), R(5, 3)]),
    case("ana_inaccessible", [R(1, 4)], [R(2, 4, 0, 8), R(3, 1)], [R(4, 1), R(5, 4)]),
    case("ana_non_optimized", [R(1, 5)], [R(2, 5, 10, 16), R(3, 5, 2047, 1)]),
    case("block_size_4096",
         [R(1, 2, 0, 1), R(2, 2, 1, 31), R(3, 2, 100, 32)], [R(4, 2, 17, 3)]),
    case("sqe_flags_prp_and_fused",
         [R(1, flags=0x00)], [R(2, flags=0x41)], [R(3, flags=0x42)], [R(4, flags=0x43)],
         [R(5, flags=0x80)], [R(6, flags=0xC0)], [R(7, flags=0x44)],
         [R(8), R(9, flags=0x00), R(10)]),
    case("sgl_ids",
         [R(1, sgl_id=IN_CAPSULE)], [R(2, sgl_id=0x00)], [R(3, sgl_id=0x5B)],
         [R(4, sgl_id=0x4A)], [R(5, sgl_id=0x0A)], [R(6, sgl_id=0xFF)], [R(7, sgl_id=0x50)],
         [R(9, sgl_id=IN_CAPSULE), R(8), R(10)]),
    case("sgl_length_zero", [R(1, length=0)], [R(2, 1, 0, 1, length=0), R(3)]),
    case("sgl_address_and_control_bits",
         [R(1, addr=0x1000)], [R(2, control=0x4000)], [R(3, 1, 5, 2, control=0x8000)]),
    case("longer_than_one_c2hdata",
         [R(1, 1, 0, 256)], [R(2, 1, 0, 257)], [R(3, 2, 0, 33)], [R(4, 1, 0, 2048)],
         [R(5, 2, 0, 256)], [R(6, 1, 0, 2049)], [R(7, 1, 0, 1, length=MIB + 512)]),
    case("read_with_in_capsule_data",
         [other(1, capsule(READ, 1, 1, length=512, data=bytes(512)))],
         [other(2, capsule(READ, 2, 1, length=512, sgl_id=IN_CAPSULE, data=bytes(512))),
          R(3)]),
    case("in_capsule_writes_between_reads",
         [R(1), W(2, 1, 0, 8), R(3), R(4, 1, 0, 8)],
         [W(5, 2, 3, 1), R(6, 2, 3, 1)],
         [R(7), W(8, 1, 16, 32), R(9, 1, 16, 32)],
         [W(10, 3, 0, 1), R(11), W(12, 1, 2047, 2), R(13), W(14, 99), R(15), W(16, 4), R(17)]),
    case("flush_between_reads",
         [R(1), flush(2, 1), R(3), flush(4, 0xFFFFFFFF), R(5), flush(6, 99), R(7)],
         [flush(8, 3)], [flush(9, 4), R(10)]),
    case("compare_between_reads",
         [compare_cmd(1, 1, 0, 4), R(2), compare_cmd(3, 1, 0, 4, equal=False), R(4)]),
    case("other_opcodes",
         [other(1, capsule(0x7E, 1, 1, length=512)), R(2)],
         [other(3, capsule(0x04, 3, 1)), R(4)], [other(5, capsule(0x80, 5, 1))],
         [other(6, capsule(FABRICS, 6, 0x04)), R(7)]),  # Property Get on an I/O queue
    case("cid_conflict_with_an_outstanding_write",
         [_w20], [R(0x20)], [R(0x21)], [R(0x20), R(0x22)],
         [R(0x20, 1, 8, 1), flush(0x23), R(0x24)]),
    case("h2c_data_then_reads",
         [_w30, _w31], [h2c(_w30), R(0x32)], [R(0x30, 1, 8, 8), R(0x33), h2c(_w31)],
         [R(0x31, 2, 1, 1)]),
    case("r2t_write_first_then_reads", [r2t_write(1, 1, 0, 1, ttag=0), R(2), R(3)]),
    case("queue_full_in_one_send", [R(i, 1, i, 1) for i in range(8)],
         connect={"queue_size": 8}),
    case("disconnect_then_read", [R(1), disconnect(2), R(3, lane=False)]),  # R3: dropped
    *(case(name, *sends, connect=connect) for name, sends, connect in SAME_RECEIVE),
]


@pytest.mark.parametrize("disable_sqflow", [False, True], ids=["sqflow", "sqflow-disabled"])
@pytest.mark.parametrize("sends,connect", CASES)
def test_lane_answers_as_the_full_path(targets, sends, connect, disable_sqflow):
    compare(targets, sends, disable_sqflow=disable_sqflow, **connect)


# ---- any mix ----
@st.composite
def reads(draw, cid):
    """A Read the lane may answer, or one wrong in one of the fields the lane reads."""
    nsid = draw(st.sampled_from(sorted(SERVED)))
    nlb = draw(st.sampled_from([1, 1, 2, 8, 32]) | st.integers(1, C2H_CHUNK // BLOCK[nsid]))
    slba = draw(st.integers(0, NBLOCKS[nsid] - nlb))
    kw = {}
    wrong = draw(st.sampled_from([None] * 6 + ["nsid", "slba", "nlb", "length", "flags",
                                               "sgl_id", "big"]))
    if wrong == "nsid":
        nsid = draw(st.sampled_from([3, 4, 0, 6, 99, 0xFFFFFFFF]))
    elif wrong == "slba":
        slba = draw(st.sampled_from([NBLOCKS[nsid] - nlb + 1, NBLOCKS[nsid], 2**64 - 1]))
    elif wrong == "nlb":  # the SGL length of the blocks asked for, but other blocks
        kw["length"] = nlb * BLOCK[nsid]
        nlb = draw(st.sampled_from([nlb + 1, max(1, nlb - 1), nlb + 8]).filter(
            lambda n: n * BLOCK[nsid] != kw["length"]))
    elif wrong == "length":
        kw["length"] = nlb * BLOCK[nsid] + draw(st.sampled_from(
            [-1, 1, BLOCK[nsid], -nlb * BLOCK[nsid]]))  # the last: SGL length 0
    elif wrong == "flags":
        kw["flags"] = draw(st.sampled_from([0x00, 0x41, 0x42, 0x43, 0x80, 0xC0]))
    elif wrong == "sgl_id":
        kw["sgl_id"] = draw(st.sampled_from([IN_CAPSULE, 0x00, 0x5B, 0x4A]))
    elif wrong == "big":  # more than one C2HData, or than MDTS
        nlb = draw(st.sampled_from([C2H_CHUNK // BLOCK[nsid] + 1, MIB // BLOCK[nsid],
                                    MIB // BLOCK[nsid] + 1]))
        slba = 0
    return read(cid, nsid, slba, nlb, **kw)


@st.composite
def streams(draw, max_sends=4, max_cmds=6):
    """Sends of Reads mixed with the other commands, CIDs unique except Reads aimed at a Write
    waiting for its data."""
    cids = iter(range(SENTINEL))
    ttags = iter(range(0xFFFF))
    outstanding: list[Cmd] = []  # transport-SGL Writes, their data not sent yet
    sends: list[list[Cmd]] = [[]]
    sendable: list[Cmd] = []  # Writes whose R2T the host has: it may send their data now
    for _ in range(draw(st.integers(1, max_sends * max_cmds))):
        send = sends[-1]
        if len(send) >= max_cmds or (send and draw(st.integers(0, 3)) == 0):
            send = []
            sends.append(send)
            sendable = list(outstanding)
        kind = draw(st.sampled_from(["read"] * 8 + ["write", "r2t", "h2c", "conflict",
                                                     "flush", "compare", "opcode"]))
        cid = next(cids)
        if kind == "h2c" and sendable:
            w = sendable.pop(draw(st.integers(0, len(sendable) - 1)))
            outstanding.remove(w)
            cmd = h2c(w)
        elif kind == "conflict" and outstanding:
            cmd = read(draw(st.sampled_from(outstanding)).cid)
        elif kind == "r2t":
            nsid = draw(st.sampled_from([1, 2, 3]))
            cmd = r2t_write(cid, nsid, draw(st.integers(0, 8)), draw(st.integers(1, 2)),
                            ttag=next(ttags))
        elif kind == "write":
            nsid = draw(st.sampled_from([1, 1, 2, 3, 99]))
            nlb = draw(st.integers(1, 131072 // _block(nsid)))  # within the in-capsule size
            cmd = write(cid, nsid, draw(st.integers(0, NBLOCKS.get(nsid, 1))), nlb)
        elif kind == "flush":
            cmd = flush(cid, draw(st.sampled_from([1, 0xFFFFFFFF, 99, 3])))
        elif kind == "compare":
            cmd = compare_cmd(cid, 1, draw(st.integers(0, 100)), draw(st.integers(1, 8)),
                              equal=draw(st.booleans()))
        elif kind == "opcode":
            opcode = draw(st.sampled_from([0x7E, 0x04, 0x0C, 0x80]))
            cmd = other(cid, capsule(opcode, cid, 1, length=512 * (opcode == 0x7E)))
        else:
            cmd = draw(reads(cid))
        if cmd.kind == "r2t":
            outstanding.append(cmd)
        send.append(cmd)
    return sends


@st.composite
def cuts(draw, sends):
    """Where each send is cut into separate sends."""
    return [draw(st.lists(st.integers(1, max(1, sum(len(c.wire) for c in s) - 1)),
                          max_size=3)) for s in sends]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(data=st.data(), disable_sqflow=st.booleans())
def test_any_mix_is_answered_as_by_the_full_path(targets, data, disable_sqflow):
    sends = data.draw(streams())
    compare(targets, sends, splits=data.draw(cuts(sends)), disable_sqflow=disable_sqflow)


# ---- changes between two commands ----
def _ana(group, state):
    return lambda target, host: target.set_ana_state(NQN, io_port(target), group, state)


def _hosts(nsid, hosts):
    return lambda target, host: target.set_namespace_hosts(NQN, nsid, hosts)


def _replace_ns2(target, host):
    target.remove_namespace(NQN, 2)


def _restore_ns2(target, host):
    backend = MemoryBackend(MIB)
    backend.write(0, PATTERN[2])
    target.add_namespace(NQN, Namespace(backend, block_size=4096, source="mem:1M"), nsid=2)


def _shrink_ns1(target, host):
    target.resize_namespace(NQN, 1, MIB // 2)


def _shut_down(target, host):
    """CC.SHN = normal over the admin queue: CSTS.RDY clears, the I/O queue stays."""
    admin = host.ctrl.admin
    cc = admin.execute(Command(C.property_get(Property.CC))).dw0
    assert admin.execute(Command(C.property_set(Property.CC, cc | 1 << 14))).status == 0


@pytest.mark.parametrize("loop", LOOPS)
def test_changes_between_commands_apply_to_the_next_one(loop):
    """The lane reads the controller, namespace table, access lists and ANA states at every
    Read: a change between two Reads applies to the second, as on the full path."""
    ok, no = {}, {"lane": False}  # ok: as the static config says (a Read the lane takes)
    steps = [
        [R(1)],
        _ana(1, "inaccessible"), [R(2, **no)], [R(3, 2, **no)],
        _ana(1, "change"), [R(4, **no)],
        _ana(1, "persistent-loss"), [R(5, **no)],
        _ana(1, "non-optimized"), [R(6, **ok)],
        _ana(1, "optimized"), [R(7, **ok)],
        _ana(3, "inaccessible"), [R(8, 5, **no)], _ana(3, "optimized"), [R(9, 5, **ok)],
        _hosts(1, [OTHER_HOSTNQN]), [R(10, **no)], _hosts(1, None), [R(11, **ok)],
        _hosts(3, [OTHER_HOSTNQN, HOSTNQN]), [R(12, 3, lane=True)], _hosts(3, [OTHER_HOSTNQN]),
        [R(13, 3, **no)],
        _shrink_ns1, [R(14, 1, 1024, 1, **no)], [R(15, 1, 1023, 1, lane=True)],
        [R(16, 1, 1000, 32, **no)],
        _replace_ns2, [R(17, 2, **no)], _restore_ns2, [R(18, 2, 7, 2, lane=True)],
        _shut_down, [R(19, **no)], [R(20, 2, **no)],
    ]
    with serving(True, loop) as lane, serving(False, loop) as full:
        outcome = compare((lane, full), steps, lane_answers=8)
    errors = statuses(b"".join(outcome.answers))
    assert all(errors[cid] for cid in (2, 3, 4, 5, 8, 10, 13, 14, 16, 17, 19, 20))


class _FailingBackend(MemoryBackend):
    """A backend whose reads fail (a block device with a media error)."""

    def read(self, offset, length):
        raise OSError(5, "Input/output error")


class _ShortBackend(MemoryBackend):
    """A backend that answers a Read with less than was asked (a third party's bug)."""

    def read(self, offset, length):
        return super().read(offset, length)[:-512]


def _odd_backends(target, host):
    for nsid, kind in ((1, _FailingBackend), (2, _ShortBackend)):
        target.remove_namespace(NQN, nsid)
        backend = kind(MIB)
        backend.write(0, PATTERN[nsid])
        target.add_namespace(NQN, Namespace(backend, block_size=BLOCK[nsid],
                                            source="mem:1M"), nsid=nsid)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_backend_that_fails_or_answers_short_is_answered_as_on_the_full_path(loop):
    """The lane gives such a Read back to the full path: a failed or short read is an internal
    error (no DNR) in the error log, and the queue goes on (the lane used to let the failure
    close the connection, and to send a short answer as a whole one)."""
    steps = [_odd_backends, [R(1, **{"lane": False})], [R(2, 2, **{"lane": False})],
             [R(3, 5), R(4, 1, 3, 2, lane=False), R(5, 5, 1, 1)]]
    with serving(True, loop) as lane, serving(False, loop) as full:
        outcome = compare((lane, full), steps, lane_answers=1)  # R3; R5 follows a refusal
    done = statuses(b"".join(outcome.answers))
    assert done[1] == done[2] == done[4] == 0x6 and done[3] == done[5] == 0
    assert outcome.errors[0] == 3 and not outcome.closed


def test_no_lane_on_a_link_with_digests(targets):
    lane_target, _ = targets
    host = Host(lane_target, hdr_digest=True)
    try:
        assert host.lane is None
    finally:
        host.close()


# ---- the queue engine alone ----
def live_engine(*, sqflow_disabled=False, sqsize=127, run=False, **kw) -> ControllerQueue:
    """A live I/O queue; ``run``: its commands go to ``runner`` as they are parsed (as the
    target's connections take them), else they come back as events."""
    q = ControllerQueue(**kw)
    q.receive(codec.ic_req())
    q.data_to_send()
    q.configure(1, sqsize, sqflow_disabled)
    if run:
        q.on_command = runner(q)
    return q


def fake_read(nsid, slba, nlb, length):
    """The lane's contract on the namespaces of ``config()`` as this host sees them."""
    nlb += 1
    if nsid not in SERVED or slba + nlb > NBLOCKS[nsid] or nlb * BLOCK[nsid] != length:
        return None
    return _pattern(nsid, slba, nlb)


def runner(q: ControllerQueue):
    """A target by ``fake_read``'s contract for ``q``: Reads it serves succeed, anything else
    fails with one status."""
    def run(cid, sqe, data, c2h_length):
        if sqe[0] == READ and not sqe[1] & 3:
            (nsid,) = struct.unpack_from("<I", sqe, 4)
            slba, nlb = struct.unpack_from("<QH", sqe, 40)
            answer = fake_read(nsid, slba, nlb, c2h_length)
            if answer is not None:
                q.complete(cid, 0, data=answer)
                return
        q.complete(cid, 0x0B)
    return run


def execute(q: ControllerQueue, events) -> list:
    """What the target does with the events of one receive (``runner``), after it; returns
    them comparable."""
    seen = []
    run = runner(q)
    for ev in events:
        if type(ev) is CommandReceived:
            cid, sqe, data, c2h_length = ev
            seen.append(("cmd", cid, bytes(sqe), None if data is None else bytes(data),
                         c2h_length))
            run(cid, sqe, data, c2h_length)
        else:
            seen.append(repr(ev))
    return seen


def feed(q, data, splits) -> tuple[list, list]:
    """``data`` arriving in pieces cut at ``splits``, each taken as the server does: into the
    engine's buffer, ``buffer_updated``, the events run, the answers sent. Returns the events
    and the bytes sent, per piece."""
    edges = [0, *sorted({s for s in splits if 0 < s < len(data)}), len(data)]
    events, out = [], []
    for a, b in zip(edges, edges[1:]):
        piece = memoryview(data)[a:b]
        # Events per piece, as documented, not per receive: the receives inside a piece may
        # differ (a lane's H2CData that waits in staging opens all of it to the next
        # receive, where the framer keeps its 4 KiB window after a payload received in place).
        seen: list = []
        while len(piece) and q.state is not QueueState.TERMINATED:
            buf = q.get_buffer()
            k = min(len(buf), len(piece))
            buf[:k] = piece[:k]
            piece = piece[k:]
            seen += execute(q, q.buffer_updated(k))
        events.append(seen)
        out.append(b"".join(bytes(x) for x in q.data_to_send()))
    return events, out


ENGINE_KW = st.fixed_dictionaries({
    "sqflow_disabled": st.booleans(),
    "c2h_chunk": st.sampled_from([4096, C2H_CHUNK]),
    "max_transfer": st.sampled_from([8192, MIB]),
})


@st.composite
def engine_input(draw):
    """A stream of sends (see ``streams``) cut at every send's end and anywhere else."""
    sends = draw(streams(max_sends=3, max_cmds=8))
    data = b""
    splits = []
    for send in sends:
        data += b"".join(c.wire for c in send)
        splits.append(len(data))
    return data, splits + draw(st.lists(st.integers(1, len(data) - 1), max_size=12))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kw=ENGINE_KW)
def test_engine_lane_that_declines_everything_changes_nothing(data, kw):
    """A lane that answers nothing leaves the engine as it was: the same CommandReceived
    events, the same bytes out, for the same bytes in, however they arrive."""
    data, splits = data.draw(engine_input())
    plain, declining = live_engine(**kw), live_engine(**kw)
    assert declining.open_read_lane(lambda nsid, slba, nlb, length: None)
    assert feed(declining, data, splits) == feed(plain, data, splits)
    assert (declining.sqhd, declining.outstanding, declining.state) == (
        plain.sqhd, plain.outstanding, plain.state)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kw=ENGINE_KW)
def test_engine_lane_answers_as_the_full_path_in_any_segmentation(data, kw):
    """``fake_read`` as the lane, and as the target's Read behind the full path: the same
    bytes out after every piece of the same stream."""
    data, splits = data.draw(engine_input())
    plain, laned = live_engine(run=True, **kw), live_engine(run=True, **kw)
    assert laned.open_read_lane(fake_read)
    _, plain_out = feed(plain, data, splits)
    _, laned_out = feed(laned, data, splits)
    assert laned_out == plain_out  # after every piece, not only in the end
    assert (laned.sqhd, laned.outstanding, laned.state) == (
        plain.sqhd, plain.outstanding, plain.state)


def test_engine_lane_takes_plain_reads():
    plain, laned = live_engine(), live_engine()
    assert laned.open_read_lane(fake_read)
    data = b"".join(R(cid, 1, cid, 1 + cid).wire for cid in range(6))
    assert laned.receive(data) == []  # nothing reached the target
    assert len(execute(plain, plain.receive(data))) == 6
    sent = laned.data_to_send()
    assert b"".join(sent) == b"".join(bytes(b) for b in plain.data_to_send())
    assert len(sent) == 6  # each small answer one buffer (C2HData and CapsuleResp joined)


@pytest.mark.parametrize("ic,kw", [
    (codec.ic_req(dgst=1), {}), (codec.ic_req(dgst=2), {}), (codec.ic_req(dgst=3), {}),
    (codec.ic_req(hpda=1), {}), (codec.ic_req(), {"cpda": 1}), (None, {}),
], ids=["hdgst", "ddgst", "both-digests", "hpda", "cpda", "before-icreq"])
def test_open_read_lane_refuses_a_link_it_cannot_read(ic, kw):
    q = ControllerQueue(**kw)
    if ic is not None:
        q.receive(ic)
        q.data_to_send()
    assert q.open_read_lane(fake_read) is False
    assert q.read_lane is None
    if ic is not None:  # and every Read still reaches the target
        q.configure(1, 127)
        events = q.receive(codec.encode(codec.capsule_cmd(R(1).wire[8:72], hdgst=q.hdgst)))
        assert [type(e) for e in events] == [CommandReceived]


def test_open_read_lane_accepts_a_plain_link():
    q = live_engine()
    assert q.open_read_lane(fake_read) is True and q.read_lane is fake_read


ONE_RECEIVE = [pytest.param(sends, (connect or {"queue_size": 128})["queue_size"] - 1, id=name)
               for name, sends, connect in SAME_RECEIVE]


@pytest.mark.parametrize("sends,sqsize", ONE_RECEIVE)
def test_engine_lane_in_one_receive(sends, sqsize):
    """Commands run as they are parsed (``on_command``, as the target runs them): the full
    path answers these as the lane does (run after the whole receive, it did not)."""
    data = b"".join(c.wire for send in sends for c in send)
    ends = [sum(len(c.wire) for send in sends[:i + 1] for c in send) for i in range(len(sends))]
    plain, laned = live_engine(sqsize=sqsize, run=True), live_engine(sqsize=sqsize, run=True)
    assert laned.open_read_lane(fake_read)
    _, plain_out = feed(plain, data, ends)
    _, laned_out = feed(laned, data, ends)
    assert laned_out == plain_out, (f"\n  lane: {describe(laned_out[-1])}"
                                    f"\n  full: {describe(plain_out[-1])}")
