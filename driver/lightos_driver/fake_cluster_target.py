"""The NVMe side of the fake LightOS cluster: one pynvmetcp userspace target, one port pair per
storage node.

Why one target for all nodes: in LightOS every node's discovery log lists the cluster subsystem at
*every* node's I/O port, which is exactly what one target with several ports answers (its log
lists the subsystem on each I/O port). A node is an (I/O port, discovery port) pair; killing it
removes both ports, which ends the associations made through them, as a dead node would. Volumes
are sparse files, so large volumes cost nothing until written, and survive a node's death.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from pynvmetcp.target import ListenConfig, SubsystemConfig, Target, TargetConfig

from .fake_cluster import Node, Volume


class TargetBackend:
    def __init__(self, workdir: str | None = None) -> None:
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="lightos-fake-")
        self.workdir = Path(workdir or self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.target: Target | None = None
        self.subsysnqn = ""
        self.ports: dict[int, tuple[int, int]] = {}  # node index → (I/O portid, discovery portid)
        self.sizes: dict[int, int] = {}  # nsid → size

    def start_node(self, node: Node, subsysnqn: str) -> None:
        ids = (2 * node.index + 1, 2 * node.index + 2)
        if self.target is None:  # the first node's ports come with the target itself
            self.subsysnqn = subsysnqn
            self.target = Target(TargetConfig(
                listen=[ListenConfig(node.traddr, node.io_port, portid=ids[0]),
                        ListenConfig(node.traddr, node.discovery_port, discovery_only=True,
                                     portid=ids[1])],
                subsystems=[SubsystemConfig(subsysnqn, allow_any_host=True,
                                            serial="lightos-fake-cluster")]))
            self.target.start_in_thread()
            io, disc = (self.target.registry.ports[i] for i in ids)
        else:
            io = self.target.add_port(node.traddr, node.io_port, portid=ids[0])
            disc = self.target.add_port(node.traddr, node.discovery_port, discovery_only=True,
                                        portid=ids[1])
        node.io_port, node.discovery_port = io.trsvcid, disc.trsvcid  # ephemeral ports resolved
        self.ports[node.index] = ids

    def stop_node(self, node: Node) -> None:
        for portid in self.ports.pop(node.index, ()):
            self.target.remove_port(portid)

    def put_namespace(self, vol: Volume) -> None:
        hosts = sorted(vol.hosts)  # an empty list: no host may see it (LightOS's default)
        if vol.nsid not in self.sizes:
            self.target.add_namespace(self.subsysnqn, str(self.workdir / f"{vol.uuid}.img"),
                                      nsid=vol.nsid, size=vol.size, uuid=vol.uuid,
                                      ana_group=vol.nsid, hosts=hosts)
        else:
            if vol.size != self.sizes[vol.nsid]:
                self.target.resize_namespace(self.subsysnqn, vol.nsid, vol.size)
            self.target.set_namespace_hosts(self.subsysnqn, vol.nsid, hosts)
        self.sizes[vol.nsid] = vol.size

    def remove_namespace(self, vol: Volume) -> None:
        self.target.remove_namespace(self.subsysnqn, vol.nsid)
        self.sizes.pop(vol.nsid, None)
        (self.workdir / f"{vol.uuid}.img").unlink(missing_ok=True)

    def set_ana_state(self, node: Node, group: int, state: str) -> None:
        if node.index in self.ports:
            self.target.set_ana_state(self.subsysnqn, self.ports[node.index][0], group, state)

    def close(self) -> None:
        if self.target is not None:
            self.target.stop_in_thread()
            self.target = None
        if self._tmp is not None:
            self._tmp.cleanup()
