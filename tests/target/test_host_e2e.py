"""Our userspace host against our target: every floor of the project on real loopback sockets."""
from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import threading
import time

import pytest

import pynvmetcp
from pynvmetcp.protocol.aer import AsyncEvent
from pynvmetcp.spec.identify import OAES_ANA_CHANGE, OAES_NS_ATTR
from pynvmetcp.spec.opcodes import AsyncEventNotice, FeatureId
from pynvmetcp.target import NamespaceConfig
from tests.target.support import NQN, make_config, running


@pytest.mark.parametrize("digests", [False, True])
def test_sync_host_multi_queue_io(digests):
    with running(make_config(namespaces=["mem:64M"])) as t:
        with pynvmetcp.connect("127.0.0.1", t.port, NQN, nr_io_queues=4, hdr_digest=digests,
                               data_digest=digests) as c:
            assert len(c.io) == 4
            ns = c.namespace(1)
            chunks = {slba: os.urandom(256 << 10) for slba in range(0, 64 * 512, 512)}
            errors = []

            def worker(part):
                try:
                    for slba in part:
                        ns.write(slba, chunks[slba])
                    for slba in part:
                        assert bytes(ns.read(slba, 512)) == chunks[slba]
                except Exception as exc:  # pragma: no cover - reported below
                    errors.append(exc)

            keys = sorted(chunks)
            threads = [threading.Thread(target=worker, args=(keys[i::4],)) for i in range(4)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            assert not errors
            assert len({c2["cntlid"] for c2 in t.controllers()}) == 1
            assert t.controllers()[0]["io_queues"] == [1, 2, 3, 4]


def test_asyncio_host():
    async def main(port):
        async with await pynvmetcp.aconnect("127.0.0.1", port, NQN, nr_io_queues=2) as c:
            ns = await c.namespace(1)
            data = os.urandom(64 << 10)
            await asyncio.gather(*(ns.write(i * 128, data) for i in range(16)))
            reads = await asyncio.gather(*(ns.read(i * 128, 128) for i in range(16)))
            assert all(bytes(r) == data for r in reads)
            log = await pynvmetcp.adiscover("127.0.0.1", port)
            assert [e.subnqn for e in log.entries if e.subtype == 2] == [NQN]

    with running() as t:
        asyncio.run(main(t.port))


def test_host_sees_resize_through_the_event():
    with running() as t:
        with pynvmetcp.connect("127.0.0.1", t.port, NQN) as c:
            got = []
            c.event_handlers.append(got.append)
            c.arm_async_events()
            c.enable_async_events(1 << 8)
            t.resize_namespace(NQN, 1, 32 << 20)
            deadline = time.monotonic() + 5
            while not got and time.monotonic() < deadline:
                time.sleep(0.02)
            assert got == [AsyncEvent(2, 0, 4)]
            c.get_log_page(0x04, 4096)
            assert c.namespace(1).size == 32 << 20


def test_watch_events_delivers_each_subscription_its_own_notices():
    with running() as t:
        with pynvmetcp.connect("127.0.0.1", t.port, NQN) as c:
            resized, ana = queue.Queue(), queue.Queue()
            c.watch_events([AsyncEventNotice.NS_ATTR_CHANGED], resized.put)
            c.watch_events([AsyncEventNotice.ANA_CHANGE], ana.put)
            # the second subscription added its notice to the first's, not replaced it
            assert c.get_features(FeatureId.ASYNC_EVENT) == OAES_NS_ATTR | OAES_ANA_CHANGE
            t.resize_namespace(NQN, 1, 32 << 20)
            assert resized.get(timeout=5) == AsyncEvent(2, 0, 4)
            c.get_log_page(0x04, 4096)  # reading the log re-enables the notice
            t.set_ana_state(NQN, 1, 1, "inaccessible")
            assert ana.get(timeout=5) == AsyncEvent(2, 3, 0x0C)
            assert resized.empty()  # each handler saw only its own notice


def test_watch_events_refuses_what_cannot_be_enabled():
    with running() as t:
        with pynvmetcp.connect("127.0.0.1", t.port, NQN) as c:
            with pytest.raises(ValueError, match="FW_ACTIVATION"):
                c.watch_events([AsyncEventNotice.FW_ACTIVATION], print)
            with pytest.raises(ValueError, match="at least one"):
                c.watch_events([], print)
            assert c.get_features(FeatureId.ASYNC_EVENT) == 0  # nothing was sent


def test_watch_events_refused_leaves_the_configuration_as_it_was():
    """A discovery controller supports only the log-change notice: asking for namespace
    notices is refused, and the refused bit is not sent again by a later subscription."""
    from pynvmetcp.errors import NvmeStatusError
    from pynvmetcp.spec.identify import OAES_DISC_LOG_CHANGE
    from pynvmetcp.spec.opcodes import DISCOVERY_NQN

    with running() as t:
        with pynvmetcp.connect("127.0.0.1", t.port, DISCOVERY_NQN, nr_io_queues=0) as c:
            with pytest.raises(NvmeStatusError):
                c.watch_events([AsyncEventNotice.NS_ATTR_CHANGED], print)
            assert not c.event_handlers
            c.watch_events([AsyncEventNotice.DISCOVERY_LOG_CHANGE], print)
            assert c.get_features(FeatureId.ASYNC_EVENT) == OAES_DISC_LOG_CHANGE


def test_asyncio_concurrent_subscriptions_both_stay_enabled():
    async def main(port):
        async with await pynvmetcp.aconnect("127.0.0.1", port, NQN) as c:
            await asyncio.gather(c.watch_events([AsyncEventNotice.NS_ATTR_CHANGED], print),
                                 c.watch_events([AsyncEventNotice.ANA_CHANGE], print))
            assert await c.get_features(FeatureId.ASYNC_EVENT) == OAES_NS_ATTR | OAES_ANA_CHANGE

    with running() as t:
        asyncio.run(main(t.port))


def test_asyncio_watch_events():
    async def main(port, t):
        async with await pynvmetcp.aconnect("127.0.0.1", port, NQN) as c:
            got = asyncio.Event()
            await c.watch_events([AsyncEventNotice.NS_ATTR_CHANGED], lambda ev: got.set())
            await asyncio.to_thread(t.resize_namespace, NQN, 1, 32 << 20)
            await asyncio.wait_for(got.wait(), 5)
            assert (await c.namespace(1)).size == 32 << 20

    with running() as t:
        asyncio.run(main(t.port, t))


def test_file_namespace_checksum(tmp_path):
    path = tmp_path / "disk.img"
    cfg = make_config(namespaces=[NamespaceConfig(str(path), size="8M")])
    data = os.urandom(8 << 20)
    with running(cfg) as t:
        with pynvmetcp.connect("127.0.0.1", t.port, NQN, nr_io_queues=2, hdr_digest=True,
                               data_digest=True) as c:
            ns = c.namespace(1)
            for off in range(0, len(data), 1 << 20):
                ns.write(off // 512, data[off:off + (1 << 20)])
            ns.flush()
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_host_recovers_when_the_target_drops_the_association():
    """The target ends an association (as on keep-alive expiry); the host reconnects and the
    namespace's data is still there."""
    with running() as t:
        with pynvmetcp.connect("127.0.0.1", t.port, NQN, kato=2, reconnect_delay=0.1) as c:
            ns = c.namespace(1)
            ns.write(0, b"\x33" * 512)
            first = c.cntlid
            t.call(lambda: [ctrl.drop("test") for ctrl in list(t.registry.controllers())])
            deadline = time.monotonic() + 10
            while c.cntlid == first and time.monotonic() < deadline:
                time.sleep(0.05)  # the host's admin thread notices and reconnects
            assert c.cntlid != first
            assert bytes(ns.read(0, 1)) == b"\x33" * 512


def test_async_target_api_in_the_callers_loop():
    """``async with Target(...)`` runs in the caller's event loop, next to an asyncio host."""
    from pynvmetcp.target import Target

    async def main():
        async with Target(make_config()) as t:
            async with await pynvmetcp.aconnect("127.0.0.1", t.port, NQN) as c:
                ns = await c.namespace(1)
                await ns.write(0, b"\x44" * 4096)
                assert bytes(await ns.read(0, 8)) == b"\x44" * 4096
            stopper = asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(
                t.stop()))
            await asyncio.wait_for(t.serve_forever(), 5)
            stopper.cancel()

    asyncio.run(main())


def test_ipv6_loopback():
    import socket

    from pynvmetcp.target import ListenConfig

    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    cfg = make_config(discovery_port=False)
    cfg.listen = [ListenConfig("::1", 0)]
    with running(cfg) as t:
        log = pynvmetcp.discover("::1", t.port)
        (e,) = [e for e in log.entries if e.subtype == 2]
        assert (e.adrfam, e.traddr, int(e.trsvcid)) == (2, "::1", t.port)
        with pynvmetcp.connect("::1", t.port, NQN) as c:
            assert c.namespaces() == [1]
