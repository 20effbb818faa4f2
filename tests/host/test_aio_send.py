"""BufferSender: what the socket does not take at once is handed to the transport, in order,
and later sends queue behind it instead of overtaking it."""
from __future__ import annotations

import socket

import pytest

from pynvmetcp.aio_send import BufferSender, advance


class Transport:
    """The few transport calls BufferSender makes, over a real non-blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.queued: list[bytes] = []

    def get_extra_info(self, name):
        return self.sock if name == "socket" else None

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.queued))

    def writelines(self, buffers) -> None:
        self.queued.append(b"".join(bytes(b) for b in buffers))


@pytest.mark.parametrize("pieces", [1, 3])  # one buffer is written, several are gathered
def test_a_partial_send_hands_the_rest_over_in_order(pieces):
    near, far = socket.socketpair()
    near.setblocking(False)
    near.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    transport = Transport(near)
    sender = BufferSender(transport)
    first = [bytes([i]) * (300_000 // pieces) for i in range(pieces)]
    sender.send(first)
    assert transport.queued, "the socket took 300 kB at once: nothing was tested"
    assert len(transport.queued[0]) < 300_000, "the socket took nothing: a partial send untested"
    sender.send([b"after"])  # must not overtake what waits in the transport
    far.setblocking(False)
    got = bytearray()
    while True:
        try:
            chunk = far.recv(1 << 20)
        except BlockingIOError:
            break
        got += chunk
    assert bytes(got) + b"".join(transport.queued) == b"".join(first) + b"after"
    near.close()
    far.close()


def test_advance_drops_exactly_the_bytes_sent():
    bufs = [b"abc", memoryview(b"defg"), b"h"]
    for sent in range(9):
        assert b"".join(bytes(b) for b in advance(bufs, sent)) == b"abcdefgh"[sent:]
