"""Fast struct-based codec for PDU headers; the tests prove it byte-identical with ``spec.pdu``.

Construct builds and parses every structure, but a per-PDU Container costs microseconds that the
hot path (CapsuleCmd/Resp, H2CData, C2HData, R2T) cannot pay. These encoders return a list of
buffers for scatter-gather ``sendmsg`` so data is never copied into a PDU; ``encode`` joins them for
callers that want one bytes object.
"""
from __future__ import annotations

import struct

from ..spec.pdu import (T_C2H_DATA, T_CAPSULE_CMD, T_CAPSULE_RESP, T_H2C_DATA, T_R2T, PduFlags,
                        PduType)
from .crc import crc32c

CH = struct.Struct("<BBBBI")
_DIGEST = struct.Struct("<I")
_IC = struct.Struct("<BBBBIHBBI112x")
_TERM = struct.Struct("<BBBBIHI10x")
_CMD = struct.Struct("<BBBBI64s")
RESP = struct.Struct("<BBBBIIIHHHH")
XFER = struct.Struct("<BBBBIHHII4x")  # H2CData, C2HData, R2T share one layout

# PSH decoders, applied to a whole header buffer at offset 8.
IC_PSH = struct.Struct("<HBBI")
TERM_PSH = struct.Struct("<HI")
RESP_PSH = struct.Struct("<IIHHHH")
XFER_PSH = struct.Struct("<HHII")

# The engines' lanes: headers of a link without digests or padding read and written by value, a
# header's fixed leading fields as one little-endian int (type, flags, HLEN, PDO, and PLEN where
# it is fixed too).
#: A plain CapsuleCmd with a read's SQE: head, opcode|flags<<8, CID, NSID, SGL1 length and
#: identifier, SLBA, NLB (0's based); the rest zero.
PLAIN_READ = struct.Struct("<QHHI24xI3xBQH14x")
PLAIN_CAPSULE_HEAD = int.from_bytes(bytes((T_CAPSULE_CMD, 0, 72, 0)) + (72).to_bytes(4, "little"),
                                    "little")
#: The first four bytes of a CapsuleCmd with in-capsule data right after its SQE (PDO 72);
#: its PLEN varies with the data, so it is not part of this head.
DATA_CAPSULE_HEAD = int.from_bytes(bytes((T_CAPSULE_CMD, 0, 72, 72)), "little")
#: A CapsuleResp: head, DW0, DW1, SQHD, SQID, CID, status.
PLAIN_RESP = struct.Struct("<QIIHHHH")
PLAIN_RESP_HEAD = int.from_bytes(bytes((T_CAPSULE_RESP, 0, 24, 0)) + (24).to_bytes(4, "little"),
                                 "little")
#: A C2HData carrying all of a command's data: head, PLEN, CID, DATAL (DATAO 0).
PLAIN_C2H = struct.Struct("<IIH6xI4x")
C2H_HEAD_LAST, C2H_HEAD_LAST_SUCCESS = (
    int.from_bytes(bytes((T_C2H_DATA, flags, 24, 24)), "little")
    for flags in (PduFlags.LAST_PDU, PduFlags.LAST_PDU | PduFlags.SUCCESS))
#: A C2HData or H2CData: head, PLEN, CCCID, TTAG, DATAO, DATAL.
PLAIN_XFER = struct.Struct("<IIHHII")
H2C_HEAD, H2C_HEAD_LAST = (int.from_bytes(bytes((T_H2C_DATA, flags, 24, 24)), "little")
                           for flags in (0, PduFlags.LAST_PDU))
#: An R2T (PLAIN_XFER's layout: DATAO and DATAL are R2TO and R2TL; PLEN 24).
R2T_HEAD = int.from_bytes(bytes((T_R2T, 0, 24, 0)), "little")

_ZEROS = bytes(128)

# The per-PDU path uses plain ints (spec.pdu's T_*) and bound methods: reading an enum member
# (PduType.R2T) costs ~0.1 µs, as much as packing the header itself.
_F_HDGST, _F_DDGST, _F_LAST, _F_SUCCESS = (PduFlags.HDGSTF, PduFlags.DDGSTF, PduFlags.LAST_PDU,
                                           PduFlags.SUCCESS)
_pack_digest = _DIGEST.pack
_pack_cmd = _CMD.pack
_pack_resp = RESP.pack
_pack_xfer = XFER.pack


def _pdo(start: int, pda: int) -> int:
    """The data offset: the header (and its digest) rounded up to the (pda+1)*4 alignment."""
    align = (pda + 1) * 4
    return -(-start // align) * align


def _with_data(header: bytes, hdgst: bool, pad: int, data, ddgst: bool) -> list:
    """header [HDGST] [PAD] data [DDGST]; the data object itself, never a copy."""
    if not (hdgst or pad or ddgst):
        return [header, data]
    parts: list = [header]
    if hdgst:
        parts.append(_pack_digest(crc32c(header)))
    if pad:
        parts.append(_ZEROS[:pad])
    parts.append(data)
    if ddgst:
        parts.append(_pack_digest(crc32c(data)))
    return parts


def capsule_cmd(sqe: bytes, data=None, *, hdgst: bool = False, ddgst: bool = False,
                pda: int = 0) -> list:
    """A CapsuleCmd PDU; ``data`` is in-capsule data (None or empty for none)."""
    if len(sqe) != 64:  # struct's "64s" would silently pad or cut it
        raise ValueError(f"an SQE is 64 bytes, not {len(sqe)}")
    if data is None or not len(data):  # no data: no PDO, no DDGSTF
        if hdgst:
            header = _pack_cmd(T_CAPSULE_CMD, _F_HDGST, 72, 0, 76, sqe)
            return [header, _pack_digest(crc32c(header))]
        return [_pack_cmd(T_CAPSULE_CMD, 0, 72, 0, 72, sqe)]
    start = 76 if hdgst else 72
    pdo = _pdo(start, pda) if pda else start
    flags = (_F_HDGST if hdgst else 0) | (_F_DDGST if ddgst else 0)
    header = _pack_cmd(T_CAPSULE_CMD, flags, 72, pdo, pdo + len(data) + (4 if ddgst else 0), sqe)
    return _with_data(header, hdgst, pdo - start, data, ddgst)


def capsule_resp(cid: int, status: int = 0, *, dw0: int = 0, dw1: int = 0, sqhd: int = 0,
                 sqid: int = 0, hdgst: bool = False) -> list:
    """A CapsuleResp PDU; ``status`` is the 16-bit CQE status field (phase bit included)."""
    if hdgst:
        header = _pack_resp(T_CAPSULE_RESP, _F_HDGST, 24, 0, 28, dw0, dw1, sqhd, sqid, cid, status)
        return [header, _pack_digest(crc32c(header))]
    return [_pack_resp(T_CAPSULE_RESP, 0, 24, 0, 24, dw0, dw1, sqhd, sqid, cid, status)]


def h2c_data(cccid: int, ttag: int, datao: int, data, *, last: bool, hdgst: bool = False,
             ddgst: bool = False, pda: int = 0) -> list:
    n = len(data)
    if not n:
        raise ValueError("an H2CData PDU carries at least one byte")
    start = 28 if hdgst else 24
    pdo = _pdo(start, pda) if pda else start
    flags = (_F_LAST if last else 0) | (_F_HDGST if hdgst else 0) | (_F_DDGST if ddgst else 0)
    header = _pack_xfer(T_H2C_DATA, flags, 24, pdo, pdo + n + (4 if ddgst else 0), cccid, ttag,
                        datao, n)
    if not (hdgst or ddgst or pdo != start):
        return [header, data]
    return _with_data(header, hdgst, pdo - start, data, ddgst)


def c2h_data(cccid: int, datao: int, data, *, last: bool, success: bool = False,
             hdgst: bool = False, ddgst: bool = False, pda: int = 0) -> list:
    n = len(data)
    if not n:
        raise ValueError("a C2HData PDU carries at least one byte")
    if success and not last:
        raise ValueError("SUCCESS is only valid on the last C2HData PDU")
    start = 28 if hdgst else 24
    pdo = _pdo(start, pda) if pda else start
    flags = ((_F_LAST if last else 0) | (_F_SUCCESS if success else 0)
             | (_F_HDGST if hdgst else 0) | (_F_DDGST if ddgst else 0))
    header = _pack_xfer(T_C2H_DATA, flags, 24, pdo, pdo + n + (4 if ddgst else 0), cccid, 0, datao,
                        n)
    if not (hdgst or ddgst or pdo != start):
        return [header, data]
    return _with_data(header, hdgst, pdo - start, data, ddgst)


def r2t(cccid: int, ttag: int, r2to: int, r2tl: int, *, hdgst: bool = False) -> list:
    if hdgst:
        header = _pack_xfer(T_R2T, _F_HDGST, 24, 0, 28, cccid, ttag, r2to, r2tl)
        return [header, _pack_digest(crc32c(header))]
    return [_pack_xfer(T_R2T, 0, 24, 0, 24, cccid, ttag, r2to, r2tl)]


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
