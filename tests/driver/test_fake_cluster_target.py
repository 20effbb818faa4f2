"""The fake LightOS cluster served by pynvmetcp's target, seen through the userspace host."""
from __future__ import annotations

import os
import socket
import time
import uuid as _uuid

import pytest

import pynvmetcp
from lightos_driver.fake_cluster import FakeLightOSCluster, target_backend
from pynvmetcp.spec.identify import NIDT_UUID
from pynvmetcp.spec.logpages import AnaLogPage

HOST = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
OTHER = "nqn.2014-08.org.nvmexpress:uuid:11111111-bbbb-4ccc-8ddd-eeeeeeeeeeee"
VOL = "5f4e3d2c-1b0a-4989-8776-655443322110"


@pytest.fixture
def cluster(tmp_path):
    c = FakeLightOSCluster(target_backend(str(tmp_path)), 3, io_port=0, discovery_port=0)
    yield c
    c.close()


def _connect(cluster, node, hostnqn=HOST):
    n = cluster.nodes[node]
    return pynvmetcp.connect(n.traddr, n.io_port, cluster.subsysnqn, hostnqn=hostnqn,
                             ctrl_loss_tmo=0)


def test_every_node_lists_every_path(cluster):
    for node in cluster.nodes:
        log = pynvmetcp.discover(node.traddr, node.discovery_port, hostnqn=HOST)
        paths = sorted(int(e.trsvcid) for e in log.entries
                       if e.subtype == 2 and e.subnqn == cluster.subsysnqn)
        assert paths == sorted(n.io_port for n in cluster.nodes)


def test_volume_visible_only_to_allowed_hosts(cluster):
    cluster.create_volume(64 << 20, VOL)
    info = cluster.initialize_connection(VOL, {"nqn": HOST})
    assert info["driver_volume_type"] == "lightos" and info["data"]["uuid"] == VOL
    assert len(info["data"]["lightos_nodes"]) == 3
    with _connect(cluster, 0) as ctrl:
        (nsid,) = ctrl.namespaces()
        assert _uuid.UUID(bytes=ctrl.namespace_ids(nsid)[NIDT_UUID]) == _uuid.UUID(VOL)
        ns = ctrl.namespace(nsid)
        assert ns.size == 64 << 20
        data = os.urandom(8192)
        ns.write(0, data)
    with _connect(cluster, 2) as ctrl:  # another node serves the same volume
        assert bytes(ctrl.namespace(1).read(0, 16)) == data
    with _connect(cluster, 1, OTHER) as ctrl:
        assert ctrl.namespaces() == []
    cluster.terminate_connection(VOL, {"nqn": HOST})
    with _connect(cluster, 0) as ctrl:
        assert ctrl.namespaces() == []


def _ana(ctrl, nsid):
    page = AnaLogPage.parse(ctrl.get_log_page(0x0C, 4096, nsid=0))
    return {g.grpid: g.state for g in page.groups if nsid in g.nsids}


def test_one_optimized_node_per_volume_and_failover(cluster):
    vol = cluster.create_volume(16 << 20, VOL)
    cluster.initialize_connection(VOL, {"nqn": HOST})
    states = []
    for i in range(3):
        with _connect(cluster, i) as ctrl:
            states.append(_ana(ctrl, vol.nsid)[vol.nsid])
    assert sorted(states) == [1, 2, 2]  # one optimized (1), two non-optimized (2)
    primary = states.index(1)
    with _connect(cluster, primary) as ctrl:
        ctrl.namespace(vol.nsid).write(0, b"\x5a" * 4096)
    cluster.kill_node(primary)
    n = cluster.nodes[primary]
    with pytest.raises(OSError):
        socket.create_connection((n.traddr, n.io_port), timeout=2).close()
    new = cluster.volumes[VOL].primary
    assert new != primary
    with _connect(cluster, new) as ctrl:
        assert _ana(ctrl, vol.nsid)[vol.nsid] == 1
        assert bytes(ctrl.namespace(vol.nsid).read(0, 8)) == b"\x5a" * 4096
    cluster.revive_node(primary)
    with _connect(cluster, primary) as ctrl:  # back on the same port, data intact
        assert bytes(ctrl.namespace(vol.nsid).read(0, 8)) == b"\x5a" * 4096


def test_extend_grows_the_namespace_with_an_event(cluster):
    vol = cluster.create_volume(16 << 20, VOL)
    cluster.initialize_connection(VOL, {"nqn": HOST})
    with _connect(cluster, 0) as ctrl:
        events = []
        ctrl.event_handlers.append(events.append)
        ctrl.enable_async_events(1 << 8)  # namespace attribute notices
        ctrl.arm_async_events()
        cluster.extend_volume(VOL, 32 << 20)
        for _ in range(100):
            if events:
                break
            ctrl.admin.poll()
            time.sleep(0.05)  # bounded poll for the event (100 × 50 ms)
        assert events and events[0].aei == 0x00  # namespace attribute changed
        assert ctrl.namespace(vol.nsid).size == 32 << 20
