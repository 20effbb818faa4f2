"""Events the sans-I/O queues return from ``receive``: small immutable records.

A transport reads bytes, hands them to a queue, acts on the events, and sends what
``data_to_send()`` returns. Events never carry sockets or clocks.

The two made for every command, ``Completion`` and ``CommandReceived``, are named tuples: a
frozen dataclass pays ``object.__setattr__`` per field and costs about a microsecond to build,
three times as much.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..errors import ProtocolError


@dataclass(frozen=True, slots=True)
class IcComplete:
    """The IC exchange finished: the queue is live with these negotiated parameters."""

    hdgst: bool
    ddgst: bool
    hpda: int
    cpda: int
    maxh2cdata: int
    maxr2t: int


class Completion(NamedTuple):
    """A command finished (host side). ``status`` is the 15-bit status field without phase."""

    cid: int
    status: int
    dw0: int
    dw1: int
    sqhd: int
    sqid: int
    data: memoryview | None
    context: object = None


class CommandReceived(NamedTuple):
    """A command is ready for execution (controller side): in-capsule or R2T data has all arrived.

    ``c2h_length`` is how many bytes the host expects back for a controller-to-host transfer.
    """

    cid: int
    sqe: bytes
    data: memoryview | None
    c2h_length: int


@dataclass(frozen=True, slots=True)
class PeerTerminated:
    """The peer sent a TermReq; the connection is over (never answered with another TermReq)."""

    fes: int
    fei: int
    header: bytes


@dataclass(frozen=True, slots=True)
class ProtocolFailure:
    """We detected a protocol violation; a TermReq is queued, then the transport must close."""

    error: ProtocolError
