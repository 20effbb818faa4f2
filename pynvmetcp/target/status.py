"""Status values the target answers with, and the exception its command handlers raise.

Handlers raise ``NvmeStatusError`` (the project's one type for an NVMe status) on the error path;
the dispatcher turns it into a completion. DNR is set by default because almost every refusal
here (bad field, bad namespace, LBA out of range) would fail the same way if retried; the few
retryable ones (path errors, transient transport errors) pass ``dnr=False``.
"""
from __future__ import annotations

from ..errors import NvmeStatusError
from ..spec.cqe import make_status
from ..spec.status import (SC_CMD_SEQ_ERROR, SC_INVALID_FIELD, SC_INVALID_NS, SC_INVALID_OPCODE,
                           SCT_COMMAND_SPECIFIC, SCT_GENERIC)

SUCCESS = 0


def status(sc: int, sct: int = SCT_GENERIC, dnr: bool = True) -> int:
    return make_status(sct, sc, dnr=dnr)


def fail(sc: int, sct: int = SCT_GENERIC, *, dnr: bool = True, dw0: int = 0,
         fabrics: bool = False) -> NvmeStatusError:
    """The exception a handler raises to complete its command with this status."""
    return NvmeStatusError(status(sc, sct, dnr), fabrics=fabrics, dw0=dw0)


def invalid_field() -> NvmeStatusError:
    return fail(SC_INVALID_FIELD)


def invalid_opcode() -> NvmeStatusError:
    return fail(SC_INVALID_OPCODE)


def invalid_ns() -> NvmeStatusError:
    return fail(SC_INVALID_NS)


def sequence_error() -> NvmeStatusError:
    return fail(SC_CMD_SEQ_ERROR)


def connect_error(sc: int, *, dw0: int = 0) -> NvmeStatusError:
    return fail(sc, SCT_COMMAND_SPECIFIC, dw0=dw0, fabrics=True)


def ipo(offset: int, in_data: bool) -> int:
    """DW0 of Connect Invalid Parameters: IPO = byte offset, IATTR (bit 16) = in the data."""
    return (offset & 0xFFFF) | (1 << 16 if in_data else 0)
