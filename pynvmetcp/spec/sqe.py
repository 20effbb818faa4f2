"""The 64-byte submission queue entry and its typed views.

``Sqe`` is the generic layout (CDW0..CDW15). Each command then has a view of the same 64 bytes with
the names the specification gives its fields; ``command_view`` picks the right one from the opcode
(and FCTYPE for Fabrics commands), which is how decoders and the controller read a capsule.
"""
from __future__ import annotations

from construct import Bytes, Flag, Int8ul, Int16ul, Int32ul, Int64ul, Struct, BitsInteger

from ._types import LEBits, Reserved
from .opcodes import AdminOpcode, FabricsType, NvmOpcode

SQE_LEN = 64

#: SGL descriptor (SGL1 at byte 24): plain and keyed views share the same 16 bytes.
Sgl = Struct(
    "address" / Int64ul,
    "length" / Int32ul,
    "rsvd" / Reserved(3),
    "sgl_id" / Int8ul,
)

# CDW0..CDW9: opcode, flags (FUSE 1:0, PSDT 7:6), cid, nsid, cdw2/3, metadata pointer, SGL1.
_COMMON = (
    "opcode" / Int8ul,
    "flags" / Int8ul,
    "cid" / Int16ul,
    "nsid" / Int32ul,
    "cdw2" / Int32ul,
    "cdw3" / Int32ul,
    "mptr" / Int64ul,
    "dptr" / Sgl,
)

# Fabrics commands reuse the first four bytes, then FCTYPE replaces NSID's first byte.
_FABRICS = (
    "opcode" / Int8ul,
    "flags" / Int8ul,  # reserved in the fabrics layout; Linux sets 0x40 here (pitfall 15)
    "cid" / Int16ul,
    "fctype" / Int8ul,
    "rsvd1" / Reserved(19),
    "dptr" / Sgl,
)


def _command(*tail):
    """A command view: the 40 common bytes, then CDW10..CDW15 as the command names them."""
    return Struct(*_COMMON, *tail)


def _fabrics(*tail):
    return Struct(*_FABRICS, *tail)


Sqe = _command(*(f"cdw{n}" / Int32ul for n in range(10, 16)))

# ---- admin commands ----
Identify = _command(
    "cns" / Int8ul,
    "rsvd10" / Int8ul,
    "cntid" / Int16ul,
    "cnssid" / Int16ul,
    "rsvd11" / Int8ul,
    "csi" / Int8ul,
    "cdw12_15" / Reserved(16),
)

GetLogPage = _command(
    "lid" / Int8ul,
    "lsp" / Int8ul,  # bits 6:0 LSP, bit 7 RAE
    "numdl" / Int16ul,
    "numdu" / Int16ul,
    "lsi" / Int16ul,
    "lpo" / Int64ul,  # CDW12 (low) and CDW13 (high): byte offset
    "uuid_index" / Int8ul,
    "rsvd14" / Reserved(2),
    "csi" / Int8ul,
    "cdw15" / Int32ul,
)

_FeatureDw10 = LEBits(
    "sv" / Flag,
    "rsvd" / BitsInteger(20),
    "sel" / BitsInteger(3),
    "fid" / BitsInteger(8),
)
Features = _command(
    "cdw10" / _FeatureDw10,
    "cdw11" / Int32ul,
    "cdw12" / Int32ul,
    "cdw13" / Int32ul,
    "cdw14" / Int32ul,
    "cdw15" / Int32ul,
)

Abort = _command(
    "sqid" / Int16ul,
    "abort_cid" / Int16ul,
    "cdw11_15" / Reserved(20),
)

NoFields = _command("cdw10_15" / Reserved(24))  # Keep Alive, Async Event Request, Flush

# ---- NVM commands ----
ReadWrite = _command(
    "slba" / Int64ul,
    "nlb" / Int16ul,  # 0's based
    "control" / Int16ul,  # LR bit 15, FUA bit 14, PRINFO 13:10, DEAC bit 9 (Write Zeroes)
    "dsmgmt" / Int32ul,
    "reftag" / Int32ul,
    "apptag" / Int16ul,
    "appmask" / Int16ul,
)

DatasetManagement = _command(
    "nr" / Int32ul,  # 0's based number of ranges in bits 7:0
    "attributes" / Int32ul,  # IDR bit 0, IDW bit 1, AD bit 2
    "cdw12_15" / Reserved(16),
)

#: One DSM range, 16 bytes, carried as command data.
DsmRange = Struct("cattr" / Int32ul, "nlb" / Int32ul, "slba" / Int64ul)

# ---- fabrics commands ----
Connect = _fabrics(
    "recfmt" / Int16ul,
    "qid" / Int16ul,
    "sqsize" / Int16ul,  # 0's based
    "cattr" / Int8ul,  # bit 2: disable SQ flow control
    "rsvd2" / Int8ul,
    "kato" / Int32ul,  # milliseconds
    "rsvd3" / Reserved(12),
)

PropertySet = _fabrics(
    "attrib" / Int8ul,  # bits 2:0 size: 0 = 4 bytes, 1 = 8 bytes
    "rsvd2" / Reserved(3),
    "offset" / Int32ul,
    "value" / Int64ul,
    "rsvd3" / Reserved(8),
)

PropertyGet = _fabrics(
    "attrib" / Int8ul,
    "rsvd2" / Reserved(3),
    "offset" / Int32ul,
    "rsvd3" / Reserved(16),
)

Disconnect = _fabrics(
    "recfmt" / Int16ul,
    "rsvd2" / Reserved(22),
)

FabricsGeneric = _fabrics("fabrics_specific" / Bytes(24))

CONNECT_CATTR_DISABLE_SQFLOW = 0x04
FUSE_MASK = 0x03
PSDT_SGL = 0x40
RW_CONTROL_FUA = 1 << 14
RW_CONTROL_LR = 1 << 15
WZ_CONTROL_DEAC = 1 << 9
DSM_ATTR_DEALLOCATE = 0x04

ADMIN_VIEWS = {
    AdminOpcode.IDENTIFY: Identify,
    AdminOpcode.GET_LOG_PAGE: GetLogPage,
    AdminOpcode.SET_FEATURES: Features,
    AdminOpcode.GET_FEATURES: Features,
    AdminOpcode.ABORT: Abort,
    AdminOpcode.KEEP_ALIVE: NoFields,
    AdminOpcode.ASYNC_EVENT_REQUEST: NoFields,
}

IO_VIEWS = {
    NvmOpcode.READ: ReadWrite,
    NvmOpcode.WRITE: ReadWrite,
    NvmOpcode.COMPARE: ReadWrite,
    NvmOpcode.WRITE_ZEROES: ReadWrite,
    NvmOpcode.VERIFY: ReadWrite,
    NvmOpcode.FLUSH: NoFields,
    NvmOpcode.DATASET_MANAGEMENT: DatasetManagement,
}

FABRICS_VIEWS = {
    FabricsType.CONNECT: Connect,
    FabricsType.PROPERTY_SET: PropertySet,
    FabricsType.PROPERTY_GET: PropertyGet,
    FabricsType.DISCONNECT: Disconnect,
}


def command_name(opcode: int, fctype: int | None, admin: bool) -> str:
    """A readable command name, e.g. 'Identify', 'Read', 'Fabrics Connect'."""
    if opcode == 0x7F:
        try:
            return "Fabrics " + FabricsType(fctype).name.replace("_", " ").title()
        except ValueError:
            return f"Fabrics {fctype:#04x}"
    table = AdminOpcode if admin else NvmOpcode
    try:
        return table(opcode).name.replace("_", " ").title().replace("Io ", "I/O ")
    except ValueError:
        return f"{'Admin' if admin else 'I/O'} {opcode:#04x}"


def command_view(sqe: bytes, admin: bool):
    """Parse ``sqe`` with the view its opcode calls for (the generic ``Sqe`` when none applies)."""
    opcode = sqe[0]
    if opcode == 0x7F:
        return FABRICS_VIEWS.get(sqe[4], FabricsGeneric).parse(sqe)
    views = ADMIN_VIEWS if admin else IO_VIEWS
    return views.get(opcode, Sqe).parse(sqe)


def numd(length: int) -> tuple[int, int]:
    """Split a byte count into Get Log Page's 0's based NUMDL/NUMDU dword count."""
    if length <= 0 or length % 4:
        raise ValueError("log page length must be a positive multiple of 4")
    n = length // 4 - 1
    return n & 0xFFFF, n >> 16


