"""Streaming PDU framer: bytes in any segmentation → validated PDUs.

One ``Framer`` decodes one direction of one connection. It accepts bytes either pushed with
``feed(data)`` or received in place (``get_buffer()`` then ``buffer_updated(n)``, the shape of
asyncio's BufferedProtocol and of ``socket.recv_into``), so that a large data payload is received
straight into its final buffer: ``data_sink`` may hand out the caller's own read buffer for a
C2HData/H2CData payload, which then never passes through an intermediate copy. While payloads
arrive that way, headers are received through a small window (``_AFTER_LARGE``), so that the next
large payload's start, which comes in the same receive as its header, is a small copy and not most
of the staging buffer (−3 µs of host CPU per 128 KiB read here); a small payload found whole in
staging opens the whole buffer again, where many small PDUs per receive is what counts.

Validation follows the order the fields appear (type, flags, hlen, pdo, plen), as FreeBSD does,
because the lowest incorrect field is the one a TermReq must report. Every length is checked
against ``max_data`` before anything is allocated. A fatal error raises ``ProtocolError`` with the
FES/FEI and offending header a TermReq needs, and the framer stays failed. A data digest mismatch
is not fatal at this floor: the PDU is delivered with ``ddgst_ok=False`` and the protocol decides.
"""
from __future__ import annotations

from typing import Callable

from ..errors import ProtocolError
from ..spec.pdu import (CARRIES_DATA, DIGEST_LEN, DIGESTIBLE, HLEN, MAX_TERMREQ_DATA,
                        T_C2H_DATA, T_CAPSULE_CMD, T_CAPSULE_RESP, T_H2C_DATA, T_R2T,
                        TERMREQ_TYPES, VALID_FLAGS, Fes, PduFlags, PduType)
from . import codec
from .crc import crc32c
from .pdus import (PDU_CLASSES, C2HDataPdu, CapsuleCmdPdu, CapsuleRespPdu, H2CDataPdu, PduBase,
                   R2TPdu)

_HEADER, _DATA, _DDGST = range(3)
#: Payload remainders at least this big are received in place; smaller ones are staged.
DIRECT_MIN = 8192
_MIN_STAGING = 4096  # holds any PDU header up to its PDO (≤ 255 bytes) with room to receive
_AFTER_LARGE = 4096  # receive window for headers while payloads come in place (docstring)
_FEI_TYPE, _FEI_FLAGS, _FEI_HLEN, _FEI_PDO, _FEI_PLEN, _FEI_DATAL = 0, 1, 2, 3, 4, 16
# Per-type facts as tuples indexed by the type byte, and the types as plain ints: the per-PDU path
# avoids enum and dict work (reading an enum member such as PduType.R2T costs ~0.1 µs).
_HLEN = tuple(HLEN.get(t, 0) for t in range(10))
_INVALID_FLAGS = tuple(0xFF & ~VALID_FLAGS.get(t, 0) for t in range(10))
_DIGESTIBLE = tuple(t in DIGESTIBLE for t in range(10))
_CARRIES = tuple(t in CARRIES_DATA for t in range(10))
_TERM = tuple(t in TERMREQ_TYPES for t in range(10))
_ALWAYS_DATA = tuple(t in (PduType.H2CData, PduType.C2HData) for t in range(10))
_HDGSTF, _DDGSTF, _SUCCESS = PduFlags.HDGSTF, PduFlags.DDGSTF, PduFlags.SUCCESS
_SUCCESS_LAST = PduFlags.SUCCESS | PduFlags.LAST_PDU  # SUCCESS is only valid with LAST_PDU
# The flags a data PDU may carry on a link without digests.
_PLAIN_C2H_FLAGS = frozenset((0, PduFlags.LAST_PDU, _SUCCESS_LAST))
_PLAIN_H2C_FLAGS = frozenset((0, PduFlags.LAST_PDU))
_unpack_ch = codec.CH.unpack_from
_unpack_resp = codec.RESP_PSH.unpack_from
_unpack_xfer = codec.XFER_PSH.unpack_from
_unpack_term = codec.TERM_PSH.unpack_from
_unpack_ic = codec.IC_PSH.unpack_from
_CapsuleCmd, _CapsuleResp, _H2CData, _C2HData, _R2TPdu = (
    CapsuleCmdPdu, CapsuleRespPdu, H2CDataPdu, C2HDataPdu, R2TPdu)

#: Called with a data PDU's header before its payload arrives; returns a writable buffer of exactly
#: the payload's length to receive it in place (any other answer: the framer allocates one).
DataSink = Callable[[PduBase], "memoryview | bytearray | None"]


class Framer:
    """Decoder for PDUs received by ``receiver`` ('host' or 'controller').

    Negotiated state is set by the protocol layer after the IC exchange: ``hdgst``/``ddgst``
    (digests the peer must send), ``pda`` (the data alignment this side asked for: HPDA on a host,
    CPDA on a controller) and ``max_data`` (the largest data payload one PDU may carry).
    """

    def __init__(self, receiver: str, *, max_data: int = 1 << 20, staging: int = 1 << 16) -> None:
        if receiver not in ("host", "controller"):
            raise ValueError("receiver must be 'host' or 'controller'")
        if staging < _MIN_STAGING:
            raise ValueError(f"staging must be at least {_MIN_STAGING} bytes")
        self.receiver = receiver
        self._direction = 1 if receiver == "host" else 0  # required value of the type's bit 0
        # the data PDU this side receives: type, record, flags allowed without digests
        self._xfer = ((T_C2H_DATA, _C2HData, _PLAIN_C2H_FLAGS) if receiver == "host"
                      else (T_H2C_DATA, _H2CData, _PLAIN_H2C_FLAGS))
        self.hdgst = False
        self.ddgst = False
        self.pda = 0
        self.max_data = max_data
        self.data_sink: DataSink | None = None
        #: False only for observers (capture decoding): a wrong header digest is then left for
        #: the caller to report instead of ending the stream.
        self.verify_hdgst = True
        self.staging = bytearray(staging)
        self.view = memoryview(self.staging)
        self.rd = 0
        self.wr = 0
        self._state = _HEADER
        self._pdu: PduBase | None = None
        self._data: memoryview | None = None
        self._filled = 0
        self._direct = False
        #: The last payload was received in place: expect more such, and receive headers through
        #: a small window. Whoever takes a payload out of staging clears it (the framer itself,
        #: and the queue engines' lanes), so that receives use the whole buffer again.
        self.in_place = False
        # (message, fes, fei, header) of the fatal error, not the exception itself: the exception's
        # traceback holds frames that hold this framer, and that cycle would keep the staging and
        # data buffers of every failed connection alive until the cyclic garbage collector ran.
        self._failed: tuple | None = None

    # ---- receiving ----
    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """Where the next received bytes should be written."""
        if self._failed:
            raise ProtocolError(*self._failed)
        if self._state == _DATA and self.rd == self.wr:
            remaining = len(self._data) - self._filled
            if remaining >= DIRECT_MIN:
                self._direct = self.in_place = True
                return self._data[self._filled:]
        self._direct = False
        if self.rd == self.wr:
            self.rd = self.wr = 0
        elif len(self.staging) - self.wr < 4096:
            n = self.wr - self.rd
            self.staging[:n] = self.staging[self.rd:self.wr]
            self.rd, self.wr = 0, n
        if self.in_place:
            return self.view[self.wr:self.wr + _AFTER_LARGE]
        return self.view[self.wr:] if self.wr else self.view  # all of it: no slice to make

    def buffer_updated(self, nbytes: int) -> list[PduBase]:
        """Account for ``nbytes`` written into the last ``get_buffer()`` and return whole PDUs."""
        if self._failed:
            raise ProtocolError(*self._failed)
        if self._direct:
            self._direct = False
            self._filled += nbytes
            out: list[PduBase] = []
            if self._filled == len(self._data):
                self._data_complete(out)
            self._drain(out)
            return out
        self.wr += nbytes
        out = []
        self._drain(out)
        return out

    def at_header(self, nbytes: int) -> bool:
        """For a consumer that decodes the frequent PDUs of a plain link itself (the queue
        engines' lanes): True when the ``nbytes`` just received went into staging at a PDU
        boundary on a link without digests or padding. They are then accounted, whole PDUs lie
        in ``staging[rd:wr]`` (``view`` is a memoryview of it), and the consumer advances ``rd``
        past those it took and hands the rest back with ``buffer_updated(0)``. False: nothing
        was accounted; call ``buffer_updated(nbytes)`` as usual."""
        if (self._direct or self._state != _HEADER or self._failed or self.hdgst or self.ddgst
                or self.pda):
            return False
        self.wr += nbytes
        return True

    def waits(self, plen: int, have: int) -> bool:
        """For a lane that took the header of a PDU of ``plen`` bytes, ``have`` of them in
        staging: whether the PDU should wait there, whole, for the next receive — its rest is
        too small to receive in place (below ``DIRECT_MIN``, as for the framer's own payloads)
        and it takes at most half of staging, so that it fits with room to receive; the next
        receive then uses all of staging. Else its payload is better received in place."""
        if plen - have < DIRECT_MIN and plen <= len(self.staging) >> 1:
            self.in_place = False
            return True
        return False

    def feed(self, data) -> list[PduBase]:
        """Push received bytes (any segmentation) and return the PDUs they complete."""
        out: list[PduBase] = []
        src = memoryview(data).cast("B")
        while len(src):
            buf = self.get_buffer()
            k = min(len(buf), len(src))
            buf[:k] = src[:k]
            try:
                out.extend(self.buffer_updated(k))
            except ProtocolError as exc:
                exc.before[:0] = out
                raise
            src = src[k:]
        return out

    @property
    def idle(self) -> bool:
        """True between PDUs (nothing partial is buffered)."""
        return self._state == _HEADER and self.rd == self.wr

    # ---- decoding ----
    def _drain(self, out: list[PduBase]) -> None:
        try:
            while True:
                avail = self.wr - self.rd
                if self._state == _HEADER:
                    if avail < 8:
                        return
                    if self.hdgst or self.ddgst or self.pda:
                        done = self._header(out, avail)
                    else:  # the by-value checks first; None: they leave it to the full ones
                        done = self._plain_header(out, avail)
                        if done is None:
                            done = self._header(out, avail)
                    if not done:
                        return
                elif self._state == _DATA:
                    if not avail:
                        return
                    k = min(avail, len(self._data) - self._filled)
                    self._data[self._filled:self._filled + k] = self.view[self.rd:self.rd + k]
                    self.rd += k
                    self._filled += k
                    if self._filled == len(self._data):
                        self.in_place = False
                        self._data_complete(out)
                else:  # _DDGST
                    if avail < DIGEST_LEN:
                        return
                    pdu = self._pdu
                    pdu.ddgst = int.from_bytes(self.view[self.rd:self.rd + 4], "little")
                    self.rd += DIGEST_LEN
                    pdu.ddgst_ok = crc32c(pdu.data) == pdu.ddgst
                    self._emit(out)
        except ProtocolError as exc:
            self._failed = (str(exc), exc.fes, exc.fei, exc.header)
            exc.before = out
            raise

    def _fail(self, msg: str, fes: int, fei: int, header=None) -> None:
        """Raise for the PDU at the read position; the TermReq copies its common header."""
        if header is None:  # as much of the offending header as has arrived (≤ HLEN, ≤ 128)
            rd = self.rd
            claimed = max(8, min(self.staging[rd + 2], 128))
            header = self.staging[rd:rd + min(claimed, self.wr - rd)]
        raise ProtocolError(msg, fes, fei, bytes(header))

    def _header(self, out: list[PduBase], avail: int) -> bool:
        """Validate the common header and, once whole, the PDU header; False = need more bytes."""
        rd = self.rd
        buf = self.staging
        t, flags, hlen, pdo, plen = _unpack_ch(buf, rd)
        if t > 9 or t == 8 or (t & 1) != self._direction:
            self._fail(f"unexpected PDU type {t:#x} for the {self.receiver}",
                       Fes.INVALID_HEADER_FIELD, _FEI_TYPE)
        if flags & _INVALID_FLAGS[t] or (flags & _SUCCESS_LAST) == _SUCCESS:
            self._fail(f"invalid flags {flags:#x} for {PduType(t).name}",
                       Fes.INVALID_HEADER_FIELD, _FEI_FLAGS)
        hd = 0
        if _DIGESTIBLE[t]:
            # Digest flags are part of FLAGS, so they are judged before HLEN/PDO/PLEN: HDGSTF iff
            # negotiated; DDGSTF iff negotiated and the PDU carries data (a data PDU always does,
            # a CapsuleCmd when PDO is set).
            with_data = _ALWAYS_DATA[t] or (pdo != 0 and _CARRIES[t])
            if bool(flags & _HDGSTF) != self.hdgst:
                self._fail(f"HDGSTF in flags {flags:#x} does not match the negotiated header "
                           f"digest ({'on' if self.hdgst else 'off'})",
                           Fes.INVALID_HEADER_FIELD, _FEI_FLAGS)
            if bool(flags & _DDGSTF) != (self.ddgst and with_data):
                why = ("data digest negotiated but DDGSTF not set" if self.ddgst and with_data
                       else "DDGSTF set on a PDU without data" if self.ddgst
                       else "DDGSTF set but data digests were not negotiated")
                self._fail(why, Fes.INVALID_HEADER_FIELD, _FEI_FLAGS)
            if flags & _HDGSTF:
                hd = DIGEST_LEN
        if hlen != _HLEN[t]:
            self._fail(f"hlen {hlen} is not {_HLEN[t]} for {PduType(t).name}",
                       Fes.INVALID_HEADER_FIELD, _FEI_HLEN)
        data_len = 0
        if _TERM[t]:  # PDO reserved; data (the offending header) follows the header
            if not hlen <= plen <= hlen + MAX_TERMREQ_DATA:
                self._fail(f"TermReq plen {plen} out of range", Fes.INVALID_HEADER_FIELD,
                           _FEI_PLEN)
            prefix = plen
        elif pdo and _CARRIES[t]:
            align = (self.pda + 1) * 4
            if pdo < hlen + hd or pdo % align:
                self._fail(f"pdo {pdo} invalid (hlen {hlen}, digest {hd}, alignment {align})",
                           Fes.INVALID_HEADER_FIELD, _FEI_PDO)
            data_len = plen - pdo - (DIGEST_LEN if flags & _DDGSTF else 0)
            if data_len <= 0:
                self._fail(f"plen {plen} leaves no data after pdo {pdo}",
                           Fes.INVALID_HEADER_FIELD, _FEI_PLEN)
            if data_len > self.max_data:
                self._fail(f"{PduType(t).name} carries {data_len} bytes, limit {self.max_data}",
                           Fes.DATA_TRANSFER_LIMIT_EXCEEDED, _FEI_PLEN)
            prefix = pdo
        else:
            if pdo:
                self._fail(f"pdo {pdo} set on {PduType(t).name} without data",
                           Fes.INVALID_HEADER_FIELD, _FEI_PDO)
            if _ALWAYS_DATA[t]:
                self._fail(f"{PduType(t).name} without data", Fes.INVALID_HEADER_FIELD,
                           _FEI_PDO)
            if plen != hlen + hd:
                self._fail(f"plen {plen} is not {hlen + hd} for {PduType(t).name}",
                           Fes.INVALID_HEADER_FIELD, _FEI_PLEN)
            prefix = plen
        if avail < prefix:
            return False
        header = self.view[rd:rd + hlen].tobytes()
        hdgst = None
        if hd:
            hdgst = int.from_bytes(buf[rd + hlen:rd + hlen + 4], "little")
            if self.verify_hdgst and crc32c(header) != hdgst:
                self._fail("header digest error", Fes.HEADER_DIGEST_ERROR, hdgst, header)
        # The PDU record is built in one positional call (the field order of wire.pdus), most
        # frequent types first; the types without data are delivered at once.
        if t == T_CAPSULE_RESP:
            self.rd = rd + prefix
            out.append(_CapsuleResp(flags, hlen, pdo, plen, hdgst, None, None, header, b"",
                                    *_unpack_resp(header, 8)))
            return True
        if t == T_R2T:
            self.rd = rd + prefix
            out.append(_R2TPdu(flags, hlen, pdo, plen, hdgst, None, None, header, b"",
                               *_unpack_xfer(header, 8)))
            return True
        if t == T_CAPSULE_CMD:
            pdu = _CapsuleCmd(flags, hlen, pdo, plen, hdgst, None, None, header, b"",
                              header[8:72])
        elif _ALWAYS_DATA[t]:
            cccid, ttag, datao, datal = _unpack_xfer(header, 8)
            if datal != data_len:
                self._fail(f"datal {datal} does not match the {data_len} data bytes",
                           Fes.INVALID_HEADER_FIELD, _FEI_DATAL, header)
            pdu = (_H2CData if t == T_H2C_DATA else _C2HData)(flags, hlen, pdo, plen, hdgst, None,
                                                         None, header, b"", cccid, ttag, datao,
                                                         datal)
        elif _TERM[t]:
            pdu = PDU_CLASSES[t](flags, hlen, pdo, plen, None, None, None, header,
                                 bytes(buf[rd + hlen:rd + plen]), *_unpack_term(header, 8))
        else:  # ICReq / ICResp
            pdu = PDU_CLASSES[t](flags, hlen, pdo, plen, None, None, None, header, b"",
                                 *_unpack_ic(header, 8))
        self.rd = rd + prefix
        self._deliver(out, pdu, data_len)
        return True

    def _plain_header(self, out: list[PduBase], avail: int) -> bool | None:
        """The frequent PDUs of a link without digests or padding, checked by value: each
        field equal to a value the full checks in ``_header`` allow (the usual one: PDO
        right after the header), in a fraction of their time. None: not such a PDU, the full
        checks decide (and name the wrong field)."""
        rd = self.rd
        t, flags, hlen, pdo, plen = _unpack_ch(self.staging, rd)
        xfer, xfer_record, xfer_flags = self._xfer
        if t == xfer:  # C2HData to a host, H2CData to a controller
            if (hlen != 24 or pdo != 24 or flags not in xfer_flags
                    or not 0 < plen - 24 <= self.max_data):
                return None
            if avail < 24:
                return False
            header = self.view[rd:rd + 24].tobytes()
            cccid, ttag, datao, datal = _unpack_xfer(header, 8)
            if datal != plen - 24:
                return None
            self.rd = rd + 24
            self._deliver(out, xfer_record(flags, 24, 24, plen, None, None, None, header, b"",
                                         cccid, ttag, datao, datal), datal)
            return True
        if (t == T_CAPSULE_RESP or t == T_R2T) and self._direction:  # the same shape, no data
            if flags or hlen != 24 or pdo or plen != 24:
                return None
            if avail < 24:
                return False
            header = self.view[rd:rd + 24].tobytes()
            self.rd = rd + 24
            if t == T_CAPSULE_RESP:
                out.append(_CapsuleResp(0, 24, 0, 24, None, None, None, header, b"",
                                        *_unpack_resp(header, 8)))
            else:
                out.append(_R2TPdu(0, 24, 0, 24, None, None, None, header, b"",
                                   *_unpack_xfer(header, 8)))
            return True
        if t == T_CAPSULE_CMD and not self._direction and not flags and hlen == 72:
            if pdo == 0 and plen == 72:
                data_len = 0
            elif pdo == 72 and 0 < plen - 72 <= self.max_data:
                data_len = plen - 72  # in-capsule data
            else:
                return None
            if avail < 72:
                return False
            header = self.view[rd:rd + 72].tobytes()
            self.rd = rd + 72
            self._deliver(out, _CapsuleCmd(0, 72, pdo, plen, None, None, None, header, b"",
                                           header[8:72]), data_len)
            return True
        return None

    def _deliver(self, out: list[PduBase], pdu: PduBase, data_len: int) -> None:
        """The header is consumed: a PDU without data is delivered; otherwise its payload is
        received next, in place when the sink offers a buffer of exactly that length. A
        payload already received whole (small PDUs arrive many to a receive) is copied and the
        PDU delivered in this one step."""
        if not data_len:
            out.append(pdu)
            return
        view = self.data_sink(pdu) if self.data_sink else None
        if view is not None and (type(view) is not memoryview or view.format != "B"):
            view = memoryview(view).cast("B")  # a bytearray's slices would be copies
        if view is None or len(view) != data_len or view.readonly:
            view = memoryview(bytearray(data_len))
        pdu.data = view
        rd = self.rd
        if not pdu.flags & _DDGSTF and self.wr - rd >= data_len:
            view[:] = self.view[rd:rd + data_len]
            self.rd = rd + data_len
            self.in_place = False
            out.append(pdu)
            return
        self._pdu = pdu
        self._data = view
        self._filled = 0
        self._state = _DATA

    def _data_complete(self, out: list[PduBase]) -> None:
        if self._pdu.flags & _DDGSTF:
            self._state = _DDGST
        else:
            self._emit(out)

    def _emit(self, out: list[PduBase]) -> None:
        out.append(self._pdu)
        self._pdu = None
        self._data = None
        self._state = _HEADER

