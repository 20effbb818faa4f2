"""The discovery service's real session (pynvmetcp's userspace host) against pynvmetcp's target
in this process: log entries, the discovery-log-change AEN, keep-alive, and a node going away.
(The service's own tests use a stand-in session to script failures; this is the real one.)"""
from __future__ import annotations

import threading

import pytest

from lightos_driver.discovery.session import PynvmetcpSession
from pynvmetcp.spec.opcodes import SubType
from pynvmetcp.target import (ListenConfig, NamespaceConfig, SubsystemConfig, Target,
                              TargetConfig)
from tests.polling import wait_until

HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:0b0c0d0e-1111-4222-8333-444455556666"
SUB1 = "nqn.2016-01.com.lightbitslabs:uuid:11111111-0000-4000-8000-000000000001"
SUB2 = "nqn.2016-01.com.lightbitslabs:uuid:11111111-0000-4000-8000-000000000002"


@pytest.fixture
def node():
    t = Target(TargetConfig(
        listen=[ListenConfig("127.0.0.1", 0, portid=1),
                ListenConfig("127.0.0.1", 0, discovery_only=True, portid=2)],
        subsystems=[SubsystemConfig(SUB1, allow_any_host=True,
                                    namespaces=[NamespaceConfig("mem:1M")])]))
    t.start_in_thread()
    yield t
    t.stop_in_thread()


def test_log_event_and_loss(node):
    io_port, disc_port = (node.registry.ports[i].trsvcid for i in (1, 2))
    changed = threading.Event()
    s = PynvmetcpSession("127.0.0.1", disc_port, HOSTNQN, "", changed.set, kato=2)
    try:
        assert s.aen and s.alive()
        nvme = [e for e in s.read_log() if e.subtype == SubType.NVME]
        assert [(e.traddr, e.trsvcid, e.subnqn) for e in nvme] == [("127.0.0.1", io_port, SUB1)]
        node.add_subsystem(SUB2, allow_any_host=True)  # the target announces its log changed
        assert changed.wait(10)
        assert {e.subnqn for e in s.read_log() if e.subtype == SubType.NVME} == {SUB1, SUB2}
        changed.clear()
        node.add_subsystem(SUB2.replace("02", "03"), allow_any_host=True)
        assert changed.wait(10)  # re-armed after the first event (the log was read)
        node.remove_port(2)  # the node's discovery service goes away
        wait_until(lambda: not s.alive(), 15, "the session to notice the loss")
    finally:
        s.close()


def test_refused_connection_raises(node):
    with pytest.raises(OSError):
        PynvmetcpSession("127.0.0.1", 1, HOSTNQN, "", lambda: None, connect_timeout=2)
