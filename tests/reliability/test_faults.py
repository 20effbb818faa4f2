"""Faults between a real host and a real target on loopback, through the fault proxy.

Every write carries its block number and a per-block checksum, so after each fault the data is
checked block by block against a model of what the host saw completed: nothing acknowledged may be
lost or corrupted, whatever the network did.
"""
from __future__ import annotations

import hashlib
import os
import queue
import struct
import threading
import time

import pytest

import pynvmetcp
from pynvmetcp.errors import CommandTimeout
from pynvmetcp.spec.opcodes import AsyncEventNotice
from pynvmetcp.target import (ListenConfig, NamespaceConfig, SubsystemConfig, Target,
                              TargetConfig)
from tests.reliability.proxy import FaultProxy

NQN = "nqn.2024-01.io.pynvmetcp:faults"
BLOCK = 4096


def block(n: int, gen: int) -> bytes:
    """A self-describing block: number, generation, random fill, SHA-256 of the rest."""
    body = struct.pack("<QQ", n, gen) + os.urandom(BLOCK - 16 - 32)
    return body + hashlib.sha256(body).digest()


def check_block(data: bytes) -> tuple[int, int]:
    body, digest = data[:-32], data[-32:]
    assert hashlib.sha256(body).digest() == digest, "corrupted block"
    return struct.unpack_from("<QQ", body)


def config(port: int = 0, source: str = "mem:16M") -> TargetConfig:
    return TargetConfig(listen=[ListenConfig("127.0.0.1", port)],
                        subsystems=[SubsystemConfig(NQN, namespaces=[NamespaceConfig(
                            source, size="16M" if not source.startswith("mem:") else None)])],
                        keepalive_tick=0.05)


def verify(ns, model: dict[int, int]) -> None:
    bs = BLOCK // ns.block_size
    for n, gen in model.items():
        assert check_block(bytes(ns.read(n * bs, bs))) == (n, gen)


def test_reset_mid_write_reconnects_and_loses_nothing():
    with Target.serve(config()) as target, FaultProxy(("127.0.0.1", target.port)) as proxy:
        with pynvmetcp.connect("127.0.0.1", proxy.port, NQN, nr_io_queues=2, kato=2,
                               ctrl_loss_tmo=10, reconnect_delay=0.2, timeout=5) as ctrl:
            ns = ctrl.namespace(1)
            bs = BLOCK // ns.block_size
            model: dict[int, int] = {}
            for i in range(300):
                n = i % 64
                if i == 150:
                    proxy.reset_all()  # RST to both sides in the middle of the stream
                ns.write(n * bs, block(n, i))
                model[n] = i  # only what completed counts
            assert proxy.connections > 3  # the association was re-established
            verify(ns, model)


def test_reset_mid_read_reconnects_and_returns_the_right_data():
    with Target.serve(config()) as target, FaultProxy(("127.0.0.1", target.port)) as proxy:
        with pynvmetcp.connect("127.0.0.1", proxy.port, NQN, nr_io_queues=1, kato=2,
                               ctrl_loss_tmo=10, reconnect_delay=0.2, timeout=5) as ctrl:
            ns = ctrl.namespace(1)
            bs = BLOCK // ns.block_size
            model = {}
            for n in range(32):
                ns.write(n * bs, block(n, 1))
                model[n] = 1
            proxy.cut_after["c2h"] = proxy.forwarded["c2h"] + 3 * BLOCK + 100
            verify(ns, model)  # the cut lands inside a C2HData; the read is retried
            assert proxy.connections > 2


def test_watched_events_survive_a_reconnect():
    """A new controller starts with no events enabled: the host must configure them again."""
    with Target.serve(config()) as target, FaultProxy(("127.0.0.1", target.port)) as proxy:
        with pynvmetcp.connect("127.0.0.1", proxy.port, NQN, nr_io_queues=1, kato=2,
                               ctrl_loss_tmo=10, reconnect_delay=0.2, timeout=5) as ctrl:
            events = queue.Queue()
            ctrl.watch_events([AsyncEventNotice.NS_ATTR_CHANGED], events.put)
            first = ctrl.cntlid
            proxy.reset_all()
            ctrl.namespace(1).write(0, block(0, 1))  # on the new association, after recovery
            assert ctrl.cntlid != first
            target.resize_namespace(NQN, 1, 32 << 20)
            assert events.get(timeout=5).aei == AsyncEventNotice.NS_ATTR_CHANGED


def test_stall_shorter_than_timeout_delays_but_completes():
    with Target.serve(config()) as target, FaultProxy(("127.0.0.1", target.port)) as proxy:
        with pynvmetcp.connect("127.0.0.1", proxy.port, NQN, nr_io_queues=1, kato=5,
                               ctrl_loss_tmo=0, timeout=5) as ctrl:
            ns = ctrl.namespace(1)
            proxy.stall()
            timer = threading.Timer(0.5, proxy.resume)
            timer.start()
            t0 = time.monotonic()
            ns.write(0, block(0, 7))
            assert time.monotonic() - t0 >= 0.4
            verify(ns, {0: 7})


def test_stall_longer_than_timeout_fails_clearly_without_reconnect():
    with Target.serve(config()) as target, FaultProxy(("127.0.0.1", target.port)) as proxy:
        ctrl = pynvmetcp.connect("127.0.0.1", proxy.port, NQN, nr_io_queues=1, kato=0,
                                 ctrl_loss_tmo=0, timeout=0.5)
        try:
            ns = ctrl.namespace(1)
            proxy.stall()
            with pytest.raises(CommandTimeout):
                ns.read(0, 8)
        finally:
            proxy.resume()
            ctrl.close(shutdown=False)


def test_target_killed_and_restarted_keeps_every_acknowledged_write(tmp_path):
    """File-backed namespace: what the host saw completed before Flush survives a restart."""
    path = str(tmp_path / "ns.img")
    with Target.serve(config(0, path)) as target:
        port = target.port
        with pynvmetcp.connect("127.0.0.1", port, NQN, nr_io_queues=1, kato=0,
                               ctrl_loss_tmo=0) as ctrl:
            ns = ctrl.namespace(1)
            bs = BLOCK // ns.block_size
            model = {}
            for n in range(64):
                ns.write(n * bs, block(n, 3))
                model[n] = 3
            ns.flush()
    # the target is gone (connections dropped); a new one serves the same file on the same port
    with Target.serve(config(port, path)):
        with pynvmetcp.connect("127.0.0.1", port, NQN, nr_io_queues=1, kato=0,
                               ctrl_loss_tmo=0) as ctrl:
            verify(ctrl.namespace(1), model)


def test_target_restart_within_ctrl_loss_tmo_is_survived(tmp_path):
    path = str(tmp_path / "ns.img")
    with Target.serve(config(0, path)) as target:
        port = target.port
        ctrl = pynvmetcp.connect("127.0.0.1", port, NQN, nr_io_queues=1, kato=1,
                                 ctrl_loss_tmo=15, reconnect_delay=0.2, timeout=5)
        ns = ctrl.namespace(1)
        bs = BLOCK // ns.block_size
        ns.write(0, block(0, 1))
        ns.flush()
    try:
        restarted = threading.Event()

        def restart():
            with Target.serve(config(port, path)):
                restarted.set()
                time.sleep(3)

        t = threading.Thread(target=restart)
        time.sleep(0.5)
        t.start()
        assert restarted.wait(10)
        ns.write(bs, block(1, 2))  # issued on the dead association: reconnect, then retried
        verify(ns, {0: 1, 1: 2})
        t.join()
    finally:
        ctrl.close(shutdown=False)


def test_keep_alive_expiry_on_the_target_drops_the_controller_and_host_recovers():
    with Target.serve(config()) as target, FaultProxy(("127.0.0.1", target.port)) as proxy:
        with pynvmetcp.connect("127.0.0.1", proxy.port, NQN, nr_io_queues=1, kato=1,
                               ctrl_loss_tmo=10, reconnect_delay=0.2, timeout=5) as ctrl:
            ns = ctrl.namespace(1)
            first = ctrl.cntlid
            proxy.stall()  # keep-alives stop reaching the target: KATO (1 s) expires there
            time.sleep(2.0)
            proxy.resume()
            ns.write(0, block(0, 9))
            verify(ns, {0: 9})
            assert proxy.connections >= 4 or ctrl.cntlid != first
