"""NVMe/TCP PDUs (NVMe/TCP transport specification, section 3.6): the single source of truth.

Every PDU is ``CommonHeader`` + a type-specific header (PSH) + optional header digest, padding to PDO,
data and data digest. The fast codec in ``wire/`` encodes the hot PDUs with plain ``struct`` and is
proven byte-identical with these definitions by the tests.
"""
from __future__ import annotations

import enum

from construct import Bytes, If, Int8ul, Int16ul, Int32ul, Struct, Switch, this

from ._types import Reserved

CH_LEN = 8
DIGEST_LEN = 4
MAX_TERMREQ_DATA = 128
NVME_TCP_PFV_1_0 = 0


class PduType(enum.IntEnum):
    """PDU-Type values; bit 0 is the direction (1 = controller to host)."""

    ICReq = 0x00
    ICResp = 0x01
    H2CTermReq = 0x02
    C2HTermReq = 0x03
    CapsuleCmd = 0x04
    CapsuleResp = 0x05
    H2CData = 0x06
    C2HData = 0x07
    R2T = 0x09


# The types as plain ints, for the per-PDU paths of the framer, codec and engines: looking up an
# enum member such as PduType.R2T costs ~0.1 µs, as much as packing a header.
(T_ICREQ, T_ICRESP, T_H2C_TERMREQ, T_C2H_TERMREQ, T_CAPSULE_CMD, T_CAPSULE_RESP, T_H2C_DATA,
 T_C2H_DATA, T_R2T) = (int(t) for t in PduType)


class PduFlags:
    """FLAGS bits of the common header. Plain ints, not an IntFlag: enum arithmetic costs
    microseconds per operation, and the framer tests these bits several times per PDU."""

    HDGSTF = 0x01
    DDGSTF = 0x02
    LAST_PDU = 0x04
    SUCCESS = 0x08

    @classmethod
    def names(cls, flags: int) -> list[str]:
        """The names of the bits set in ``flags`` (unknown bits as hex)."""
        known = [(v, k) for k, v in vars(cls).items() if k.isupper()]
        out = [name for bit, name in known if flags & bit]
        rest = flags & ~sum(bit for bit, _ in known)
        return out + ([hex(rest)] if rest else [])


class DigestFlags:
    """The DGST byte of ICReq/ICResp (plain ints, as PduFlags)."""

    HDGST_ENABLE = 0x01
    DDGST_ENABLE = 0x02


class Fes(enum.IntEnum):
    """Fatal Error Status of a TermReq; 0x05 has two names across spec revisions (pitfall 2)."""

    INVALID_HEADER_FIELD = 0x01
    PDU_SEQUENCE_ERROR = 0x02
    HEADER_DIGEST_ERROR = 0x03
    DATA_TRANSFER_OUT_OF_RANGE = 0x04
    DATA_TRANSFER_LIMIT_EXCEEDED = 0x05
    UNSUPPORTED_PARAMETER = 0x06


#: Fixed HLEN of each PDU type.
HLEN = {
    PduType.ICReq: 128,
    PduType.ICResp: 128,
    PduType.H2CTermReq: 24,
    PduType.C2HTermReq: 24,
    PduType.CapsuleCmd: 72,
    PduType.CapsuleResp: 24,
    PduType.H2CData: 24,
    PduType.C2HData: 24,
    PduType.R2T: 24,
}

#: Flags each PDU type may carry (pitfall 4); anything else is an invalid header field.
VALID_FLAGS = {
    PduType.ICReq: 0,
    PduType.ICResp: 0,
    PduType.H2CTermReq: 0,
    PduType.C2HTermReq: 0,
    PduType.CapsuleCmd: PduFlags.HDGSTF | PduFlags.DDGSTF,
    PduType.CapsuleResp: PduFlags.HDGSTF,
    PduType.H2CData: PduFlags.HDGSTF | PduFlags.DDGSTF | PduFlags.LAST_PDU,
    PduType.C2HData: PduFlags.HDGSTF | PduFlags.DDGSTF | PduFlags.LAST_PDU | PduFlags.SUCCESS,
    PduType.R2T: PduFlags.HDGSTF,
}

#: PDU types that may carry data after PDO (TermReqs carry the offending header, without PDO).
CARRIES_DATA = frozenset({PduType.CapsuleCmd, PduType.H2CData, PduType.C2HData})
#: PDU types that carry digests when they were negotiated.
DIGESTIBLE = frozenset({PduType.CapsuleCmd, PduType.CapsuleResp, PduType.H2CData,
                        PduType.C2HData, PduType.R2T})
TERMREQ_TYPES = frozenset({PduType.H2CTermReq, PduType.C2HTermReq})


CommonHeader = Struct(
    "pdu_type" / Int8ul,
    "flags" / Int8ul,
    "hlen" / Int8ul,
    "pdo" / Int8ul,
    "plen" / Int32ul,
)

ICReq = Struct(
    "pfv" / Int16ul,
    "hpda" / Int8ul,
    "dgst" / Int8ul,
    "maxr2t" / Int32ul,
    "rsvd" / Reserved(112),
)

ICResp = Struct(
    "pfv" / Int16ul,
    "cpda" / Int8ul,
    "dgst" / Int8ul,
    "maxh2cdata" / Int32ul,
    "rsvd" / Reserved(112),
)

TermReq = Struct(
    "fes" / Int16ul,
    "fei" / Int32ul,  # at offset 10, unaligned (pitfall 1)
    "rsvd" / Reserved(10),
)

CapsuleCmd = Struct("sqe" / Bytes(64))
CapsuleResp = Struct("cqe" / Bytes(16))

H2CData = Struct(
    "cccid" / Int16ul,
    "ttag" / Int16ul,
    "datao" / Int32ul,
    "datal" / Int32ul,
    "rsvd" / Reserved(4),
)

C2HData = Struct(
    "cccid" / Int16ul,
    "ttag" / Int16ul,  # reserved for C2HData; Linux's shared struct names it ttag and sends 0
    "datao" / Int32ul,
    "datal" / Int32ul,
    "rsvd" / Reserved(4),
)

R2T = Struct(
    "cccid" / Int16ul,
    "ttag" / Int16ul,
    "r2to" / Int32ul,
    "r2tl" / Int32ul,
    "rsvd" / Reserved(4),
)

PSH = {
    PduType.ICReq: ICReq,
    PduType.ICResp: ICResp,
    PduType.H2CTermReq: TermReq,
    PduType.C2HTermReq: TermReq,
    PduType.CapsuleCmd: CapsuleCmd,
    PduType.CapsuleResp: CapsuleResp,
    PduType.H2CData: H2CData,
    PduType.C2HData: C2HData,
    PduType.R2T: R2T,
}


def has_hdgst(pdu_type: int, flags: int) -> bool:
    return bool(flags & PduFlags.HDGSTF) and pdu_type in DIGESTIBLE


def has_ddgst(pdu_type: int, flags: int, pdo: int) -> bool:
    return bool(flags & PduFlags.DDGSTF) and pdu_type in CARRIES_DATA and pdo != 0


def data_offset(pdu_type: int, flags: int, hlen: int, pdo: int) -> int:
    """Where the data starts: PDO, except for TermReqs whose data follows the 24-byte header."""
    if pdu_type in TERMREQ_TYPES:
        return hlen
    if pdu_type in CARRIES_DATA and pdo:
        return pdo
    return hlen + (DIGEST_LEN if has_hdgst(pdu_type, flags) else 0)


def data_length(pdu_type: int, flags: int, hlen: int, pdo: int, plen: int) -> int:
    ddgst = DIGEST_LEN if has_ddgst(pdu_type, flags, pdo) else 0
    return plen - data_offset(pdu_type, flags, hlen, pdo) - ddgst


def _pad_len(ctx) -> int:
    start = ctx.hlen + (DIGEST_LEN if has_hdgst(ctx.pdu_type, ctx.flags) else 0)
    return data_offset(ctx.pdu_type, ctx.flags, ctx.hlen, ctx.pdo) - start


#: A whole PDU as it appears on the wire. Lengths come from the header, so a PDU is built with
#: ``hlen``/``pdo``/``plen`` already consistent (``wire.framer.encode_pdu`` computes them).
Pdu = Struct(
    "pdu_type" / Int8ul,
    "flags" / Int8ul,
    "hlen" / Int8ul,
    "pdo" / Int8ul,
    "plen" / Int32ul,
    "psh" / Switch(this.pdu_type, PSH, default=Bytes(this.hlen - CH_LEN)),
    "hdgst" / If(lambda c: has_hdgst(c.pdu_type, c.flags), Int32ul),
    "pad" / Bytes(_pad_len),
    "data" / Bytes(lambda c: data_length(c.pdu_type, c.flags, c.hlen, c.pdo, c.plen)),
    "ddgst" / If(lambda c: has_ddgst(c.pdu_type, c.flags, c.pdo), Int32ul),
)
