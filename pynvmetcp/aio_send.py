"""Scatter-gather sends of an engine's buffers: for asyncio transports (the asyncio host and
the target), and ``advance`` for any partial send (the blocking host's too).

``transport.writelines`` on Python 3.11 joins the buffers into one new bytes object before
sending: a copy of every payload. When the transport's own buffer is empty, the PDUs of one turn
go out with a single ``writev`` straight from their buffers; only what the socket did not take is
handed to the transport (which then keeps ordering and flow control as usual).
"""
from __future__ import annotations

import os


class BufferSender:
    """Sends an engine's buffers (bytes objects and byte-format memoryviews, as both engines
    produce) on ``transport``'s socket."""

    def __init__(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1
        # Whether the transport may hold unsent bytes (it was handed some): only then is its
        # buffer asked about, which otherwise costs a call per send for an answer that is 0.
        self._handed = False

    def send(self, buffers: list) -> None:
        transport = self.transport
        if not buffers or transport.is_closing():
            return
        if self._fd < 0 or (self._handed and transport.get_write_buffer_size()):
            self._hand_over(buffers)
            return
        self._handed = False
        try:
            if len(buffers) == 1:  # one answer or command: a write, and no sum to take
                sent = os.write(self._fd, buffers[0])
                if sent == len(buffers[0]):
                    return
            else:
                sent = os.writev(self._fd, buffers[:1024])  # IOV_MAX
                if sent == sum(map(len, buffers)):  # the usual case: the socket took all
                    return
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._hand_over(buffers)  # let the transport report the failure
            return
        self._hand_over(advance(buffers, sent))

    def _hand_over(self, buffers: list) -> None:
        self.transport.writelines(buffers)
        self._handed = True


def advance(bufs: list, sent: int) -> list:
    """What is left of a buffer list after a send took ``sent`` bytes from its front."""
    i = 0
    while i < len(bufs) and sent >= len(bufs[i]):
        sent -= len(bufs[i])
        i += 1
    rest = bufs[i:]
    if rest and sent:
        rest[0] = memoryview(rest[0])[sent:]
    return rest
