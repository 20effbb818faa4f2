"""The cluster stand-in's LightOS rules (access lists, ANA, failover, extend, cinder's connection
info) against a recording backend; the pynvmetcp target backend is not written yet (the target
is not in this checkout), so nothing here talks NVMe."""
from __future__ import annotations

import pytest

from lightos_driver.fake_cluster import (NON_OPTIMIZED, OPTIMIZED, FakeLightOSCluster)


class Recording:
    def __init__(self):
        self.namespaces = {}
        self.ana = {}
        self.up = set()

    def start_node(self, node, subsysnqn):
        self.up.add(node.index)

    def stop_node(self, node):
        self.up.discard(node.index)

    def put_namespace(self, vol):
        self.namespaces[vol.nsid] = (vol.uuid, vol.size, frozenset(vol.hosts))

    def remove_namespace(self, vol):
        del self.namespaces[vol.nsid]

    def set_ana_state(self, node, group, state):
        self.ana[(node.index, group)] = state

    def close(self):
        self.up.clear()


HOST = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555"


def test_connection_info_is_cinders():
    c = FakeLightOSCluster(Recording(), 3, addresses=["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    vol = c.create_volume(1 << 30)
    info = c.initialize_connection(vol.uuid, {"nqn": HOST, "found_dsc": "found"})
    assert info["driver_volume_type"] == "lightos"
    assert info["data"]["uuid"] == vol.uuid and info["data"]["subsysnqn"] == c.subsysnqn
    assert info["data"]["lightos_nodes"] == {
        ip: {"target_portal": ip, "target_port": 8009, "transport_type": "tcp"}
        for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3")}


def test_access_list_follows_initialize_and_terminate():
    b = Recording()
    c = FakeLightOSCluster(b, 3)
    vol = c.create_volume(1 << 30)
    assert b.namespaces[vol.nsid][2] == frozenset()
    c.initialize_connection(vol.uuid, {"nqn": HOST})
    assert b.namespaces[vol.nsid][2] == {HOST}
    c.terminate_connection(vol.uuid, {"nqn": HOST})
    assert b.namespaces[vol.nsid][2] == frozenset()


def test_one_optimized_path_and_failover_of_the_primary():
    b = Recording()
    c = FakeLightOSCluster(b, 3)
    vol = c.create_volume(1 << 30)
    states = [b.ana[(i, vol.nsid)] for i in range(3)]
    assert states.count(OPTIMIZED) == 1 and states.count(NON_OPTIMIZED) == 2
    primary = states.index(OPTIMIZED)
    c.kill_node(primary)
    assert primary not in b.up
    after = c.ana_states(vol.uuid)
    assert list(after.values()).count(OPTIMIZED) == 1 and after[primary] == "inaccessible"


def test_extend_only_grows():
    b = Recording()
    c = FakeLightOSCluster(b, 1)
    vol = c.create_volume(1 << 30)
    c.extend_volume(vol.uuid, 2 << 30)
    assert b.namespaces[vol.nsid][1] == 2 << 30
    with pytest.raises(ValueError):
        c.extend_volume(vol.uuid, 1 << 20)


def test_nodes_on_one_address_get_distinct_ports():
    c = FakeLightOSCluster(Recording(), 3)
    assert [(n.traddr, n.io_port, n.discovery_port) for n in c.nodes] == [
        ("127.0.0.1", 4420, 8009), ("127.0.0.1", 4421, 8010), ("127.0.0.1", 4422, 8011)]
