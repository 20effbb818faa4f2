"""The controller side of one NVMe/TCP queue, sans I/O.

The engine owns everything about moving a command's data: it answers ICReq, validates each capsule's
SGL against the negotiated limits (answering bad ones itself with an NVMe status and DNR, so a
command reaches the target only when it is well formed), solicits host data with one R2T covering
the whole transfer (as the Linux and SPDK targets do), checks every H2CData against that R2T, and
turns ``complete()`` into C2HData PDUs and a CapsuleResp. What a command *means* is the target's
business: it receives ``CommandReceived`` (or a call of ``on_command``) and answers with
``complete``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

from ..errors import ProtocolError
from ..spec.cqe import make_status
from ..spec.fabrics import ADMIN_ICD_SIZE
from ..spec.opcodes import NvmOpcode
from ..spec.pdu import (T_CAPSULE_CMD, T_H2C_DATA, T_H2C_TERMREQ,
                        T_ICREQ, DigestFlags, Fes, PduFlags, PduType)
from ..spec.sqe import PSDT_SGL
from ..spec.status import (SC_CID_CONFLICT, SC_DATA_XFER_ERROR, SC_SGL_INVALID_DATA,
                           SC_SGL_INVALID_OFFSET, SC_SGL_INVALID_TYPE, SCT_GENERIC)
from ..wire import codec
from .events import CommandReceived, IcComplete
from .queue import (_AWAIT_IC, _LIVE, _SGL_IN_CAPSULE, _SGL_TRANSPORT, QueueState,
                    _QueueEngine)

_SGL = struct.Struct("<QI3xB")
#: In-capsule data bytes offered on I/O queues (IOCCSZ) unless configured. Larger than the
#: Linux target's 16 KiB on purpose: a userspace target allocates a command's buffer when its
#: data comes, in the capsule or after an R2T alike, so a larger size costs no memory held in
#: advance, while every write that fits skips the R2T round trip (the R2T sent, the host's
#: turn to answer it, the H2CData header). 128 KiB writes 8 deep, host and target here:
#: 1.47x the rate of the R2T way (benchmarks/RESULTS.md).
DEFAULT_IO_ICD_SIZE = 128 * 1024
LINUX_MAXH2CDATA = 0x400000
_F_LAST = PduFlags.LAST_PDU
# The read lane (``ControllerQueue.read_lane``) reads and answers plain headers by value
# (wire.codec's PLAIN_* layouts).
_unpack_lane = codec.PLAIN_READ.unpack_from
_pack_c2h_whole = codec.PLAIN_C2H.pack
_pack_resp_ok = codec.PLAIN_RESP.pack  # with DW0, DW1 and status 0
_PLAIN_CAPSULE, _RESP_HEAD = codec.PLAIN_CAPSULE_HEAD, codec.PLAIN_RESP_HEAD
_DATA_CAPSULE = codec.DATA_CAPSULE_HEAD  # PLEN follows
_unpack_addr = struct.Struct("<Q").unpack_from  # SGL1's address: 0 for in-capsule data
_C2H_LAST, _C2H_LAST_SUCCESS = codec.C2H_HEAD_LAST, codec.C2H_HEAD_LAST_SUCCESS
_unpack_h2c = codec.PLAIN_XFER.unpack_from
_H2C_LAST = codec.H2C_HEAD_LAST
_PLAIN_H2C = frozenset((codec.H2C_HEAD, _H2C_LAST))
#: Answers up to this many data bytes are joined into one buffer: copying 4 KiB costs less than
#: a gathered send of three pieces; larger ones are sent as they are.
_JOIN_MAX = 16384
_join = b"".join
_READ = int(NvmOpcode.READ)
_READ_SGL = _READ | PSDT_SGL << 8
_WRITE_SGL = int(NvmOpcode.WRITE) | PSDT_SGL << 8

#: The target's side of the read lane: (nsid, slba, nlb as in the SQE, byte length) → the data
#: of a Read that would succeed, or None for the full path to decide (and report).
ReadLane = Callable[[int, int, int, int], object]


def _status(sc: int, dnr: bool = True, sct: int = SCT_GENERIC) -> int:
    return make_status(sct, sc, dnr=dnr)


def data_direction(sqe: bytes) -> int:
    """Bits 1:0 of the opcode (FCTYPE for Fabrics): 0 none, 1 host→controller, 2 controller→host."""
    return (sqe[4] if sqe[0] == 0x7F else sqe[0]) & 3


@dataclass(slots=True)
class _Command:
    cid: int
    sqe: bytes
    c2h_length: int = 0
    buf: memoryview | None = None
    received: int = 0
    sink_offset: int = 0
    ttag: int = -1
    ddgst_bad: bool = False


class ControllerQueue(_QueueEngine):
    """One controller queue. ``configure`` is called when the Connect command has been accepted."""

    _receiver = "controller"
    _term_type = PduType.C2HTermReq

    def __init__(self, *, cpda: int = 0, maxh2cdata: int = LINUX_MAXH2CDATA,
                 icd_size: int = DEFAULT_IO_ICD_SIZE, max_transfer: int = 1 << 20,
                 c2h_chunk: int = 1 << 17, allow_digests: bool = True) -> None:
        if maxh2cdata < 4096 or maxh2cdata % 4:
            raise ValueError("maxh2cdata must be ≥ 4096 and a multiple of 4")
        super().__init__(max(maxh2cdata, ADMIN_ICD_SIZE, icd_size))
        self.cpda = cpda
        self.hpda = 0
        self.maxh2cdata = maxh2cdata
        self.max_transfer = max_transfer
        self.c2h_chunk = c2h_chunk
        self.allow_digests = allow_digests
        self.io_icd_size = icd_size
        self.icd_size = ADMIN_ICD_SIZE  # until Connect says which queue this is
        self.qid = 0
        self.depth = 32
        self.sqflow_disabled = False
        self.sqhd = 0
        self._cmds: dict[int, _Command] = {}
        self._ttags: dict[int, _Command] = {}
        self._next_ttag = 0
        self.framer.pda = cpda
        self.framer.data_sink = self._sink
        #: Plain Reads answered in ``buffer_updated`` itself (``open_read_lane``); None: every
        #: command takes the full path.
        self.read_lane: ReadLane | None = None
        #: Where ready commands go, called with a ``CommandReceived``'s fields the moment each
        #: is parsed (None: they are returned as events). A target that answers at once then
        #: answers in arrival order, interleaved with what the engine answers itself (R2T,
        #: rejected SGLs, CID conflicts), and a command it completed is no longer outstanding
        #: for the next one: the same answers however the bytes were split into receives,
        #: and the same as the read lane gives.
        self.on_command: Callable[[int, bytes, object, int], None] | None = None

    def configure(self, qid: int, sqsize: int, sqflow_disabled: bool = False) -> None:
        """The Connect on this queue succeeded: from now on apply its size and kind."""
        self.qid = qid
        self.depth = sqsize + 1
        self.sqflow_disabled = sqflow_disabled
        self.icd_size = ADMIN_ICD_SIZE if qid == 0 else self.io_icd_size

    def open_read_lane(self, lane: ReadLane) -> bool:
        """Answer plain Reads through ``lane`` from now on (see ``buffer_updated``); only on a
        live link without digests or padding, whose PDUs the lane's fixed layouts describe."""
        if self.state is not _LIVE or self.hdgst or self.ddgst or self.hpda or self.cpda:
            return False
        self.read_lane = lane
        # one C2HData PDU's worth, within MDTS: what a lane-answered Read may move
        self._lane_limit = min(self.c2h_chunk, self.max_transfer)
        return True

    @property
    def outstanding(self) -> int:
        return len(self._cmds)

    # ---- answers ----
    def complete(self, cid: int, status: int = 0, *, dw0: int = 0, dw1: int = 0,
                 data=None) -> None:
        """Finish command ``cid``; ``status`` is the 15-bit status (use spec.cqe.make_status)."""
        if self.state is not _LIVE:
            return  # the connection is gone; nothing can be sent
        cmd = self._cmds.pop(cid, None)
        if cmd is None:
            raise RuntimeError(f"command {cid:#x} is not outstanding")
        if cmd.ttag >= 0:
            self._ttags.pop(cmd.ttag, None)
        success_only = False
        if data is not None and len(data) and status == 0:
            mv = memoryview(data).cast("B")
            if len(mv) > cmd.c2h_length:
                raise ValueError(f"{len(mv)} bytes of data for a {cmd.c2h_length}-byte read")
            success_only = self.sqflow_disabled and dw0 == 0 and dw1 == 0
            n = len(mv)
            chunk = self.c2h_chunk
            final = (n - 1) // chunk * chunk  # where the last C2HData starts
            for off in range(0, n, chunk):
                last = off == final
                self.outbox.extend(codec.c2h_data(cid, off, mv[off:off + chunk], last=last,
                                                  success=last and success_only,
                                                  hdgst=self.hdgst, ddgst=self.ddgst,
                                                  pda=self.hpda))
        if not self.sqflow_disabled:
            self.sqhd = (self.sqhd + 1) % self.depth
        if not success_only:
            self.outbox.extend(codec.capsule_resp(cid, (status & 0x7FFF) << 1, dw0=dw0, dw1=dw1,
                                                sqhd=0 if self.sqflow_disabled else self.sqhd,
                                                sqid=self.qid, hdgst=self.hdgst))

    # ---- received PDUs ----
    def buffer_updated(self, nbytes: int) -> list:
        """The read lane, then the full path for whatever it left.

        At queue depth 1 a 4 KiB read's Python work on the target was about as long as the
        whole raw round trip; most of it was the layers a command crosses (framer → PDU record
        → event → controller → handler → completion → encoders). A Read that arrives as a
        plain CapsuleCmd (no digests or padding on the link, no in-capsule data, SGL
        transport data block, CID free, one C2HData PDU's worth) is checked by value here and
        given to ``read_lane``, the target's own checks of the same command; its data goes out
        as the C2HData and CapsuleResp ``complete`` would build. Anything else, or anything
        the target's checks would refuse, stops the lane where it is and the full path takes
        over from that byte on, so what the lane does not answer is answered exactly as
        before (tests/target/test_read_lane.py compares the two byte for byte).

        A plain Write whose data is in the capsule (PDO 72, within the in-capsule size) is
        checked as ``_capsule`` checks it and handed to the target with its data in a buffer
        of its own: copied when whole in staging, else received there in place (below).
        A plain Write with a transport SGL is answered here with its R2T, and its data comes
        through the lane too: a plain H2CData that ``_h2c_data`` would
        take is checked by value, and copied into the command's buffer when whole in staging;
        when a receive ended inside it, it waits there if small (``Framer.waits``), else the
        rest of its payload is received in place (``_fill_begin``), as the host's lane does
        with a large read's. The framer's way for it was a PDU record, the data sink and
        ``_handle``: about fifteen Python calls per 128 KiB write
        (tests/protocol/test_write_lane.py compares the two)."""
        if self._fill is not None:
            return self._fill_updated(nbytes)
        lane = self.read_lane
        fr = self.framer
        if lane is None or self.state is not _LIVE or not fr.at_header(nbytes):
            return _QueueEngine.buffer_updated(self, nbytes)
        buf = fr.staging
        rd = fr.rd
        wr = fr.wr
        cmds = self._cmds
        out = self.outbox
        limit = self._lane_limit
        events: list = []
        try:
            while wr - rd >= 24:
                if wr - rd >= 72:  # a plain capsule (the lane's most frequent PDU) first
                    head, op, cid, nsid, length, sgl_id, slba, nlb = _unpack_lane(buf, rd)
                    if head == _PLAIN_CAPSULE:
                        if sgl_id != _SGL_TRANSPORT or cid in cmds or len(cmds) >= self.depth:
                            break
                        if op == _READ_SGL and 0 < length <= limit:
                            data = lane(nsid, slba, nlb, length)
                            if data is None:
                                break
                            rd += 72
                            if self.sqflow_disabled:
                                answer = (_pack_c2h_whole(_C2H_LAST_SUCCESS, 24 + length, cid,
                                                          length), data)
                            else:
                                self.sqhd = sqhd = (self.sqhd + 1) % self.depth
                                answer = (_pack_c2h_whole(_C2H_LAST, 24 + length, cid, length),
                                          data,
                                          _pack_resp_ok(_RESP_HEAD, 0, 0, sqhd, self.qid, cid, 0))
                            if length <= _JOIN_MAX:
                                out.append(_join(answer))
                            else:
                                out += answer
                            continue
                        if op == _WRITE_SGL and 0 < length <= self.max_transfer:
                            rd += 72  # its data is asked for at once (_capsule's way)
                            self._solicit(cid, bytes(fr.view[rd - 64:rd]), length)
                            continue
                        break
                    if head & 0xFFFFFFFF == _DATA_CAPSULE:  # a Write with its data: _capsule's
                        plen = head >> 32                   # checks of in-capsule data by value
                        if (op != _WRITE_SGL or sgl_id != _SGL_IN_CAPSULE or plen != 72 + length
                                or not 0 < length <= self.icd_size or length > fr.max_data
                                or length > self.max_transfer or _unpack_addr(buf, rd + 32)[0]
                                or cid in cmds or len(cmds) >= self.depth):
                            break
                        whole = wr - rd >= plen  # if not, it is taken as a cut H2CData is
                        if not whole and fr.waits(plen, wr - rd):  # (below)
                            return events
                        into = memoryview(bytearray(length))
                        cmds[cid] = cmd = _Command(cid, bytes(fr.view[rd + 8:rd + 72]), buf=into)
                        if not whole:
                            rd = self._fill_begin(cmd, into, 0, length, True, rd + 72)
                            return events
                        into[:] = fr.view[rd + 72:rd + plen]
                        rd += plen
                        fr.in_place = False
                        fr.rd = rd  # (the target runs the Write now: its bytes are taken)
                        event = self._received(cid, cmd.sqe, into, 0)
                        if event is not None:
                            events.append(event)
                        out = self.outbox
                        continue
                if buf[rd] != T_H2C_DATA:
                    break
                # a Write's data: _h2c_data's checks by value
                head, plen, cccid, ttag, datao, datal = _unpack_h2c(buf, rd)
                cmd = self._ttags.get(ttag)
                if (head not in _PLAIN_H2C or datal != plen - 24 or not datal
                        or datal > self.maxh2cdata or cmd is None or cmd.cid != cccid
                        or datao != cmd.received):
                    break
                into = cmd.buf
                end = datao + datal
                last = end == len(into)
                if end > len(into) or (head == _H2C_LAST) != last:
                    break
                if wr - rd < plen:  # not whole yet (a receive ended inside it): the turn ends
                    if not fr.waits(plen, wr - rd):  # the rest is received in place, by the lane
                        rd = self._fill_begin(cmd, into, datao, end, last, rd + 24)
                    return events
                into[datao:end] = fr.view[rd + 24:rd + plen]
                rd += plen
                fr.in_place = False  # payloads come through staging: receive into all of it
                cmd.received = cmd.sink_offset = end
                if last:
                    fr.rd = rd  # (the target runs the Write now: its bytes are taken)
                    event = self._data_done(cmd)
                    if event is not None:
                        events.append(event)
                    out = self.outbox  # (the target may have taken what was in it meanwhile)
        finally:  # what the lane answered is consumed, even if the target's call raised
            fr.rd = rd
        if rd == wr:
            return events
        return events + _QueueEngine.buffer_updated(self, 0)

    def _handle(self, pdu):
        t = pdu.pdu_type
        if self.state is _AWAIT_IC and t != T_H2C_TERMREQ:
            if t != T_ICREQ:
                raise ProtocolError(f"{pdu.name} before ICReq", Fes.PDU_SEQUENCE_ERROR, 0,
                                    pdu.raw_header)
            return self._icreq(pdu)
        if t == T_CAPSULE_CMD:
            return self._capsule(pdu)
        if t == T_H2C_DATA:
            return self._h2c_data(pdu)
        if t == T_H2C_TERMREQ:
            return self._peer_terminated(pdu)
        raise ProtocolError(f"unexpected {pdu.name} on a live queue", Fes.PDU_SEQUENCE_ERROR, 0,
                            pdu.raw_header)

    def _icreq(self, pdu) -> IcComplete:
        hdr = pdu.raw_header
        if pdu.pfv != 0:
            raise ProtocolError(f"unsupported PFV {pdu.pfv}", Fes.UNSUPPORTED_PARAMETER, 8, hdr)
        if pdu.hpda > 31:
            raise ProtocolError(f"HPDA {pdu.hpda} > 31", Fes.INVALID_HEADER_FIELD, 10, hdr)
        if pdu.dgst & ~0x3:
            raise ProtocolError(f"reserved DGST bits {pdu.dgst:#x}", Fes.INVALID_HEADER_FIELD,
                                11, hdr)
        if pdu.dgst and not self.allow_digests:
            raise ProtocolError("digests are not supported here", Fes.UNSUPPORTED_PARAMETER, 11,
                                hdr)
        self.hpda = pdu.hpda
        self.hdgst = self.framer.hdgst = bool(pdu.dgst & DigestFlags.HDGST_ENABLE)
        self.ddgst = self.framer.ddgst = bool(pdu.dgst & DigestFlags.DDGST_ENABLE)
        self.outbox.append(codec.ic_resp(cpda=self.cpda, dgst=pdu.dgst,
                                       maxh2cdata=self.maxh2cdata))
        self.state = QueueState.LIVE
        return IcComplete(self.hdgst, self.ddgst, self.hpda, self.cpda, self.maxh2cdata,
                          pdu.maxr2t)

    def _reject(self, cid: int, status: int) -> None:
        """Answer a malformed command at once; it never reaches the target."""
        self._cmds[cid] = _Command(cid, b"")
        self.complete(cid, status)
        return None

    def _capsule(self, pdu) -> CommandReceived | None:
        sqe = pdu.sqe
        cid = pdu.cid
        if len(self._cmds) >= self.depth:
            raise ProtocolError(f"more than {self.depth} commands outstanding",
                                Fes.PDU_SEQUENCE_ERROR, 0, pdu.raw_header)
        if cid in self._cmds:
            self.outbox.extend(codec.capsule_resp(cid, _status(SC_CID_CONFLICT) << 1,
                                                sqhd=self.sqhd, sqid=self.qid,
                                                hdgst=self.hdgst))
            return None
        addr, length, sgl_id = _SGL.unpack_from(sqe, 24)
        direction = data_direction(sqe)
        data = pdu.data if len(pdu.data) else None
        if direction == 0 or length == 0:
            if data is not None:
                return self._reject(cid, _status(SC_SGL_INVALID_DATA))
            self._cmds[cid] = _Command(cid, sqe)
            return self._received(cid, sqe, None, 0)
        if length > self.max_transfer:
            return self._reject(cid, _status(SC_SGL_INVALID_DATA))
        if sgl_id == _SGL_IN_CAPSULE:
            if direction != 1:
                return self._reject(cid, _status(SC_SGL_INVALID_TYPE))
            if length > self.icd_size or addr != 0:
                return self._reject(cid, _status(SC_SGL_INVALID_OFFSET))
            if data is None or len(data) != length:
                return self._reject(cid, _status(SC_SGL_INVALID_DATA))
            if pdu.ddgst_ok is False:
                return self._reject(cid, _status(SC_DATA_XFER_ERROR, dnr=False))
            self._cmds[cid] = _Command(cid, sqe)
            return self._received(cid, sqe, data, 0)
        if sgl_id != _SGL_TRANSPORT or data is not None:
            return self._reject(cid, _status(SC_SGL_INVALID_TYPE))
        if direction == 2:
            self._cmds[cid] = _Command(cid, sqe, c2h_length=length)
            return self._received(cid, sqe, None, length)
        if direction != 1:  # bidirectional transfers are not defined on NVMe/TCP
            return self._reject(cid, _status(SC_SGL_INVALID_TYPE))
        self._solicit(cid, sqe, length)
        return None

    def _solicit(self, cid: int, sqe: bytes, length: int) -> None:
        """A host-to-controller transfer's data is asked for with one R2T for all of it."""
        cmd = _Command(cid, sqe, buf=memoryview(bytearray(length)))
        cmd.ttag = self._alloc_ttag()
        self._cmds[cid] = cmd
        self._ttags[cmd.ttag] = cmd
        self.outbox.extend(codec.r2t(cid, cmd.ttag, 0, length, hdgst=self.hdgst))

    def _received(self, cid: int, sqe: bytes, data, c2h_length: int) -> CommandReceived | None:
        """A command is ready: to ``on_command`` at once, else as an event."""
        if self.on_command is None:
            return CommandReceived(cid, sqe, data, c2h_length)
        self.on_command(cid, sqe, data, c2h_length)
        return None

    def _alloc_ttag(self) -> int:
        while True:
            ttag = self._next_ttag
            self._next_ttag = (ttag + 1) % 0xFFFF
            if ttag not in self._ttags:
                return ttag

    def _sink(self, pdu):
        if pdu.pdu_type != T_H2C_DATA:
            return None
        cmd = self._ttags.get(pdu.ttag)
        if cmd is None or cmd.cid != pdu.cccid or pdu.datao != cmd.sink_offset:
            return None
        end = pdu.datao + pdu.datal
        if end > len(cmd.buf) or pdu.datal > self.maxh2cdata:
            return None
        cmd.sink_offset = end
        return cmd.buf[pdu.datao:end]

    def _h2c_data(self, pdu) -> CommandReceived | None:
        hdr = pdu.raw_header
        cmd = self._ttags.get(pdu.ttag)
        if cmd is None:
            raise ProtocolError(f"H2CData with unknown ttag {pdu.ttag:#x}",
                                Fes.INVALID_HEADER_FIELD, 10, hdr)
        if cmd.cid != pdu.cccid:
            raise ProtocolError(f"H2CData cccid {pdu.cccid:#x} does not own ttag {pdu.ttag:#x}",
                                Fes.INVALID_HEADER_FIELD, 8, hdr)
        if pdu.datal > self.maxh2cdata:
            raise ProtocolError(f"H2CData of {pdu.datal} bytes exceeds MAXH2CDATA",
                                Fes.DATA_TRANSFER_LIMIT_EXCEEDED, 16, hdr)
        if pdu.datao != cmd.received:
            raise ProtocolError(f"H2CData offset {pdu.datao}, expected {cmd.received}",
                                Fes.DATA_TRANSFER_OUT_OF_RANGE, 12, hdr)
        end = pdu.datao + pdu.datal
        if end > len(cmd.buf):
            raise ProtocolError("H2CData beyond the R2T", Fes.DATA_TRANSFER_OUT_OF_RANGE, 16,
                                hdr)
        if bool(pdu.flags & _F_LAST) != (end == len(cmd.buf)):
            raise ProtocolError("LAST_PDU flag does not match the end of the R2T",
                                Fes.PDU_SEQUENCE_ERROR, 1, hdr)
        if not (isinstance(pdu.data, memoryview) and pdu.data.obj is cmd.buf.obj):
            cmd.buf[pdu.datao:end] = pdu.data
        cmd.received = end
        if pdu.ddgst_ok is False:
            cmd.ddgst_bad = True
        if end < len(cmd.buf):
            return None
        return self._data_done(cmd)

    def _data_done(self, cmd: _Command) -> CommandReceived | None:
        """All of a Write's data is in: the command goes to the target."""
        self._ttags.pop(cmd.ttag, None)
        cmd.ttag = -1
        if cmd.ddgst_bad:  # the data is unusable; the host may retry (no DNR)
            self.complete(cmd.cid, _status(SC_DATA_XFER_ERROR, dnr=False))
            return None
        return self._received(cmd.cid, cmd.sqe, cmd.buf, 0)

    def _filled(self, cmd: _Command, end: int, last: bool) -> list:
        """The H2CData payload the lane filled is whole; with the last, the Write goes on."""
        cmd.received = cmd.sink_offset = end
        event = self._data_done(cmd) if last else None
        return [] if event is None else [event]

    def _on_terminated(self, reason: str) -> None:
        self._cmds.clear()
        self._ttags.clear()
        self._fill_dropped()
