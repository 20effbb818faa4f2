"""``Target``: the userspace target as one object, in a running event loop or a background thread.

    with Target.serve(config) as t:              # tests, `make demo`: a thread runs the loop
        pynvmetcp.connect("127.0.0.1", t.port, nqn)
        t.resize_namespace(nqn, 1, 128 << 20)    # thread-safe: runs in the target's loop

    async with Target(config) as t:              # inside an asyncio program
        await t.serve_forever()

Every model object (subsystems, namespaces, controllers) belongs to the target's event loop
thread. The methods here that change things hop into that thread (``call``) and wait, so a test or
an orchestrator can drive a live target from anywhere without locks.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from contextlib import contextmanager
from typing import Any, Awaitable, Callable, Iterator, TypeVar

from .config import ConfigError, NamespaceConfig, TargetConfig, build_namespace
from .discovery import Referral
from .namespace import Namespace
from .port import Port
from .registry import Registry
from .server import TargetServer
from .subsystem import Subsystem

log = logging.getLogger(__name__)
T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop a target runs in when it makes its own (``serve``, ``pynvmetcp target``):
    uvloop's where it is installed, as it is with pynvmetcp on Linux. At queue depth 1 the
    standard loop's turn (selector, handles, transport callbacks, all Python) costs a target
    about as many instructions per 4 KiB read as everything pynvmetcp does for it; uvloop's,
    written in C over libuv, a small part of that (benchmarks/RESULTS.md). The target itself
    is plain asyncio and runs on either: ``PYNVMETCP_LOOP=asyncio`` chooses the standard one."""
    if os.environ.get("PYNVMETCP_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Target:
    def __init__(self, config: TargetConfig | None = None) -> None:
        self.config = config or TargetConfig()
        self.registry: Registry = self.config.build_registry()
        self.server = TargetServer(self.registry, options=self.config.options(),
                                   keepalive_tick=self.config.keepalive_tick,
                                   connect_timeout=self.config.connect_timeout)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    # ---- where it listens ----
    @property
    def ports(self) -> list[Port]:
        return sorted(self.registry.ports.values(), key=lambda p: p.portid)

    @property
    def port(self) -> int:
        """The first I/O port's TCP port (the one to connect to)."""
        for p in self.ports:
            if not p.discovery_only:
                return p.trsvcid
        return self.ports[0].trsvcid

    @property
    def discovery_port(self) -> int:
        """The first discovery-only port, else the first port (I/O ports answer discovery)."""
        for p in self.ports:
            if p.discovery_only:
                return p.trsvcid
        return self.ports[0].trsvcid

    # ---- asyncio API ----
    async def start(self) -> Target:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        await self.server.start()
        return self

    async def stop(self) -> None:
        await self.server.close()
        if self._stopped is not None:
            self._stopped.set()

    async def serve_forever(self) -> None:
        """Return when ``stop()`` has been called (e.g. from a signal handler)."""
        assert self._stopped is not None, "start() first"
        await self._stopped.wait()

    async def __aenter__(self) -> Target:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    # ---- background thread API ----
    @classmethod
    @contextmanager
    def serve(cls, config: TargetConfig | None = None) -> Iterator[Target]:
        """Run a target in a background thread for the duration of the ``with`` block."""
        target = cls(config)
        target.start_in_thread()
        try:
            yield target
        finally:
            target.stop_in_thread()

    def start_in_thread(self) -> None:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

        self._thread = threading.Thread(target=run, name="nvme-target", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = None
            self.registry.close()
            raise failure[0]

    def stop_in_thread(self, timeout: float = 10.0) -> None:
        if self._thread is None or self._loop is None:
            return
        loop = self._loop

        async def stop_and_halt() -> None:
            try:
                await self.stop()
            finally:
                loop.stop()

        asyncio.run_coroutine_threadsafe(stop_and_halt(), loop)
        self._thread.join(timeout)
        self._thread = None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in the target's loop thread and return its result (or raise its error).

        Called from inside the target's own loop, ``fn`` runs directly; a coroutine it returns
        (``add_port``, ``remove_port``) is then returned unawaited, for the caller to await.
        """
        loop = self._loop
        if loop is None or not loop.is_running():
            return fn(*args, **kwargs)
        try:
            if asyncio.get_running_loop() is loop:
                return fn(*args, **kwargs)
        except RuntimeError:
            pass

        async def run() -> T:
            result = fn(*args, **kwargs)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), loop).result()

    # ---- changes to a live target (thread-safe) ----
    def subsystem(self, nqn: str) -> Subsystem:
        try:
            return self.registry.subsystems[nqn]
        except KeyError:
            raise KeyError(f"no subsystem {nqn}") from None

    def add_subsystem(self, nqn: str, **kwargs: Any) -> Subsystem:
        """A new, empty subsystem (keyword arguments as ``Subsystem``)."""
        return self.call(lambda: self.registry.add_subsystem(Subsystem(nqn, **kwargs)))

    def remove_subsystem(self, nqn: str) -> None:
        self.call(self.registry.remove_subsystem, nqn)

    def add_namespace(self, nqn: str, source: str | Namespace, *, nsid: int = 0,
                      **kwargs: Any) -> int:
        """Attach a namespace (``source``: path or mem:SIZE, or a ready ``Namespace``; keyword
        arguments as ``NamespaceConfig``); returns its NSID. Hosts get a change event."""
        ns = source if isinstance(source, Namespace) else build_namespace(
            NamespaceConfig(source, nsid=nsid, **kwargs))
        try:
            return self.call(lambda: self.subsystem(nqn).add_namespace(ns, nsid or None).nsid)
        except BaseException:
            ns.backend.close()
            raise

    def remove_namespace(self, nqn: str, nsid: int) -> None:
        self.call(lambda: self.subsystem(nqn).remove_namespace(nsid))

    def resize_namespace(self, nqn: str, nsid: int, size: int) -> None:
        self.call(lambda: self.subsystem(nqn).resize_namespace(nsid, size))

    def set_namespace_hosts(self, nqn: str, nsid: int, hosts: list[str] | None) -> None:
        self.call(lambda: self.subsystem(nqn).set_namespace_hosts(nsid, hosts))

    def allow_host(self, nqn: str, hostnqn: str) -> None:
        self.call(lambda: self.subsystem(nqn).allow_host(hostnqn))

    def deny_host(self, nqn: str, hostnqn: str) -> None:
        self.call(lambda: self.subsystem(nqn).deny_host(hostnqn))

    def set_allow_any_host(self, nqn: str, allow: bool) -> None:
        self.call(lambda: self.subsystem(nqn).set_allow_any_host(allow))

    def set_ana_state(self, nqn: str, portid: int, group: int, state: str | int) -> bool:
        """Change ANA group ``group`` of ``nqn`` as seen through port ``portid``."""
        if portid not in self.registry.ports:
            raise KeyError(f"no port with id {portid}")
        return self.call(lambda: self.subsystem(nqn).set_ana_state(portid, group, state))

    def add_referral(self, traddr: str, trsvcid: int = 8009, portid: int = 0) -> None:
        self.call(self.registry.discovery.add_referral, Referral(traddr, trsvcid, portid))

    def remove_referral(self, traddr: str, trsvcid: int = 8009) -> None:
        self.call(self.registry.discovery.remove_referral, traddr, trsvcid)

    def add_port(self, traddr: str, trsvcid: int, *, discovery_only: bool = False,
                 portid: int = 0) -> Port | Awaitable[Port]:
        """Listen on one more address (trsvcid 0: ephemeral); returns the bound port (from
        inside the target's loop: a coroutine to await, as ``call`` says)."""
        async def add() -> Port:
            pid = portid or max(self.registry.ports, default=0) + 1
            port = self.registry.add_port(Port(pid, traddr, trsvcid, discovery_only))
            try:
                await self.server.listen(port)
            except BaseException:
                self.registry.remove_port(pid)
                raise
            return port
        return self.call(add)

    def remove_port(self, portid: int) -> None | Awaitable[None]:
        """Stop listening on a port and end the associations made through it (from inside
        the target's loop: a coroutine to await, as ``call`` says)."""
        async def remove() -> None:
            await self.server.unlisten(portid)
            self.registry.remove_port(portid)
        return self.call(remove)

    def controllers(self) -> list[dict]:
        """A snapshot of the live controllers (subsystem, cntlid, host, port, queues)."""
        def snap() -> list[dict]:
            return [{"subnqn": c.subsystem.nqn, "cntlid": c.cntlid, "hostnqn": c.hostnqn,
                     "hostid": str(c.hostid), "portid": c.port.portid,
                     "io_queues": sorted(c.io), "kato_ms": int(c.keepalive.kato * 1000),
                     "aers": len(c.aer.outstanding()), "events_sent": c.events_sent}
                    for c in self.registry.controllers()]
        return self.call(snap)


__all__ = ["Target", "TargetConfig", "ConfigError"]
