"""`make demo`, second part: the LightOS flow against the fake cluster.

A three-node fake LightOS cluster (pynvmetcp's target) gets a volume; cinder's
initialize_connection grants this host; then attach, I/O, extend, a storage node killed, detach.

Two ways to attach, chosen by what the machine has:

* **kernel** (root and /dev/nvme-fabrics): the production path — the discovery-client service,
  os-brick's connector and nova's libvirt volume driver; the kernel's NVMe/TCP host makes
  /dev/nvmeXnY and its native multipath joins the three nodes' paths;
* **userspace** (everywhere else): pynvmetcp's own host does what the kernel would — discover
  through a node, connect every path, find the namespace by the volume UUID, follow ANA to the
  optimized path, see the resize through the namespace-attribute-changed event.

Every step prints one line; the exit status is 0 only if every check held.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid as _uuid
from pathlib import Path

import pynvmetcp
from pynvmetcp import kernel
from pynvmetcp.spec.identify import NIDT_UUID
from pynvmetcp.spec.logpages import AnaLogPage
from pynvmetcp.spec.opcodes import AnaState, AsyncEventNotice, LogPageId

from .fake_cluster import FakeLightOSCluster, target_backend

MIB = 1 << 20
SIZE, GROWN = 64 * MIB, 128 * MIB


class DemoFailed(Exception):
    """A check of the demo did not hold."""


def step(text: str) -> None:
    print(f"• {text}", flush=True)


def check(ok: bool, what: str) -> None:
    if not ok:
        raise DemoFailed(what)


def wait(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")


def kernel_usable() -> tuple[bool, str]:
    """Root with the kernel's NVMe/TCP host (loading nvme-tcp if it is only not loaded yet)."""
    if os.geteuid() != 0:
        return False, "not root"
    if not os.path.exists(kernel.FABRICS_DEV):
        try:
            subprocess.run(["modprobe", "nvme-tcp"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass  # no modprobe: available() below says what is missing
    return kernel.available(passthrough=False)


# ---- userspace: pynvmetcp's host plays the kernel's part ----
class UserspaceFlow:
    def __init__(self, cluster: FakeLightOSCluster, hostnqn: str) -> None:
        self.cluster = cluster
        self.hostnqn = hostnqn
        self.paths: dict[int, pynvmetcp.Controller] = {}  # I/O port → controller
        self.nsid = 0
        self.resized = threading.Event()

    def _connect(self, traddr: str, port: int) -> pynvmetcp.Controller:
        return pynvmetcp.connect(traddr, port, self.cluster.subsysnqn, hostnqn=self.hostnqn,
                                 nr_io_queues=2, ctrl_loss_tmo=0)

    def attach(self, info: dict) -> None:
        data = info["data"]
        node = next(iter(data["lightos_nodes"].values()))
        log = pynvmetcp.discover(node["target_portal"], node["target_port"],
                                 hostnqn=self.hostnqn)
        entries = [e for e in log.entries if e.subnqn == data["subsysnqn"] and e.subtype == 2]
        for e in entries:
            ctrl = self._connect(e.traddr, int(e.trsvcid))
            ctrl.watch_events([AsyncEventNotice.NS_ATTR_CHANGED], lambda _: self.resized.set())
            self.paths[int(e.trsvcid)] = ctrl
        any_ctrl = next(iter(self.paths.values()))
        want = _uuid.UUID(data["uuid"])
        self.nsid = next(n for n in any_ctrl.namespaces()
                         if _uuid.UUID(bytes=any_ctrl.namespace_ids(n)[NIDT_UUID]) == want)
        step(f"attach (userspace): discovered through {node['target_portal']}:"
             f"{node['target_port']}, {len(entries)} paths connected, volume {data['uuid']} is "
             f"namespace {self.nsid}, optimized path :{self.optimized()}")

    def optimized(self) -> int:
        """The I/O port whose ANA group for our namespace is optimized, asked of that path."""
        for port, ctrl in self.paths.items():
            page = AnaLogPage.parse(ctrl.get_log_page(LogPageId.ANA, 4096, nsid=0))
            if any(self.nsid in g.nsids and g.state == AnaState.OPTIMIZED for g in page.groups):
                return port
        raise DemoFailed("no path is optimized for the volume")

    def namespace(self):
        return self.paths[self.optimized()].namespace(self.nsid)

    def size(self) -> int:
        return self.namespace().size

    def write_read(self, offset: int, data: bytes) -> bytes:
        ns = self.namespace()
        for off in range(0, len(data), 128 * 1024):
            ns.write((offset + off) // ns.block_size, data[off:off + 128 * 1024])
        ns.flush()
        return self.read(offset, len(data))

    def read(self, offset: int, length: int) -> bytes:
        ns = self.namespace()
        return bytes(ns.read(offset // ns.block_size, length // ns.block_size))

    def extended(self, info: dict, new_size: int) -> int:
        check(self.resized.wait(10), "the namespace-attribute-changed event")
        return self.size()

    def node_lost(self, dead_port: int) -> None:
        self.paths.pop(dead_port).close(shutdown=False)

    def detach(self, info: dict) -> None:
        for ctrl in self.paths.values():
            ctrl.close()
        self.paths.clear()

    def still_visible(self, info: dict) -> bool:
        """Whether a fresh connection through any live node still shows the volume."""
        node = next(n for n in self.cluster.nodes if n.alive)
        with self._connect(node.traddr, node.io_port) as ctrl:
            return bool(ctrl.namespaces())

    def close(self) -> None:
        self.detach({})


# ---- kernel: the production path (service, connector, nova's volume driver) ----
class KernelFlow:
    def __init__(self, cluster: FakeLightOSCluster, hostnqn: str, workdir: Path) -> None:
        from .connector import LightOSConnector
        from .discovery import DiscoveryService, ServiceConfig
        from .libvirt_volume import LibvirtLightOSVolumeDriver
        from .paths import Paths

        self.cluster = cluster
        self.hostnqn = hostnqn
        paths = Paths(etc_nvme=workdir / "etc/nvme", discovery_dir=workdir / "dc/discovery.d",
                      internal_dir=workdir / "dc/internal", state_dir=workdir / "state")
        paths.etc_nvme.mkdir(parents=True)
        paths.hostnqn_file.write_text(hostnqn + "\n")
        self.service = DiscoveryService(ServiceConfig(
            paths=paths, metrics_host="127.0.0.1", metrics_port=0, reconnect_interval=1.0,
            kato=10)).start()
        connector = LightOSConnector(None, paths=paths, dsc_host="127.0.0.1",
                                     dsc_port=self.service.metrics_server.port,
                                     device_wait_timeout=60)
        self.driver = LibvirtLightOSVolumeDriver(None, connector=connector, extend_wait=30)
        self.instance = {"uuid": str(_uuid.uuid4()), "name": "demo-instance"}
        self.device = ""

    def controllers(self) -> list:
        return [c for c in kernel.controllers()
                if c.subsysnqn == self.cluster.subsysnqn and c.hostnqn == self.hostnqn]

    def attach(self, info: dict) -> None:
        self.driver.connect_volume(info, self.instance)
        self.device = info["data"]["device_path"]
        # the device comes with the first path; the service connects the others meanwhile
        wait(lambda: len(self.controllers()) == len(self.cluster.nodes), 30, "every path")
        step(f"attach (kernel): discovery-client service + connector + libvirt volume driver "
             f"→ {self.device}, paths "
             f"{', '.join(f'{c.name} :{c.trsvcid}' for c in self.controllers())}")

    def size(self) -> int:
        return int(Path(f"/sys/class/block/{os.path.basename(self.device)}/size")
                   .read_text()) * 512

    def write_read(self, offset: int, data: bytes) -> bytes:
        import mmap

        buf = mmap.mmap(-1, len(data))  # O_DIRECT wants aligned memory
        buf.write(data)
        fd = os.open(self.device, os.O_RDWR | os.O_DIRECT)
        try:
            os.pwrite(fd, buf, offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        return self.read(offset, len(data))

    def read(self, offset: int, length: int) -> bytes:
        import mmap

        buf = mmap.mmap(-1, length)
        fd = os.open(self.device, os.O_RDONLY | os.O_DIRECT)
        try:
            os.preadv(fd, [buf], offset)
        finally:
            os.close(fd)
        return bytes(buf)

    def extended(self, info: dict, new_size: int) -> int:
        return self.driver.extend_volume(info, self.instance, new_size)

    def node_lost(self, dead_port: int) -> None:
        pass  # the kernel's multipath head moves I/O to a live path by itself

    def detach(self, info: dict) -> None:
        self.driver.disconnect_volume(info, self.instance)
        wait(lambda: not self.controllers(), 30, "the controllers to go")

    def still_visible(self, info: dict) -> bool:
        return kernel.find_block_device(uuid=info["data"]["uuid"]) is not None

    def close(self) -> None:
        self.service.stop()
        kernel.disconnect(subnqn=self.cluster.subsysnqn, hostnqn=self.hostnqn)


def run(mode: str) -> None:
    hostnqn = f"nqn.2014-08.org.nvmexpress:uuid:{_uuid.uuid4()}"
    with tempfile.TemporaryDirectory(prefix="lightos-demo-") as tmp:
        cluster = FakeLightOSCluster(target_backend(os.path.join(tmp, "volumes")), 3,
                                     io_port=0, discovery_port=0)
        flow = (KernelFlow(cluster, hostnqn, Path(tmp)) if mode == "kernel"
                else UserspaceFlow(cluster, hostnqn))
        try:
            _scenario(cluster, flow, hostnqn)
        finally:
            flow.close()
            cluster.close()


def _scenario(cluster: FakeLightOSCluster, flow, hostnqn: str) -> None:
    step("fake LightOS cluster: " + ", ".join(
        f"node {n.index} I/O :{n.io_port} discovery :{n.discovery_port}" for n in cluster.nodes)
        + f"; subsystem {cluster.subsysnqn}")
    vol = cluster.create_volume(SIZE)
    info = cluster.initialize_connection(vol.uuid, {"nqn": hostnqn})
    info["serial"] = vol.uuid
    step(f"volume {vol.uuid} ({SIZE // MIB} MiB) created; initialize_connection granted "
         f"{hostnqn}")

    flow.attach(info)
    first = os.urandom(4 * MIB)
    check(flow.write_read(0, first) == first, "4 MiB written and read back")
    step("I/O: 4 MiB written, flushed, read back identical")

    before = flow.size()
    cluster.extend_volume(vol.uuid, GROWN)
    after = flow.extended(info, GROWN)
    check(after == GROWN, f"size after extend is {after}, not {GROWN}")
    step(f"extend: {before // MIB} MiB → {after // MIB} MiB, seen through the "
         "namespace-attribute-changed event")

    primary = cluster.nodes[vol.primary]
    dead_port = primary.io_port
    cluster.kill_node(primary.index)
    flow.node_lost(dead_port)
    second = os.urandom(MIB)
    check(flow.write_read(SIZE, second) == second, "I/O after a node failure")
    check(flow.read(0, len(first)) == first, "earlier data after a node failure")
    step(f"node {primary.index} (:{dead_port}, the volume's optimized path) killed: node "
         f"{vol.primary} took over, new writes and the earlier 4 MiB verified")

    flow.detach(info)
    cluster.terminate_connection(vol.uuid, {"nqn": hostnqn})
    check(not flow.still_visible(info), "the volume still visible after detach")
    cluster.delete_volume(vol.uuid)
    step("detach: connections closed, terminate_connection revoked the host, volume deleted")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lightos_driver.demo",
                                 description="The LightOS flow against a 3-node fake cluster.")
    ap.add_argument("--mode", choices=("auto", "kernel", "userspace"), default="auto",
                    help="auto: the kernel when it can be used here, else userspace")
    args = ap.parse_args(argv)
    # the steps report failures themselves; a dying path's warnings would only repeat them
    logging.basicConfig(level=logging.ERROR, format="  %(name)s: %(message)s")
    mode = args.mode
    if mode != "userspace":
        ok, why = kernel_usable()
        if not ok and mode == "kernel":
            print(f"lightos demo: the kernel path is not usable here: {why}", file=sys.stderr)
            return 2
        if mode == "auto":
            mode = "kernel" if ok else "userspace"
            step(f"LightOS demo, {mode} path ({why})")
    try:
        run(mode)
    except (DemoFailed, pynvmetcp.NvmeTcpError, OSError) as exc:
        print(f"lightos demo failed: {exc}", file=sys.stderr)
        return 1
    step("LightOS demo done: cluster stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
