"""The 16-byte completion queue entry."""
from __future__ import annotations

from construct import BitsInteger, Flag, Int16ul, Int32ul, Struct

from ._types import LEBits

CQE_LEN = 16

#: The status field, bit 0 = phase tag (always 0 on fabrics).
StatusField = LEBits(
    "dnr" / Flag,
    "m" / Flag,
    "crd" / BitsInteger(2),
    "sct" / BitsInteger(3),
    "sc" / BitsInteger(8),
    "p" / Flag,
)

Cqe = Struct(
    "dw0" / Int32ul,
    "dw1" / Int32ul,
    "sqhd" / Int16ul,
    "sqid" / Int16ul,
    "cid" / Int16ul,
    "status" / StatusField,
)

#: CQE DW0 of a completed Async Event Request.
AerCompletion = LEBits(
    "rsvd" / BitsInteger(8),
    "lid" / BitsInteger(8),
    "aei" / BitsInteger(8),
    "rsvd2" / BitsInteger(5),
    "aet" / BitsInteger(3),
)

#: CQE DW0 of a failed Connect with SC 0x82 (Connect Invalid Parameters).
ConnectInvalidParams = LEBits(
    "rsvd" / BitsInteger(15),
    "iattr" / Flag,  # 0: the offset is in the SQE, 1: in the connect data
    "ipo" / BitsInteger(16),
)


def make_status(sct: int, sc: int, dnr: bool = False, more: bool = False, crd: int = 0) -> int:
    """The 15-bit status value (without phase) as NvmeStatusError and the codecs carry it."""
    return (sc & 0xFF) | (sct & 7) << 8 | (crd & 3) << 11 | int(more) << 13 | int(dnr) << 14


def aer_dw0(aet: int, aei: int, lid: int) -> int:
    return (aet & 7) | (aei & 0xFF) << 8 | (lid & 0xFF) << 16
