"""A TCP proxy for fault injection between a host and a target on loopback.

The network faults storage must survive are injected here, between real sockets: latency,
stalls (nothing forwarded until resumed), truncation (a connection cut after N bytes in one
direction), resets (RST to both sides), and refusing new connections. It runs its own asyncio loop
in a thread so blocking-host tests can use it too.
"""
from __future__ import annotations

import asyncio
import socket
import struct
import threading


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.upstream = upstream
        self._listen = listen
        self.delay = 0.0  # seconds added to every forwarded chunk
        self.refuse = False  # close new connections at once
        # cut every connection once this many bytes have passed in that direction (one-shot)
        self.cut_after: dict[str, int | None] = {"h2c": None, "c2h": None}
        self.forwarded = {"h2c": 0, "c2h": 0}
        self.connections = 0
        self._stalled: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # ---- lifecycle ----
    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, *self._listen))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _shutdown(self) -> None:
        self._server.close()
        await self._reset_all()

    # ---- faults ----
    def stall(self) -> None:
        """Stop forwarding in both directions (bytes wait in the proxy) until ``resume``."""
        async def _set():
            self._stalled = asyncio.Event()
        self._call(_set())

    def resume(self) -> None:
        async def _clear():
            if self._stalled is not None:
                self._stalled.set()
                self._stalled = None
        self._call(_clear())

    def reset_all(self) -> None:
        """Abort every proxied connection with a TCP RST to both ends."""
        self._call(self._reset_all())

    async def _reset_all(self) -> None:
        for w in list(self._writers):
            sock = w.get_extra_info("socket")
            if sock is not None:
                try:  # linger 0: close sends RST instead of FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass  # already closed by its peer
            w.transport.abort()
        self._writers.clear()

    # ---- forwarding ----
    async def _accept(self, reader, writer) -> None:
        if self.refuse:
            writer.transport.abort()
            return
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer, "h2c"),
                             self._pipe(up_reader, writer, "c2h"), return_exceptions=True)
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.close()

    async def _pipe(self, reader, writer, direction: str) -> None:
        try:
            while data := await reader.read(65536):
                if self._stalled is not None:
                    await self._stalled.wait()
                if self.delay:
                    await asyncio.sleep(self.delay)
                limit = self.cut_after[direction]
                if limit is not None:
                    room = limit - self.forwarded[direction]
                    if room <= 0 or len(data) > room:
                        writer.write(data[:max(room, 0)])
                        self.forwarded[direction] += max(room, 0)
                        self.cut_after[direction] = None  # one cut per arming
                        await writer.drain()
                        await self._reset_all()
                        return
                writer.write(data)
                self.forwarded[direction] += len(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass
