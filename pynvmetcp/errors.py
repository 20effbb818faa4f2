"""Error types shared by every floor.

Two kinds of failure must never be confused (the lesson of h11): a *peer* that broke the NVMe/TCP
protocol, which is answered on the wire with a TermReq and a closed connection, and an NVMe command
that completed with an error status, which is a normal answer carrying SCT/SC/DNR. A third kind,
misuse of the API by the caller, is a plain ``ValueError``/``RuntimeError`` and never reaches a peer.
"""
from __future__ import annotations


class NvmeTcpError(Exception):
    """Base of every error pynvmetcp raises on purpose."""

    #: "traddr:trsvcid" when the message already says where (a caller need not prefix it).
    where = ""


class ProtocolError(NvmeTcpError):
    """The peer sent bytes that violate NVMe/TCP.

    ``fes`` and ``fei`` are exactly what a TermReq reporting this error carries (FES value and the
    byte offset of the offending field, or the received digest for a header digest error), and
    ``header`` is the offending PDU header (≤128 bytes) a TermReq copies back. ``before`` holds
    the whole PDUs a decoder found ahead of the error in the same bytes: they arrived intact,
    so they count, whether or not the bad one came in the same receive.
    """

    def __init__(self, message: str, fes: int, fei: int = 0, header: bytes = b"") -> None:
        super().__init__(message)
        self.fes = fes
        self.fei = fei
        self.header = bytes(header[:128])
        self.before: list = []


class TermReqReceived(NvmeTcpError):
    """The peer ended the connection with a TermReq (its FES/FEI are kept for the report)."""

    def __init__(self, fes: int, fei: int, header: bytes = b"") -> None:
        from .spec.status import fes_name

        super().__init__(f"peer sent TermReq: {fes_name(fes)} (fes={fes:#x}, fei={fei:#x})")
        self.fes = fes
        self.fei = fei
        self.header = header


class NvmeStatusError(NvmeTcpError):
    """An NVMe command completed with a non-zero status."""

    def __init__(self, status: int, *, opcode: int | None = None, fabrics: bool = False,
                 cid: int | None = None, dw0: int = 0) -> None:
        from .spec.status import status_name

        self.status = status & 0x7FFF  # the 15-bit field without the phase bit
        self.sc = self.status & 0xFF
        self.sct = (self.status >> 8) & 0x7
        self.crd = (self.status >> 11) & 0x3
        self.more = bool(self.status & 0x2000)
        self.dnr = bool(self.status & 0x4000)
        self.opcode = opcode
        self.cid = cid
        self.dw0 = dw0
        self.name = status_name(self.sct, self.sc, fabrics=fabrics)
        dnr = ", DNR" if self.dnr else ""
        super().__init__(f"{self.name} (sct={self.sct:#x}, sc={self.sc:#04x}{dnr})")


class ConnectionLost(NvmeTcpError):
    """The transport closed while commands were outstanding."""


class CommandTimeout(NvmeTcpError):
    """A command did not complete in the time allowed."""
