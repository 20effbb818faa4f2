"""Fast struct-based codec for PDU headers; the tests prove it byte-identical with ``spec.pdu``.

Construct builds and parses every structure, but a per-PDU Container costs microseconds that the
hot path (CapsuleCmd/Resp, H2CData, C2HData, R2T) cannot pay. These encoders return a list of
buffers for scatter-gather ``sendmsg`` so data is never copied into a PDU; ``encode`` joins them for
callers that want one bytes object.
"""
from __future__ import annotations

import struct

from ..spec.pdu import (CARRIES_DATA, DIGEST_LEN, DIGESTIBLE, HLEN, TERMREQ_TYPES, PduFlags,
                        PduType)
from .crc import crc32c

CH = struct.Struct("<BBBBI")
_DIGEST = struct.Struct("<I")
_IC = struct.Struct("<BBBBIHBBI112x")
_TERM = struct.Struct("<BBBBIHI10x")
_CMD = struct.Struct("<BBBBI64s")
_RESP = struct.Struct("<BBBBIIIHHHH")
_XFER = struct.Struct("<BBBBIHHII4x")  # H2CData, C2HData, R2T share one layout

# PSH decoders, applied to a whole header buffer at offset 8.
IC_PSH = struct.Struct("<HBBI")
TERM_PSH = struct.Struct("<HI")
RESP_PSH = struct.Struct("<IIHHHH")
XFER_PSH = struct.Struct("<HHII")

_ZEROS = bytes(128)


def _layout(pdu_type: int, data_len: int, hdgst: bool, ddgst: bool, pda: int):
    """(flags bits, pdo, pad length, plen) for a PDU of this type carrying ``data_len`` bytes."""
    hlen = HLEN[pdu_type]
    hd = DIGEST_LEN if hdgst and pdu_type in DIGESTIBLE else 0
    flags = PduFlags.HDGSTF if hd else 0
    if pdu_type in TERMREQ_TYPES:
        return 0, 0, 0, hlen + data_len
    if data_len and pdu_type in CARRIES_DATA:
        align = (pda + 1) * 4
        pdo = -(-(hlen + hd) // align) * align
        dd = DIGEST_LEN if ddgst else 0
        if dd:
            flags |= PduFlags.DDGSTF
        return flags, pdo, pdo - hlen - hd, pdo + data_len + dd
    return flags, 0, 0, hlen + hd


def _finish(header: bytes, hdgst: bool, pad: int, data, ddgst_flag: bool) -> list:
    parts: list = [header]
    if hdgst:
        parts.append(_DIGEST.pack(crc32c(header)))
    if pad:
        parts.append(_ZEROS[:pad])
    if data is not None and len(data):
        parts.append(data)
        if ddgst_flag:
            parts.append(_DIGEST.pack(crc32c(data)))
    return parts


def capsule_cmd(sqe: bytes, data=None, *, hdgst: bool = False, ddgst: bool = False,
                pda: int = 0) -> list:
    """A CapsuleCmd PDU; ``data`` is in-capsule data (None or empty for none)."""
    if len(sqe) != 64:  # struct's "64s" would silently pad or cut it
        raise ValueError(f"an SQE is 64 bytes, not {len(sqe)}")
    n = len(data) if data is not None else 0
    flags, pdo, pad, plen = _layout(PduType.CapsuleCmd, n, hdgst, ddgst, pda)
    header = _CMD.pack(PduType.CapsuleCmd, flags, 72, pdo, plen, sqe)
    return _finish(header, bool(flags & PduFlags.HDGSTF), pad, data,
                   bool(flags & PduFlags.DDGSTF))


def capsule_resp(cid: int, status: int = 0, *, dw0: int = 0, dw1: int = 0, sqhd: int = 0,
                 sqid: int = 0, hdgst: bool = False) -> list:
    """A CapsuleResp PDU; ``status`` is the 16-bit CQE status field (phase bit included)."""
    flags = PduFlags.HDGSTF if hdgst else 0
    plen = 28 if hdgst else 24
    header = _RESP.pack(PduType.CapsuleResp, flags, 24, 0, plen, dw0, dw1, sqhd, sqid, cid,
                        status)
    return [header, _DIGEST.pack(crc32c(header))] if hdgst else [header]


def _xfer(pdu_type: int, extra_flags: int, cccid: int, ttag: int, offset: int, length: int,
          data, hdgst: bool, ddgst: bool, pda: int) -> list:
    n = len(data) if data is not None else 0
    flags, pdo, pad, plen = _layout(pdu_type, n, hdgst, ddgst, pda)
    header = _XFER.pack(pdu_type, flags | extra_flags, 24, pdo, plen, cccid, ttag, offset,
                        length)
    return _finish(header, bool(flags & PduFlags.HDGSTF), pad, data,
                   bool(flags & PduFlags.DDGSTF))


def h2c_data(cccid: int, ttag: int, datao: int, data, *, last: bool, hdgst: bool = False,
             ddgst: bool = False, pda: int = 0) -> list:
    if not len(data):
        raise ValueError("an H2CData PDU carries at least one byte")
    return _xfer(PduType.H2CData, PduFlags.LAST_PDU if last else 0, cccid, ttag, datao,
                 len(data), data, hdgst, ddgst, pda)


def c2h_data(cccid: int, datao: int, data, *, last: bool, success: bool = False,
             hdgst: bool = False, ddgst: bool = False, pda: int = 0) -> list:
    if not len(data):
        raise ValueError("a C2HData PDU carries at least one byte")
    if success and not last:
        raise ValueError("SUCCESS is only valid on the last C2HData PDU")
    extra = (PduFlags.LAST_PDU if last else 0) | (PduFlags.SUCCESS if success else 0)
    return _xfer(PduType.C2HData, extra, cccid, 0, datao, len(data), data, hdgst, ddgst, pda)


def r2t(cccid: int, ttag: int, r2to: int, r2tl: int, *, hdgst: bool = False) -> list:
    return _xfer(PduType.R2T, 0, cccid, ttag, r2to, r2tl, None, hdgst, False, 0)


def ic_req(*, hpda: int = 0, dgst: int = 0, maxr2t: int = 0, pfv: int = 0) -> bytes:
    return _IC.pack(PduType.ICReq, 0, 128, 0, 128, pfv, hpda, dgst, maxr2t)


def ic_resp(*, cpda: int = 0, dgst: int = 0, maxh2cdata: int = 0x400000, pfv: int = 0) -> bytes:
    return _IC.pack(PduType.ICResp, 0, 128, 0, 128, pfv, cpda, dgst, maxh2cdata)


def term_req(pdu_type: int, fes: int, fei: int = 0, offending_header: bytes = b"") -> bytes:
    """An H2CTermReq or C2HTermReq: no digests, PDO reserved, the offending header (≤128 B) after."""
    data = bytes(offending_header[:128])
    return _TERM.pack(pdu_type, 0, 24, 0, 24 + len(data), fes, fei) + data


def encode(parts: list) -> bytes:
    """Join the buffers of an encoded PDU."""
    return b"".join(parts)
