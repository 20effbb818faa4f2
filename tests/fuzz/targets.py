"""Fuzz targets shared by the atheris harness (make fuzz) and the regression replay in pytest.

Each target takes arbitrary bytes and must only ever raise the documented errors: ProtocolError
from the framer and engines, construct's errors from the spec decoders (a truncated page is a
parse error, not a crash). Anything else is a bug, and the input that found it is kept under
tests/fuzz/regressions/<target>/ forever.
"""
from __future__ import annotations

import construct

from pynvmetcp.errors import ProtocolError
from pynvmetcp.protocol import ControllerQueue, HostQueue
from pynvmetcp.spec import fabrics, identify, logpages, pdu, sqe
from pynvmetcp.wire.framer import Framer

MAX_DATA = 1 << 16


def _flags(data: bytes) -> tuple[int, bytes]:
    return (data[0] if data else 0), data[1:]


def framer(data: bytes) -> None:
    """Both receivers, digests on/off, PDA, split into two feeds at a fuzzed point."""
    opts, data = _flags(data)
    f = Framer("host" if opts & 1 else "controller", max_data=MAX_DATA)
    f.hdgst, f.ddgst, f.pda = bool(opts & 2), bool(opts & 4), (opts >> 3) & 3
    cut = (opts * 7) % (len(data) + 1)
    try:
        for part in (data[:cut], data[cut:]):
            for p in f.feed(part):
                assert len(p.data) <= max(MAX_DATA, 128)
    except ProtocolError as exc:
        assert 1 <= exc.fes <= 6 and len(exc.header) <= 128


_DECODERS = [pdu.Pdu, sqe.Sqe, sqe.Connect, sqe.GetLogPage, sqe.Identify, sqe.Features,
             sqe.ReadWrite, fabrics.ConnectData, identify.IdentifyController,
             identify.IdentifyNamespace, logpages.DiscoveryLogPage,
             logpages.ExtendedDiscoveryLogEntry, logpages.AnaLogPage, logpages.SmartLog,
             logpages.ErrorLogEntry]


def decoders(data: bytes) -> None:
    """Every construct decoder, chosen by the first byte; parse errors are fine, crashes not."""
    which, data = _flags(data)
    struct_ = _DECODERS[which % len(_DECODERS)]
    try:
        struct_.parse(data)
    except (construct.ConstructError, UnicodeDecodeError, ValueError):
        pass
    try:
        identify.parse_ns_descriptors(data)
    except ValueError:
        pass


def engines(data: bytes) -> None:
    """Raw bytes into a live host queue and a controller queue (after a valid IC exchange)."""
    opts, data = _flags(data)
    host = HostQueue(qid=1, queue_size=8)
    ctrl = ControllerQueue(max_transfer=MAX_DATA)
    host.initiate()
    ctrl.receive(b"".join(bytes(b) for b in host.data_to_send()))
    host.receive(b"".join(bytes(b) for b in ctrl.data_to_send()))
    if opts & 1:
        ctrl.configure(1, 7)
    ctrl.receive(data)
    host.receive(data)
    ctrl.data_to_send()
    host.data_to_send()


TARGETS = {"framer": framer, "decoders": decoders, "engines": engines}
