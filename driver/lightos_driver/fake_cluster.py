"""A LightOS cluster stand-in: what cinder and the storage nodes do, reduced to its NVMe effects.

LightOS facts modelled (from cinder's LightOS driver and los-csi):

* one subsystem NQN for the whole cluster; every volume is a namespace of it, its namespace UUID
  the volume UUID; every storage node serves that subsystem on its I/O port (4420) and runs a
  discovery service (8009) whose log lists the subsystem at **every** node (so a host gets one
  path per node and the kernel's native multipath joins them);
* per-volume host access lists: ``initialize_connection`` adds the connector's host NQN,
  ``terminate_connection`` removes it; a host sees exactly the namespaces it may access;
* ANA: a volume is served optimized by one node (its current primary) and non-optimized by the
  others; when the primary dies another node becomes optimized for its volumes;
* extend: the namespace grows and the hosts get the namespace-attribute-changed event.

The cluster state and these rules live here (``FakeLightOSCluster``); the NVMe side is a backend
(``ClusterBackend``): a pynvmetcp userspace target per node. ``initialize_connection`` returns
exactly what cinder's driver returns, so the connector and nova driver are fed as in production.
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
import uuid as _uuid
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

OPTIMIZED = "optimized"
NON_OPTIMIZED = "non-optimized"
INACCESSIBLE = "inaccessible"


@dataclass
class Node:
    index: int
    traddr: str
    io_port: int
    discovery_port: int
    alive: bool = True


@dataclass
class Volume:
    uuid: str
    size: int
    nsid: int
    hosts: set[str] = field(default_factory=set)
    primary: int = 0


class ClusterBackend(Protocol):
    """What the cluster needs from the NVMe targets of its nodes."""

    def start_node(self, node: Node, subsysnqn: str) -> None: ...

    def stop_node(self, node: Node) -> None: ...

    def put_namespace(self, vol: Volume) -> None: ...

    def remove_namespace(self, vol: Volume) -> None: ...

    def set_ana_state(self, node: Node, group: int, state: str) -> None: ...

    def close(self) -> None: ...


class FakeLightOSCluster:
    def __init__(self, backend: ClusterBackend, nodes: int = 3, *,
                 addresses: list[str] | None = None, io_port: int = 4420,
                 discovery_port: int = 8009, subsysnqn: str | None = None) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.backend = backend
        self.subsysnqn = subsysnqn or f"nqn.2016-01.com.lightbitslabs:uuid:{_uuid.uuid4()}"
        same_addr = not addresses
        addresses = addresses or ["127.0.0.1"] * nodes
        if len(addresses) != nodes:
            raise ValueError("give one address per node")
        # nodes sharing an address (127.0.0.1) must differ in ports; port 0 = ephemeral
        def port(base: int, i: int) -> int:
            return base + i if same_addr and base else base

        self.nodes = [Node(i, addresses[i], port(io_port, i), port(discovery_port, i))
                      for i in range(nodes)]
        self.volumes: dict[str, Volume] = {}
        for n in self.nodes:
            backend.start_node(n, self.subsysnqn)

    # ---- cinder's view ----
    def create_volume(self, size: int, uuid: str | None = None) -> Volume:
        uuid = uuid or str(_uuid.uuid4())
        if uuid in self.volumes:
            raise ValueError(f"volume {uuid} exists")
        nsid = max((v.nsid for v in self.volumes.values()), default=0) + 1
        vol = Volume(uuid, size, nsid, primary=(nsid - 1) % len(self.nodes))
        self.volumes[uuid] = vol
        self.backend.put_namespace(vol)
        self._apply_ana(vol)
        return vol

    def delete_volume(self, uuid: str) -> None:
        vol = self.volumes.pop(uuid)
        self.backend.remove_namespace(vol)

    def initialize_connection(self, uuid: str, connector: dict) -> dict:
        """Grant the connector's host NQN access; the connection info cinder's driver returns."""
        nqn = connector.get("nqn")
        if not nqn:
            raise ValueError("connector properties have no 'nqn'")
        vol = self.volumes[uuid]
        vol.hosts.add(nqn)
        self.backend.put_namespace(vol)
        return {"driver_volume_type": "lightos", "data": {
            "uuid": uuid, "subsysnqn": self.subsysnqn,
            "lightos_nodes": {n.traddr if len({x.traddr for x in self.nodes}) == len(self.nodes)
                              else f"{n.traddr}:{n.discovery_port}": {
                                  "target_portal": n.traddr, "target_port": n.discovery_port,
                                  "transport_type": "tcp"} for n in self.nodes}}}

    def terminate_connection(self, uuid: str, connector: dict) -> None:
        vol = self.volumes[uuid]
        vol.hosts.discard(connector.get("nqn", ""))
        self.backend.put_namespace(vol)

    def extend_volume(self, uuid: str, new_size: int) -> None:
        vol = self.volumes[uuid]
        if new_size < vol.size:
            raise ValueError("LightOS volumes only grow")
        vol.size = new_size
        self.backend.put_namespace(vol)

    # ---- node failures ----
    def kill_node(self, index: int) -> None:
        node = self.nodes[index]
        node.alive = False
        self.backend.stop_node(node)
        for vol in self.volumes.values():
            if vol.primary == index:
                vol.primary = self._next_alive(index)
                self._apply_ana(vol)

    def revive_node(self, index: int) -> None:
        node = self.nodes[index]
        node.alive = True
        self.backend.start_node(node, self.subsysnqn)
        for vol in self.volumes.values():
            self.backend.put_namespace(vol)
            self._apply_ana(vol)

    def _next_alive(self, index: int) -> int:
        for k in range(1, len(self.nodes) + 1):
            j = (index + k) % len(self.nodes)
            if self.nodes[j].alive:
                return j
        return index

    def ana_states(self, uuid: str) -> dict[int, str]:
        vol = self.volumes[uuid]
        return {n.index: (INACCESSIBLE if not n.alive else
                          OPTIMIZED if n.index == vol.primary else NON_OPTIMIZED)
                for n in self.nodes}

    def _apply_ana(self, vol: Volume) -> None:
        """One ANA group per volume (group = nsid): optimized at its primary only."""
        for idx, state in self.ana_states(vol.uuid).items():
            if self.nodes[idx].alive:
                self.backend.set_ana_state(self.nodes[idx], vol.nsid, state)

    def close(self) -> None:
        self.backend.close()


def target_backend(workdir: str | None = None) -> ClusterBackend:
    """The pynvmetcp userspace target as the nodes' NVMe side."""
    from .fake_cluster_target import TargetBackend

    return TargetBackend(workdir)


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING - 10 * min(2, args.verbose))
    backend = target_backend()
    cluster = FakeLightOSCluster(backend, args.nodes, addresses=args.addresses,
                                 io_port=args.io_port, discovery_port=args.discovery_port,
                                 subsysnqn=args.subsysnqn)
    try:
        for spec in args.volume:
            uuid, _, rest = spec.partition(":")
            size, _, hosts = rest.partition(":")
            cluster.create_volume(int(size), uuid)
            for h in filter(None, hosts.split(",")):
                cluster.initialize_connection(uuid, {"nqn": h})
        for n in cluster.nodes:
            print(f"node {n.index}: I/O {n.traddr}:{n.io_port}, discovery "
                  f"{n.traddr}:{n.discovery_port}", flush=True)
        for vol in cluster.volumes.values():
            print(f"volume {vol.uuid}: {vol.size} bytes, nsid {vol.nsid}, primary node "
                  f"{vol.primary}, hosts {sorted(vol.hosts) or 'none'}", flush=True)
        print(f"subsystem {cluster.subsysnqn}; interrupt to stop", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
    finally:
        cluster.close()
    return 0
