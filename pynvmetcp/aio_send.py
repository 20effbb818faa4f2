"""Scatter-gather sends for asyncio transports (used by the asyncio host and the target).

``transport.writelines`` on Python 3.11 joins the buffers into one new bytes object before
sending: a copy of every payload. When the transport's own buffer is empty, the PDUs of one turn
go out with a single ``writev`` straight from their buffers; only what the socket did not take is
handed to the transport (which then keeps ordering and flow control as usual).
"""
from __future__ import annotations

import os


class BufferSender:
    def __init__(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None else -1

    def send(self, buffers: list) -> None:
        if not buffers or self.transport.is_closing():
            return
        if self._fd < 0 or self.transport.get_write_buffer_size():
            self.transport.writelines(buffers)
            return
        try:
            sent = os.writev(self._fd, buffers[:1024])  # IOV_MAX
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.transport.writelines(buffers)  # let the transport report the failure
            return
        for i, buf in enumerate(buffers):
            n = buf.nbytes if type(buf) is memoryview else len(buf)
            if sent < n:
                rest = [memoryview(buf)[sent:]] + list(buffers[i + 1:])
                self.transport.writelines(rest)
                return
            sent -= n
