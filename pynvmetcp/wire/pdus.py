"""Decoded PDUs as the framer yields them: small immutable-by-convention records with slots.

The header fields keep the specification's names. ``raw_header`` is the PDU's first ``hlen`` bytes,
kept because a TermReq must copy the offending header back and the capture decoder re-encodes it.

The framer builds each record with one positional call (keywords cost twice as much per PDU), so
the field order below — the base fields, then the type's own in wire order — is part of the
contract with ``wire.framer``; the tests decode every type and compare each field.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..spec.pdu import PduType


@dataclass(slots=True)
class PduBase:
    flags: int = 0
    hlen: int = 0
    pdo: int = 0
    plen: int = 0
    hdgst: int | None = None
    ddgst: int | None = None
    ddgst_ok: bool | None = None
    raw_header: bytes = b""
    data: memoryview | bytes = b""

    pdu_type = -1  # overridden per class

    @property
    def name(self) -> str:
        return PduType(self.pdu_type).name


@dataclass(slots=True)
class ICReqPdu(PduBase):
    pfv: int = 0
    hpda: int = 0
    dgst: int = 0
    maxr2t: int = 0
    pdu_type = PduType.ICReq


@dataclass(slots=True)
class ICRespPdu(PduBase):
    pfv: int = 0
    cpda: int = 0
    dgst: int = 0
    maxh2cdata: int = 0
    pdu_type = PduType.ICResp


@dataclass(slots=True)
class H2CTermReqPdu(PduBase):
    fes: int = 0
    fei: int = 0
    pdu_type = PduType.H2CTermReq


@dataclass(slots=True)
class C2HTermReqPdu(PduBase):
    fes: int = 0
    fei: int = 0
    pdu_type = PduType.C2HTermReq


@dataclass(slots=True)
class CapsuleCmdPdu(PduBase):
    sqe: bytes = field(default=bytes(64))
    pdu_type = PduType.CapsuleCmd

    @property
    def opcode(self) -> int:
        return self.sqe[0]

    @property
    def cid(self) -> int:
        return self.sqe[2] | self.sqe[3] << 8


@dataclass(slots=True)
class CapsuleRespPdu(PduBase):
    dw0: int = 0
    dw1: int = 0
    sqhd: int = 0
    sqid: int = 0
    cid: int = 0
    status: int = 0  # the 16-bit field including the phase bit, as on the wire
    pdu_type = PduType.CapsuleResp


@dataclass(slots=True)
class H2CDataPdu(PduBase):
    cccid: int = 0
    ttag: int = 0
    datao: int = 0
    datal: int = 0
    pdu_type = PduType.H2CData


@dataclass(slots=True)
class C2HDataPdu(PduBase):
    cccid: int = 0
    ttag: int = 0
    datao: int = 0
    datal: int = 0
    pdu_type = PduType.C2HData


@dataclass(slots=True)
class R2TPdu(PduBase):
    cccid: int = 0
    ttag: int = 0
    r2to: int = 0
    r2tl: int = 0
    pdu_type = PduType.R2T


PDU_CLASSES = {
    PduType.ICReq: ICReqPdu,
    PduType.ICResp: ICRespPdu,
    PduType.H2CTermReq: H2CTermReqPdu,
    PduType.C2HTermReq: C2HTermReqPdu,
    PduType.CapsuleCmd: CapsuleCmdPdu,
    PduType.CapsuleResp: CapsuleRespPdu,
    PduType.H2CData: H2CDataPdu,
    PduType.C2HData: C2HDataPdu,
    PduType.R2T: R2TPdu,
}
