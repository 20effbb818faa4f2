"""The host side of one NVMe/TCP queue, sans I/O.

Usage by a transport::

    q = HostQueue(qid=0, hdgst=True)
    q.initiate()                              # queues the ICReq
    sock.sendmsg(q.data_to_send())
    events = q.receive(sock.recv(...))        # IcComplete, Completion, ...
    cid = q.submit(sqe, write=data)           # or read_into=buffer / read_len=n
    sock.sendmsg(q.data_to_send())

Commands carry their data: in-capsule when it fits the negotiated in-capsule size, otherwise
through R2T → H2CData split by MAXH2CDATA; reads land directly in the caller's buffer (the framer's
data sink points at it), so a 128 KiB read is received with no intermediate copy.
"""
from __future__ import annotations

import functools
import struct
from typing import Callable

from ..errors import ProtocolError
from ..spec.fabrics import ADMIN_ICD_SIZE
from ..spec.pdu import (T_C2H_DATA, T_C2H_TERMREQ, T_CAPSULE_CMD, T_CAPSULE_RESP, T_ICRESP,
                        T_R2T, DigestFlags, Fes, PduFlags, PduType)
from ..spec.sqe import PSDT_SGL
from ..spec.status import SC_DATA_XFER_ERROR
from ..spec.cqe import make_status
from ..wire import codec
from ..wire.crc import crc32c
from .events import Completion, IcComplete
from .queue import (_AWAIT_IC, _LIVE, _SGL_IN_CAPSULE, _SGL_TRANSPORT, QueueState,
                    _alloc, _QueueEngine)

_SGL = struct.Struct("<QI3xB")
_SQE_TAIL = struct.Struct("<BH")  # SQE flags and CID, from byte 1
# CapsuleCmd header, then the SQE: opcode, flags, CID, bytes 4-23, SGL1 (address, length, id),
# bytes 40-63
_pack_capsule = struct.Struct("<BBBBIBBH20sQI3xB24s").pack
_pack_read = codec.PLAIN_READ.pack  # a read given by its values
MIN_MAXH2CDATA = 4096
STATUS_TRANSPORT_ERROR = make_status(0, SC_DATA_XFER_ERROR, dnr=False)
_F_SUCCESS = PduFlags.SUCCESS
# The completion lane (``HostQueue.buffer_updated``) reads plain headers by value (wire.codec's
# PLAIN_* layouts); a C2HData's first four bytes as one int (flags 0, LAST_PDU, or
# LAST_PDU|SUCCESS), then PLEN and the PSH.
_unpack_resp = codec.PLAIN_RESP.unpack_from
_unpack_c2h = codec.PLAIN_XFER.unpack_from
_PLAIN_CAPSULE, _RESP_HEAD = codec.PLAIN_CAPSULE_HEAD, codec.PLAIN_RESP_HEAD
_C2H_SUCCESS = codec.C2H_HEAD_LAST_SUCCESS
_R2T_HEAD = codec.R2T_HEAD
_PLAIN_C2H = frozenset((int.from_bytes(bytes((T_C2H_DATA, 0, 24, 24)), "little"),
                        codec.C2H_HEAD_LAST, codec.C2H_HEAD_LAST_SUCCESS))
#: A Completion made without its generated __new__ (a Python frame per completion).
_completion = functools.partial(tuple.__new__, Completion)

class _Command:
    """What the host keeps of one outstanding command. Made by ``_new_command``, not by a
    constructor: a class's ``__init__`` is entered from C with its own frame, a tenth of the
    engine's submit work per command, where a module function's call is a plain Python call."""

    __slots__ = ("cid", "opcode", "write", "read", "context", "received", "sink_offset", "sent",
                 "in_capsule", "status_override")
    cid: int
    opcode: int
    write: memoryview | None
    read: memoryview | None
    context: object
    received: int  # C2HData bytes received so far
    sink_offset: int  # where the framer's data sink writes next
    sent: int  # H2CData bytes sent so far
    in_capsule: bool
    status_override: int  # a failure found by the transport (digest, short read)


def _new_command(cid: int, opcode: int, write: memoryview | None, read: memoryview | None,
                 context: object) -> _Command:
    c = _alloc(_Command)
    c.cid = cid
    c.opcode = opcode
    c.write = write
    c.read = read
    c.context = context
    c.received = c.sink_offset = c.sent = c.status_override = 0
    c.in_capsule = False
    return c


class HostQueue(_QueueEngine):
    """One host queue (admin when ``qid`` is 0)."""

    _receiver = "host"
    _term_type = PduType.H2CTermReq

    def __init__(self, qid: int = 0, *, queue_size: int = 32, hdgst: bool = False,
                 ddgst: bool = False, hpda: int = 0, maxr2t: int = 0,
                 max_data: int = 1 << 24, icd_size: int | None = None,
                 sqflow_disabled: bool = False) -> None:
        super().__init__(max_data)
        if not 0 <= hpda <= 31:
            raise ValueError("hpda must be 0..31")
        if queue_size < 2:
            raise ValueError("queue_size must be at least 2")
        self.qid = qid
        self.queue_size = queue_size
        self.want_hdgst = hdgst
        self.want_ddgst = ddgst
        self.hpda = hpda
        self.maxr2t = maxr2t
        self.cpda = 0
        self.maxh2cdata = 0
        #: Bytes of in-capsule data the controller accepts (admin: 8 KiB; I/O: from IOCCSZ).
        self.icd_size = ADMIN_ICD_SIZE if icd_size is None and qid == 0 else (icd_size or 0)
        self.sqflow_disabled = sqflow_disabled
        self.sqhd = 0
        self._cmds: dict[int, _Command] = {}
        self._next_cid = 0
        self.held = 0  # commands submitted since the last data_to_send
        self._initiated = False
        self._lone: _Command | None = None  # the read receive_buffers() planned for
        self.framer.data_sink = self._sink
        self.framer.pda = hpda

    # ---- calls ----
    def initiate(self) -> None:
        """Start the connection: queues the ICReq, the first thing to send."""
        if self.state is not _AWAIT_IC or self._initiated:
            raise RuntimeError("initiate() called twice")
        self._initiated = True
        self.outbox.append(codec.ic_req(hpda=self.hpda, dgst=self._dgst_bits(), maxr2t=self.maxr2t))

    def _dgst_bits(self) -> int:
        return (DigestFlags.HDGST_ENABLE if self.want_hdgst else 0) | (
            DigestFlags.DDGST_ENABLE if self.want_ddgst else 0)

    @property
    def outstanding(self) -> int:
        return len(self._cmds)

    def data_due(self) -> list | None:
        """``data_to_send()`` if the commands submitted since the last send should go now, else
        None (they stay held): the transports' coalescing rule. Admin commands go at once; on
        an I/O queue once half as many are held as are outstanding, so a lone command goes at
        once and a deep queue sends in batches while the peer still has work."""
        if self.qid and self.held < len(self._cmds) // 2:
            return None
        return self.data_to_send()

    def data_to_send(self) -> list:
        self.held = 0
        out, self.outbox = self.outbox, []  # as the base class does, one call less per send
        return out

    @property
    def can_submit(self) -> bool:
        return self.state is _LIVE and len(self._cmds) < self.queue_size - 1

    def submit(self, sqe: bytes | bytearray, write=None, read_into=None, read_len: int = 0,
               context: object = None) -> int:
        """Queue a command; returns its CID (the SQE's CID and SGL1 are filled in here).

        ``write`` is data for a host-to-controller transfer; ``read_into`` a writable buffer for a
        controller-to-host transfer (or ``read_len`` to have one allocated).
        """
        if len(sqe) != 64:
            raise ValueError(f"an SQE is 64 bytes, not {len(sqe)}")
        cmds = self._cmds
        cid = self._take_cid()
        if write is None:
            if read_into is not None:
                # a view of its own: the caller may release theirs before the data comes
                rmv = _writable_bytes(memoryview(read_into))
                length = len(rmv)
            elif read_len:
                rmv = memoryview(bytearray(read_len))
                length = read_len
            else:
                rmv = None
                length = 0
            # The CapsuleCmd in one call: the SQE with its CID, PSDT (SGL, as every Linux host)
            # and SGL1 (a transport data block) filled in.
            capsule = _pack_capsule(T_CAPSULE_CMD, 0, 72, 0, 72, sqe[0], sqe[1] | PSDT_SGL, cid,
                                    sqe[4:24], 0, length, _SGL_TRANSPORT, sqe[40:64])
            cmds[cid] = _new_command(cid, sqe[0], None, rmv, context)
            self.outbox.append(_digested(capsule) if self.hdgst else capsule)
            self.held += 1
            return cid
        sqe = bytearray(sqe)
        if read_into is not None or read_len:
            raise ValueError("a command moves data in one direction only")
        wmv = memoryview(write).cast("B")
        cmd = _new_command(cid, sqe[0], wmv, None, context)
        _SQE_TAIL.pack_into(sqe, 1, sqe[1] | PSDT_SGL, cid)
        if 0 < len(wmv) <= self.icd_size:
            cmd.in_capsule = True
            _SGL.pack_into(sqe, 24, 0, len(wmv), _SGL_IN_CAPSULE)
        else:
            _SGL.pack_into(sqe, 24, 0, len(wmv), _SGL_TRANSPORT)
        cmds[cid] = cmd
        self.outbox.extend(codec.capsule_cmd(sqe, wmv if cmd.in_capsule else None,
                                           hdgst=self.hdgst, ddgst=self.ddgst, pda=self.cpda))
        self.held += 1
        return cid

    def submit_read(self, opcode: int, nsid: int, slba: int, nlb: int, into,
                    context: object = None) -> int:
        """``submit`` for an NVM command that reads ``into`` a buffer, given by its values
        (SLBA in CDW10-11, ``nlb`` blocks, 1-based, in CDW12; every other SQE field 0) rather
        than as an SQE: the CapsuleCmd is packed from them in one call. Building an SQE only to cut
        it apart here cost ~4k instructions of the host's ~58k per QD1 read. A memoryview
        given as ``into`` is kept as it is (``submit`` makes its own), so it must not be released
        before the command completes."""
        return self._read(opcode, nsid, slba, nlb, into, context, self._hold)

    def send_read(self, opcode: int, nsid: int, slba: int, nlb: int, into, context: object,
                  send: Callable[[bytes], object]) -> int:
        """``submit_read``, then what ``data_due()`` gives handed to ``send`` (the transport's,
        given one buffer per call), as a caller that waits for this one read does. On a queue
        with nothing outstanding, the capsule goes to ``send`` before the command is recorded,
        so the bookkeeping runs while the controller works: at queue depth 1, work done before
        the send costs about twice its time in latency and work after it next to nothing
        (benchmarks/RESULTS.md). A ``send`` that raises leaves the command unrecorded."""
        if self._cmds:  # (with none outstanding, a live queue has nothing waiting to go)
            cid = self._read(opcode, nsid, slba, nlb, into, context, self._hold)
            for buf in self.data_due() or ():
                send(buf)
            return cid
        return self._read(opcode, nsid, slba, nlb, into, context, send)

    def _read(self, opcode: int, nsid: int, slba: int, nlb: int, into, context: object,
              send: Callable[[bytes], object]) -> int:
        """A read's CapsuleCmd packed and given to ``send``, then the command recorded."""
        cid = self._take_cid()
        rmv = _writable_bytes(into if into.__class__ is memoryview else memoryview(into))
        capsule = _pack_read(_PLAIN_CAPSULE, opcode | PSDT_SGL << 8, cid, nsid, len(rmv),
                             _SGL_TRANSPORT, slba, nlb - 1)  # raises on values out of range
        send(_digested(capsule) if self.hdgst else capsule)
        self._cmds[cid] = _new_command(cid, opcode, None, rmv, context)
        return cid

    def _hold(self, capsule: bytes) -> None:
        """The ``send`` of a command that waits in the outbox for ``data_to_send``."""
        self.outbox.append(capsule)
        self.held += 1

    def _take_cid(self) -> int:
        """A free CID for a new command, once the queue is known to take one."""
        cmds = self._cmds
        if self.state is not _LIVE:
            raise RuntimeError(f"queue {self.qid} is not live ({self.state.value})")
        if len(cmds) >= self.queue_size - 1:
            raise RuntimeError(f"queue {self.qid} is full ({self.queue_size - 1} outstanding)")
        cid = self._next_cid
        if cid in cmds:
            cid = self._free_cid(cid)
        self._next_cid = (cid + 1) & 0xFFFF
        return cid

    def fail_all(self) -> list[Completion]:
        """Forget every outstanding command (connection lost); returns what was outstanding."""
        lost = [Completion(c.cid, -1, 0, 0, 0, self.qid, None, c.context)
                for c in self._cmds.values()]
        self._cmds.clear()
        self._fill_dropped()
        return lost

    def _free_cid(self, taken: int) -> int:
        """The next free CID after ``taken`` (the usual next one is still outstanding)."""
        for step in range(1, 0x10000):
            cid = (taken + step) & 0xFFFF
            if cid not in self._cmds:
                return cid
        raise RuntimeError("no free command identifier")  # unreachable with queue_size ≤ 65535

    # ---- received PDUs ----
    def buffer_updated(self, nbytes: int) -> list:
        """The completion lane, then the full path for whatever it left.

        On a link without digests or padding, the PDUs that end a read or any command — a
        C2HData whose payload is already in staging, a CapsuleResp — are checked by value and
        completed here, and an R2T is answered with its H2CData, without the framer's PDU
        records and the dispatch between them: at queue depth 1 those layers were most of the
        host's Python work per read. The checks are ``_c2h_data``'s, ``_response``'s and
        ``_r2t``'s; where one fails, or another PDU comes, the lane stops at that byte and the
        full path takes over, so it decides (and reports) every case the lane does not pass
        (tests/protocol/test_host_lane.py compares the two).

        A C2HData the lane would take that the receive ended inside stays in staging for the
        lane's next turn when its rest is small (the framer too stages rests below
        ``DIRECT_MIN``) and it takes at most half of staging (so that it fits whole, with room
        to receive). Handed to the framer, it put the framer inside a payload, and the whole
        next receive went the full path: at queue depth 32 most receives end inside a PDU
        (−31 % of the engine's instructions per 4 KiB read there, benchmarks/instructions.py).
        Any other such C2HData — a large read's, whose header comes with the first bytes of
        its payload — is finished by the lane itself: what came is copied to the read's
        buffer, and the rest is received there in place (``get_buffer`` hands out the read's
        own buffer until it is whole: ``_QueueEngine._fill_begin``) and completed by value.
        The framer's way for it was a PDU record, the data sink and ``_handle``: about a dozen
        Python calls per 128 KiB read."""
        if self._fill is not None:
            return self._fill_updated(nbytes)
        fr = self.framer
        if self.state is not _LIVE or not fr.at_header(nbytes):
            return _QueueEngine.buffer_updated(self, nbytes)
        buf = fr.staging
        view = fr.view
        rd = fr.rd
        wr = fr.wr
        cmds = self._cmds
        events: list = []
        waiting = False
        while wr - rd >= 24:
            t = buf[rd]
            if t == T_C2H_DATA:  # a read's data; with SUCCESS also its end
                head, plen, cid, _, datao, datal = _unpack_c2h(buf, rd)
                cmd = cmds.get(cid)
                if (head not in _PLAIN_C2H or datal != plen - 24 or not datal
                        or datal > fr.max_data or cmd is None or cmd.read is None
                        or datao != cmd.received):
                    break
                read = cmd.read
                end = datao + datal
                if end > len(read) or (head == _C2H_SUCCESS and end != len(read)):
                    break
                if wr - rd < plen:  # not whole yet (a receive ended inside it)
                    waiting = fr.waits(plen, wr - rd)
                    if not waiting:  # the rest is received in place, by the lane
                        rd = wr = self._fill_begin(cmd, read, datao, end, head == _C2H_SUCCESS,
                                                   rd + 24)
                    break
                read[datao:end] = view[rd + 24:rd + plen]
                fr.in_place = False  # payloads come through staging: receive into all of it
                rd += plen
                cmd.received = cmd.sink_offset = end
                if head == _C2H_SUCCESS:
                    del cmds[cid]
                    if not self.sqflow_disabled:
                        self.sqhd = (self.sqhd + 1) % self.queue_size
                    events.append(_completion((cid, cmd.status_override, 0, 0, self.sqhd,
                                               self.qid, read, cmd.context)))
            elif t == T_CAPSULE_RESP:
                head, dw0, dw1, sqhd, sqid, cid, st = _unpack_resp(buf, rd)
                if head != _RESP_HEAD:
                    break
                cmd = cmds.pop(cid, None)
                if cmd is None:
                    break
                rd += 24
                if not self.sqflow_disabled:
                    self.sqhd = sqhd
                read = cmd.read
                if st & 0xFFFE:
                    status = st >> 1
                elif cmd.status_override:
                    status = cmd.status_override
                elif read is not None and cmd.received != len(read):
                    status = STATUS_TRANSPORT_ERROR
                else:
                    status = 0
                events.append(_completion((cid, status, dw0, dw1, sqhd, sqid, read,
                                           cmd.context)))
            elif t == T_R2T:  # a Write's data asked for: _r2t's checks by value
                head, plen, cid, ttag, r2to, r2tl = _unpack_c2h(buf, rd)
                cmd = cmds.get(cid)
                if (head != _R2T_HEAD or plen != 24 or cmd is None or cmd.write is None
                        or cmd.in_capsule or not r2tl or r2to != cmd.sent
                        or r2to + r2tl > len(cmd.write)):
                    break
                rd += 24
                self._send_data(cmd, ttag, r2to, r2to + r2tl)
            else:
                break
        fr.rd = rd
        if rd != wr and not waiting:
            events += _QueueEngine.buffer_updated(self, 0)
        return events

    def _filled(self, cmd: _Command, end: int, last: bool) -> list:
        """The payload the lane filled is whole: the read completes when SUCCESS ended it."""
        cmd.received = cmd.sink_offset = end
        if not last:
            return []
        cid = cmd.cid
        del self._cmds[cid]
        if not self.sqflow_disabled:
            self.sqhd = (self.sqhd + 1) % self.queue_size
        return [_completion((cid, cmd.status_override, 0, 0, self.sqhd, self.qid, cmd.read,
                             cmd.context))]

    def receive_buffers(self) -> list | None:
        """Where the next receive should land when a lone read can take its data in place: the
        staging buffer for the C2HData header, the read's own buffer for its payload, staging
        again for what follows (a scatter receive: ``recvmsg_into``); None otherwise — receive
        into ``get_buffer()`` — and then ``buffers_updated`` is not to be called.

        At queue depth 1 the host waits for one answer it can foresee: a C2HData header for the
        read's whole payload, then SUCCESS or a CapsuleResp. Receiving the payload where it
        belongs and checking the headers around it (``buffers_updated``) skips the copy out of
        staging and the lane's work per PDU, ~3 µs of the host's part of a QD1 round trip here
        (benchmarks/RESULTS.md). Offered on a live link without digests or padding, with
        nothing else outstanding or buffered, for a read whose data has not begun, that one
        C2HData may carry (the framer's ``max_data``) and that staging could hold if the answer
        is something else."""
        fr = self.framer
        cmds = self._cmds
        if (len(cmds) != 1 or self.state is not _LIVE or fr.rd != fr.wr or self._fill is not None
                or not fr.at_header(0)):
            return None
        for cmd in cmds.values():
            read = cmd.read
            if read is None or cmd.received or not read or len(read) > fr.max_data:
                return None
            room = len(fr.staging) - 24 - len(read)
            if room < 24:
                return None
            fr.rd = fr.wr = 0
            self._lone = cmd
            view = fr.view
            return [view[:24], read, view[24:24 + room]]
        return None

    def buffers_updated(self, nbytes: int) -> list | None:
        """``nbytes`` (> 0) were received into ``receive_buffers()``'s buffers, filling them in
        order. None: they were exactly the foreseen answer — a C2HData header the lane would
        take for the lone read's whole payload, the payload, and either SUCCESS on that header
        or a CapsuleResp for the same command with status 0 (DW0, DW1 0), nothing more — and
        the read is complete, with status 0 and its data in place. No Completion is made for
        it: the caller waits for that very command, and at QD1 building one was ~1 µs of the
        round trip here.

        Otherwise the events, as ``buffer_updated`` gives them: anything else (another PDU, a
        header the checks refuse, an error status, an answer not yet whole or followed by
        more) is first put back in staging in stream order, so that it is decided and reported
        exactly as if it had been received there (tests/protocol/test_host_scatter.py compares
        the two)."""
        fr = self.framer
        cmd = self._lone
        self._lone = None
        read = cmd.read
        size = len(read)
        staging = fr.staging
        rest = nbytes - 24 - size
        if rest == 0 or rest == 24:  # (a transport failure can only come later: no digests)
            head, plen, cid, _, datao, datal = _unpack_c2h(staging, 0)
            if cid == cmd.cid and datao == 0 and datal == size and plen == 24 + size:
                if rest == 0 and head == _C2H_SUCCESS:
                    del self._cmds[cid]
                    fr.rd = fr.wr = 0
                    if not self.sqflow_disabled:
                        self.sqhd = (self.sqhd + 1) % self.queue_size
                    return None
                if rest == 24 and head in _PLAIN_C2H and head != _C2H_SUCCESS:
                    head, dw0, dw1, sqhd, sqid, rcid, st = _unpack_resp(staging, 24)
                    if (head == _RESP_HEAD and rcid == cid and not st & 0xFFFE and not dw0
                            and not dw1 and sqid == self.qid):
                        del self._cmds[cid]
                        fr.rd = fr.wr = 0
                        if not self.sqflow_disabled:
                            self.sqhd = sqhd
                        return None
        if nbytes > 24:  # the bytes that went to the read buffer go back between the others
            moved = min(nbytes - 24, size)
            after = nbytes - 24 - moved
            if after:
                staging[24 + moved:24 + moved + after] = staging[24:24 + after]
            staging[24:24 + moved] = read[:moved]
        return self.buffer_updated(nbytes)

    def _handle(self, pdu):
        t = pdu.pdu_type
        if self.state is _AWAIT_IC and t != T_C2H_TERMREQ:
            if t != T_ICRESP:
                raise ProtocolError(f"{pdu.name} before ICResp", Fes.PDU_SEQUENCE_ERROR, 0,
                                    pdu.raw_header)
            return self._icresp(pdu)
        if t == T_CAPSULE_RESP:
            return self._response(pdu)
        if t == T_C2H_DATA:
            return self._c2h_data(pdu)
        if t == T_C2H_TERMREQ:
            return self._peer_terminated(pdu)
        if t == T_R2T:
            self._r2t(pdu)
            return None
        raise ProtocolError(f"unexpected {pdu.name} on a live queue", Fes.PDU_SEQUENCE_ERROR,
                            0, pdu.raw_header)

    def _icresp(self, pdu) -> IcComplete:
        hdr = pdu.raw_header
        if pdu.pfv != 0:
            raise ProtocolError(f"unsupported PFV {pdu.pfv}", Fes.UNSUPPORTED_PARAMETER, 8, hdr)
        if pdu.cpda > 31:
            raise ProtocolError(f"CPDA {pdu.cpda} > 31", Fes.INVALID_HEADER_FIELD, 10, hdr)
        want = self._dgst_bits()
        if pdu.dgst != want:  # digests must match what we asked for exactly (pitfall 9)
            raise ProtocolError(f"controller digests {pdu.dgst:#x}, requested {want:#x}",
                                Fes.UNSUPPORTED_PARAMETER, 11, hdr)
        if pdu.maxh2cdata < MIN_MAXH2CDATA or pdu.maxh2cdata % 4:
            raise ProtocolError(f"MAXH2CDATA {pdu.maxh2cdata} invalid",
                                Fes.INVALID_HEADER_FIELD, 12, hdr)
        self.cpda = pdu.cpda
        self.maxh2cdata = pdu.maxh2cdata
        self.hdgst = self.framer.hdgst = self.want_hdgst
        self.ddgst = self.framer.ddgst = self.want_ddgst
        self.state = QueueState.LIVE
        return IcComplete(self.hdgst, self.ddgst, self.hpda, self.cpda, self.maxh2cdata,
                          self.maxr2t)

    def _lookup(self, cid: int, pdu, fei: int) -> _Command:
        cmd = self._cmds.get(cid)
        if cmd is None:
            raise _unknown(cid, pdu, fei)
        return cmd

    def _response(self, pdu) -> Completion:
        cmd = self._cmds.pop(pdu.cid, None)  # _lookup's work, inline on the per-PDU path
        if cmd is None:
            raise _unknown(pdu.cid, pdu, 20)
        if not self.sqflow_disabled:
            self.sqhd = pdu.sqhd
        status = (pdu.status >> 1) & 0x7FFF
        if status == 0 and cmd.status_override:
            status = cmd.status_override
        elif status == 0 and cmd.read is not None and cmd.received != len(cmd.read):
            status = STATUS_TRANSPORT_ERROR  # a short read is a failure (pitfall 13)
        data = cmd.read if cmd.read is not None else None
        return Completion(pdu.cid, status, pdu.dw0, pdu.dw1, pdu.sqhd, pdu.sqid, data,
                           cmd.context)

    def _sink(self, pdu):
        """Framer data sink: C2HData payloads go straight into the command's read buffer."""
        if pdu.pdu_type != T_C2H_DATA:
            return None
        cmd = self._cmds.get(pdu.cccid)
        if cmd is None or cmd.read is None or pdu.datao != cmd.sink_offset:
            return None
        end = pdu.datao + pdu.datal
        if end > len(cmd.read):
            return None
        cmd.sink_offset = end  # the framer may deliver the next PDU's header before we see this one
        return cmd.read[pdu.datao:end]

    def _c2h_data(self, pdu) -> Completion | None:
        cmd = self._cmds.get(pdu.cccid)
        if cmd is None:
            raise _unknown(pdu.cccid, pdu, 8)
        hdr = pdu.raw_header
        if cmd.read is None:
            raise ProtocolError("C2HData for a command without read data",
                                Fes.INVALID_HEADER_FIELD, 8, hdr)
        if pdu.datao != cmd.received:
            raise ProtocolError(f"C2HData offset {pdu.datao}, expected {cmd.received}",
                                Fes.PDU_SEQUENCE_ERROR, 12, hdr)
        if pdu.datao + pdu.datal > len(cmd.read):
            raise ProtocolError("C2HData beyond the command's data",
                                Fes.DATA_TRANSFER_OUT_OF_RANGE, 16, hdr)
        if not (isinstance(pdu.data, memoryview) and pdu.data.obj is cmd.read.obj):
            cmd.read[pdu.datao:pdu.datao + pdu.datal] = pdu.data  # the sink was not used
        cmd.received += pdu.datal
        if pdu.ddgst_ok is False:
            cmd.status_override = STATUS_TRANSPORT_ERROR  # non-fatal (as the Linux host)
        if pdu.flags & _F_SUCCESS:
            if cmd.received != len(cmd.read):
                raise ProtocolError("SUCCESS flag before all data arrived",
                                    Fes.PDU_SEQUENCE_ERROR, 1, hdr)
            del self._cmds[cmd.cid]
            if not self.sqflow_disabled:
                self.sqhd = (self.sqhd + 1) % self.queue_size
            return Completion(cmd.cid, cmd.status_override, 0, 0, self.sqhd, self.qid,
                               cmd.read, cmd.context)
        return None

    def _r2t(self, pdu) -> None:
        cmd = self._lookup(pdu.cccid, pdu, 8)
        hdr = pdu.raw_header
        if cmd.write is None or cmd.in_capsule:
            raise ProtocolError("R2T for a command without R2T data", Fes.PDU_SEQUENCE_ERROR,
                                8, hdr)
        if pdu.r2tl == 0:
            raise ProtocolError("R2T with R2TL 0", Fes.INVALID_HEADER_FIELD, 16, hdr)
        if pdu.r2to != cmd.sent:
            raise ProtocolError(f"R2T offset {pdu.r2to}, expected {cmd.sent}",
                                Fes.PDU_SEQUENCE_ERROR, 12, hdr)
        end = pdu.r2to + pdu.r2tl
        if end > len(cmd.write):
            raise ProtocolError("R2T beyond the command's data", Fes.DATA_TRANSFER_OUT_OF_RANGE,
                                16, hdr)
        self._send_data(cmd, pdu.ttag, pdu.r2to, end)

    def _send_data(self, cmd: _Command, ttag: int, off: int, end: int) -> None:
        """The H2CData PDUs answering an R2T for ``cmd``'s data ``[off, end)``, split by
        MAXH2CDATA, LAST_PDU on the final one."""
        while off < end:
            n = min(self.maxh2cdata, end - off)
            self.outbox.extend(codec.h2c_data(cmd.cid, ttag, off, cmd.write[off:off + n],
                                            last=off + n == end, hdgst=self.hdgst,
                                            ddgst=self.ddgst, pda=self.cpda))
            off += n
        cmd.sent = end


_DIGESTED_HEAD = codec.CH.pack(T_CAPSULE_CMD, PduFlags.HDGSTF, 72, 0, 76)


def _digested(capsule: bytes) -> bytes:
    """A packed CapsuleCmd without data (flags 0, PLEN 72), as sent on a link with header
    digests: HDGSTF and PLEN 76 in its common header, the digest of the header after it."""
    header = _DIGESTED_HEAD + capsule[8:]
    return header + crc32c(header).to_bytes(4, "little")


def _writable_bytes(rmv: memoryview) -> memoryview:
    """``rmv`` as the flat, writable byte view a read lands in."""
    if rmv.format != "B" or rmv.ndim != 1:
        rmv = rmv.cast("B")
    if rmv.readonly:
        raise ValueError("read buffer must be writable")
    return rmv


def _unknown(cid: int, pdu, fei: int) -> ProtocolError:
    return ProtocolError(f"{pdu.name} for unknown command {cid:#x}", Fes.INVALID_HEADER_FIELD,
                         fei, pdu.raw_header)
