"""Runs inside the kernel VM as root: the LightOS driver end to end against a real kernel.

The cluster is either the fake LightOS cluster (``fake``: three storage nodes served by one
pynvmetcp target, every node's discovery log listing every node's path, per-volume access lists,
ANA with one optimized node per volume) or the kernel's own nvmet target (``nvmet``, configfs:
two ports as two nodes). Either way: one subsystem NQN for every volume, namespaces with the
volumes' UUIDs, a host access list (what cinder's initialize_connection changes). Everything
else is real: the discovery-client service (userspace persistent discovery connection, AEN,
kernel I/O controllers through /dev/nvme-fabrics), the connector finding /dev/nvmeXnY by UUID in
the real sysfs, data written through the block device, extend seen through the namespace-changed
AEN, detach, and a "reboot" (controllers deleted, entry files gone, service
restarted) restored by the startup reconnect from libvirt's instances.

Prints one JSON line per check ({"check": name, ...}); the last is {"check": "done"}.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "driver")]

from tests.polling import wait_until  # noqa: E402

W = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/lightos-e2e")
MODE = sys.argv[2] if len(sys.argv) > 2 else "fake"
CFG = Path("/sys/kernel/config/nvmet")
SUBNQN = "nqn.2016-01.com.lightbitslabs:uuid:6a1e2e8c-7cac-48a9-9b1a-c0ffee000001"
SUB2 = "nqn.2016-01.com.lightbitslabs:uuid:6a1e2e8c-7cac-48a9-9b1a-c0ffee000002"
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:0f0e0d0c-0b0a-4909-8807-060504030201"
VOL1 = "3b2f6c1e-58a4-4d0b-9c1e-000000000001"
VOL2 = "3b2f6c1e-58a4-4d0b-9c1e-000000000002"
VOL3 = "3b2f6c1e-58a4-4d0b-9c1e-000000000003"  # on SUB2, announced by a discovery-log change
PORT = 4420
PORT2 = 4421  # a second "storage node"
MIB = 1 << 20
T0 = time.monotonic()


def emit(check: str, **fields) -> None:
    """One record; ``at`` is seconds since this script started (where the part's time goes)."""
    print(json.dumps({"check": check, "mode": MODE, "at": round(time.monotonic() - T0, 1),
                      **fields}, default=str), flush=True)


def step(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the report is the point
        extra = {}
        if isinstance(exc, TimeoutError):  # what every other thread was doing meanwhile
            names = {t.ident: t.name for t in threading.enumerate()}
            extra["threads"] = {names.get(ident, str(ident)):
                                "".join(traceback.format_stack(frame))[-1200:]
                                for ident, frame in sys._current_frames().items()
                                if ident != threading.get_ident()}
        emit(fn.__name__, error=f"{type(exc).__name__}: {exc}",
             trace=traceback.format_exc()[-2000:], **extra)
    return fn


def sh(cmd: str) -> str:
    out = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{cmd}: {out.stderr.strip()}")
    return out.stdout.strip()


# ---- the cluster stand-in: nvmet ----
def nvmet_subsystem(nqn: str) -> Path:
    s = CFG / "subsystems" / nqn
    s.mkdir()
    (s / "attr_allow_any_host").write_text("0")
    h = CFG / "hosts" / HOSTNQN
    h.mkdir(exist_ok=True)
    os.symlink(h, s / "allowed_hosts" / HOSTNQN)  # the volume's access list
    return s


def nvmet_namespace(nqn: str, nsid: int, uuid: str, size_mib: int) -> str:
    img = f"/tmp/{uuid}.img"
    sh(f"truncate -s {size_mib}M {img}")
    loop = sh(f"losetup -f --show {img}")
    ns = CFG / "subsystems" / nqn / "namespaces" / str(nsid)
    ns.mkdir()
    (ns / "device_path").write_text(loop)
    (ns / "device_uuid").write_text(uuid)
    (ns / "enable").write_text("1")
    return loop


def nvmet_link(nqn: str, ports=(PORT, PORT2)) -> None:
    """Serve ``nqn`` on each "storage node" (an nvmet port: I/O and discovery)."""
    for port in ports:
        p = CFG / "ports" / str(port)
        if not p.exists():
            p.mkdir()
            (p / "addr_traddr").write_text("127.0.0.1")
            (p / "addr_trtype").write_text("tcp")
            (p / "addr_trsvcid").write_text(str(port))
            (p / "addr_adrfam").write_text("ipv4")
        os.symlink(CFG / "subsystems" / nqn, p / "subsystems" / nqn)


def nvmet_unlink(port: int) -> None:
    """A storage node dies: its port stops serving every subsystem (connections dropped)."""
    d = CFG / "ports" / str(port) / "subsystems"
    for link in list(d.iterdir()):
        link.unlink()


class NvmetCluster:
    """Two nvmet ports as two storage nodes (each answers discovery for its own port only)."""

    discovery_ports = (PORT, PORT2)
    paths = 1  # an nvmet port's discovery log lists only itself

    def setup(self) -> None:
        sh("modprobe nvmet-tcp && modprobe loop")
        nvmet_subsystem(SUBNQN)
        LOOPS[VOL1] = nvmet_namespace(SUBNQN, 1, VOL1, 64)
        LOOPS[VOL2] = nvmet_namespace(SUBNQN, 2, VOL2, 32)
        nvmet_link(SUBNQN)

    def stored(self, vol: str) -> str:
        return f"/tmp/{vol}.img"

    def extend_vol1(self) -> None:
        sh(f"truncate -s 128M /tmp/{VOL1}.img && losetup -c {LOOPS[VOL1]}")
        (CFG / "subsystems" / SUBNQN / "namespaces/1/revalidate_size").write_text("1")

    def add_sub2(self) -> None:
        nvmet_subsystem(SUB2)
        LOOPS[VOL3] = nvmet_namespace(SUB2, 1, VOL3, 16)
        nvmet_link(SUB2)

    def kill(self, discovery_port: int) -> int:
        nvmet_unlink(discovery_port)
        return discovery_port

    def revive(self, port: int) -> None:
        nvmet_link(SUBNQN, ports=(port,))
        nvmet_link(SUB2, ports=(port,))


class FakeCluster:
    """Three nodes of the fake LightOS cluster (lightos-driver fake-cluster) in this process."""

    paths = 3  # every node's discovery log lists every node's I/O port

    def setup(self) -> None:
        from lightos_driver.fake_cluster import FakeLightOSCluster, target_backend

        self.backend = target_backend(str(W / "volumes"))
        self.cluster = FakeLightOSCluster(self.backend, 3, io_port=PORT, discovery_port=8009,
                                          subsysnqn=SUBNQN)
        self.discovery_ports = tuple(n.discovery_port for n in self.cluster.nodes)
        for vol, size in ((VOL1, 64 * MIB), (VOL2, 32 * MIB)):
            self.cluster.create_volume(size, vol)
            self.cluster.initialize_connection(vol, {"nqn": HOSTNQN})

    def stored(self, vol: str) -> str:
        return str(self.backend.workdir / f"{vol}.img")

    def extend_vol1(self) -> None:
        self.cluster.extend_volume(VOL1, 128 * MIB)

    def add_sub2(self) -> None:
        t = self.backend.target
        t.add_subsystem(SUB2, allow_any_host=True)
        t.add_namespace(SUB2, str(self.backend.workdir / f"{VOL3}.img"), nsid=1, size=16 * MIB,
                        uuid=VOL3)

    def kill(self, discovery_port: int) -> int:
        index = self.discovery_ports.index(discovery_port)
        self.cluster.kill_node(index)
        return index

    def revive(self, index: int) -> None:
        self.cluster.revive_node(index)


def setup() -> None:
    sh("modprobe nvme-tcp")
    if not CFG.exists():
        sh("mount -t configfs none /sys/kernel/config")
    sh("ip link set lo up")
    (W / "etc/nvme").mkdir(parents=True, exist_ok=True)
    (W / "etc/nvme/hostnqn").write_text(HOSTNQN + "\n")
    (W / "etc/nvme/hostid").write_text(HOSTNQN.rsplit(":", 1)[1] + "\n")
    CLUSTER.setup()
    time.sleep(0.5)


CLUSTER = FakeCluster() if MODE == "fake" else NvmetCluster()
LOOPS: dict[str, str] = {}
REBOOTED: list = []
setup()

from lightos_driver.connector import LightOSConnector  # noqa: E402
from lightos_driver.discovery import DiscoveryService, ServiceConfig  # noqa: E402
from lightos_driver.libvirt_volume import LibvirtLightOSVolumeDriver  # noqa: E402
from lightos_driver.paths import Paths  # noqa: E402
from pynvmetcp import kernel  # noqa: E402
from pynvmetcp.kernel.sysfs import SysfsError  # noqa: E402

PATHS = Paths(etc_nvme=W / "etc/nvme", discovery_dir=W / "dc/discovery.d",
              internal_dir=W / "dc/internal", state_dir=W / "state")
PATH_ARGS = ["--etc-nvme", str(PATHS.etc_nvme), "--discovery-dir", str(PATHS.discovery_dir),
             "--internal-dir", str(PATHS.internal_dir), "--state-dir", str(PATHS.state_dir)]
NODE_XML = W / "node.xml"


def props(uuid: str) -> dict:
    return {"uuid": uuid, "subsysnqn": SUBNQN, "lightos_nodes": {
        f"127.0.0.1:{port}": {"target_portal": "127.0.0.1", "target_port": port,
                              "transport_type": "tcp"} for port in CLUSTER.discovery_ports}}


def controllers(nqn: str = SUBNQN) -> list:
    return [c for c in kernel.controllers() if c.subsysnqn == nqn and c.hostnqn == HOSTNQN]


svc = DiscoveryService(ServiceConfig(paths=PATHS, metrics_host="127.0.0.1", metrics_port=6060,
                                     reconnect_interval=1.0, kato=10))
svc.start()
connector = LightOSConnector(None, device_scan_attempts=10, paths=PATHS, dsc_port=6060,
                             device_wait_timeout=60)
drv = LibvirtLightOSVolumeDriver(None, connector=connector, extend_wait=30)
INFO = {v: {"serial": "cinder-" + v[-4:], "data": props(v)} for v in (VOL1, VOL2)}


@step
def connector_properties():
    p = LightOSConnector.get_connector_properties(None, paths=PATHS, dsc_port=6060)
    emit("connector_properties", nqn=p.get("nqn"), found_dsc=p.get("found_dsc"),
         hostid=p.get("hostid"))


@step
def attach():
    t0 = time.monotonic()
    drv.connect_volume(INFO[VOL1], {"uuid": "i-1", "name": "inst-1"})
    dev = INFO[VOL1]["data"]["device_path"]
    name = os.path.basename(dev)
    seconds = round(time.monotonic() - t0, 1)
    # the device appears with the first path; the service connects the others in the background
    wait_until(lambda: len(controllers()) >= CLUSTER.paths, 30, f"{CLUSTER.paths} paths")
    emit("attach", device=dev, seconds=seconds,
         sysfs_uuid=Path(f"/sys/class/block/{name}/uuid").read_text().strip(),
         is_block=Path(dev).is_block_device(),
         controllers=[(c.name, c.traddr, c.trsvcid, c.hostid, c.state) for c in controllers()],
         discovery_connected=svc.clusters[(SUBNQN, HOSTNQN)].status.connected_to)


@step
def data():
    dev = INFO[VOL1]["data"]["device_path"]
    pattern = os.urandom(MIB)
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    try:
        import mmap
        buf = mmap.mmap(-1, MIB)
        buf.write(pattern)
        os.pwrite(fd, buf, 4 * MIB)
        os.fsync(fd)
        back = mmap.mmap(-1, MIB)
        os.preadv(fd, [back], 4 * MIB)
    finally:
        os.close(fd)
    with open(CLUSTER.stored(VOL1), "rb") as f:
        f.seek(4 * MIB)
        stored = f.read(MIB)
    emit("data", read_equal=bytes(back) == pattern, target_equal=stored == pattern)


@step
def extend():
    dev = INFO[VOL1]["data"]["device_path"]
    name = os.path.basename(dev)
    before = int(Path(f"/sys/class/block/{name}/size").read_text()) * 512
    CLUSTER.extend_vol1()
    t0 = time.monotonic()
    # the kernel host learns the size from the Namespace Attribute Changed AEN (no rescan here)
    wait_until(lambda: int(Path(f"/sys/class/block/{name}/size").read_text()) * 512 == 128 * MIB,
         20, "the new size through the AEN")
    seen = round(time.monotonic() - t0, 1)
    new = drv.extend_volume(INFO[VOL1], None, 128 * MIB)
    emit("extend", before=before, after=new, aen_seconds=seen)


@step
def second_volume():
    drv.connect_volume(INFO[VOL2], {"uuid": "i-2", "name": "inst-2"})
    dev = INFO[VOL2]["data"]["device_path"]
    emit("second_volume", device=dev, same_controllers=len(controllers()),
         size=int(Path(f"/sys/class/block/{os.path.basename(dev)}/size").read_text()) * 512)


@step
def discovery_log_change():
    """A new subsystem linked to the port: the target sends the discovery-log-change AEN to our
    persistent discovery connection, the service reads the log and connects it — no entry file
    names it."""
    client = svc.clusters[(SUBNQN, HOSTNQN)]
    reads = client.status.log_reads
    CLUSTER.add_sub2()
    t0 = time.monotonic()
    wait_until(lambda: controllers(SUB2), 30, "a controller for the announced subsystem")
    dev = wait_until(lambda: kernel.find_block_device(uuid=VOL3), 30, "its namespace")
    emit("discovery_log_change", log_reads_before=reads, log_reads=client.status.log_reads,
         device=dev, seconds=round(time.monotonic() - t0, 1))


@step
def node_failure():
    """The storage node the host discovers through dies during I/O: the service fails over to
    the other node, which announces its own path; the kernel's multipath head keeps the same
    /dev/nvmeXnY and the queued I/O completes through the new path."""
    import mmap

    client = svc.clusters[(SUBNQN, HOSTNQN)]
    dead = client.status.connected_to[1]
    dev = INFO[VOL1]["data"]["device_path"]
    stop, done, errors = threading.Event(), [], []

    def writer():
        buf = mmap.mmap(-1, 65536)
        fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
        try:
            i = 0
            while not stop.is_set():
                buf.seek(0)
                buf.write(i.to_bytes(8, "little") * 8192)
                try:
                    os.pwrite(fd, buf, (i % 256) * 65536)
                    done.append(i)
                except OSError as exc:
                    errors.append(str(exc))
                i += 1
        finally:
            os.close(fd)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        wait_until(lambda: len(done) > 20, 30, "I/O running")
        before = len(done)
        token = CLUSTER.kill(dead)
        t0 = time.monotonic()
        wait_until(lambda: client.status.connected_to and client.status.connected_to[1] != dead,
                   60, "discovery failover")
        wait_until(lambda: len(done) > before + 50, 90, "I/O continuing on the other node")
    finally:  # a failed wait must not leave the writer running (the guest would never exit)
        stop.set()
        t.join(timeout=60)
    head_same = kernel.find_block_device(uuid=VOL1) == dev
    paths = [(c.trsvcid, c.state) for c in controllers()]
    emit("node_failure", killed_port=dead, now=client.status.connected_to,
         failovers=client.status.failovers, writes_before=before, writes_total=len(done),
         errors=errors[:3], same_device=head_same, controllers=paths,
         seconds=round(time.monotonic() - t0, 1))
    CLUSTER.revive(token)  # the node comes back


@step
def libvirt_instances():
    """Two instances, as libvirt persisted them (the test driver's node file, read by the
    restarted service in another process)."""
    doms = []
    for i, vol in ((1, VOL1), (2, VOL2)):
        dev = INFO[vol]["data"]["device_path"]
        doms.append(
            f"<domain type='test'><name>inst-{i}</name><uuid>00000000-0000-4000-8000-00000000000{i}"
            f"</uuid><memory>524288</memory><os><type>hvm</type></os><devices><disk type='block' "
            f"device='disk'><source dev='{dev}'/><target dev='vdb' bus='virtio'/>"
            f"<serial>{INFO[vol]['serial']}</serial></disk></devices></domain>")
    NODE_XML.write_text("<node>" + "".join(doms) + "</node>")
    # the record names instances by nova uuid: align it with the domains
    import json as _j
    rec = _j.loads(PATHS.attachments_file.read_text())
    for i, vol in ((1, VOL1), (2, VOL2)):
        inst = rec["volumes"][vol]["instances"].pop(f"i-{i}")
        rec["volumes"][vol]["instances"][f"00000000-0000-4000-8000-00000000000{i}"] = inst
    PATHS.attachments_file.write_text(_j.dumps(rec))
    emit("libvirt_instances", volumes=sorted(rec["volumes"]))


def delete_all_controllers(timeout: float = 120) -> None:
    """Every controller of this host goes, as in a reboot. One that a connect still in flight
    is setting up refuses deletion (EBUSY) until that connect ends (within the kernel's admin
    timeout), so it is deleted once it can be."""
    def all_deleted() -> bool:
        busy = []

        def refused(name: str, exc: SysfsError) -> None:
            if getattr(exc.__cause__, "errno", None) != errno.EBUSY:
                raise exc
            busy.append(name)

        kernel.disconnect(hostnqn=HOSTNQN, on_refused=refused)
        return not busy

    wait_until(all_deleted, timeout, "controllers busy with a connect to be deleted", interval=1)


@step
def reboot():
    """The host goes down: the service stops, every controller is gone and so are the entry
    files (worst case). The restarted service runs the startup reconnect."""
    svc.stop()
    delete_all_controllers()
    for f in PATHS.discovery_dir.iterdir():
        f.unlink()
    gone = not controllers() and kernel.find_block_device(uuid=VOL1) is None
    proc = subprocess.Popen(
        [sys.executable, "-m", "lightos_driver.cli_dc", "serve", *PATH_ARGS,
         "--metrics-host", "127.0.0.1", "--metrics-port", "6060", "--reconnect-interval", "1",
         "--libvirt-uri", f"test://{NODE_XML}", "-v"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'driver'}"})
    REBOOTED.append(proc)
    t0 = time.monotonic()
    devs = wait_until(lambda: all(kernel.find_block_device(uuid=v) for v in (VOL1, VOL2))
                and [kernel.find_block_device(uuid=v) for v in (VOL1, VOL2)], 90,
                "both volumes back")
    files = wait_until(lambda: len(list(PATHS.discovery_dir.iterdir())) == 2 and sorted(
        p.name for p in PATHS.discovery_dir.iterdir()), 30,
                 "entry files rewritten")
    emit("reboot", gone_before=gone, devices=devs, entry_files=files,
         seconds=round(time.monotonic() - t0, 1))


@step
def reconnect_again():
    run = subprocess.run([sys.executable, "-m", "lightos_driver.cli", "reconnect", *PATH_ARGS,
                          "--libvirt-uri", f"test://{NODE_XML}", "--json"],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'driver'}"})
    emit("reconnect_again", rc=run.returncode, stderr=run.stderr[-500:],
         outcomes=json.loads(run.stdout or "[]"))


@step
def detach():
    """Detach both volumes: entry files go, the service (the restarted one) disconnects the
    cluster's controllers since no entry file needs them, the devices vanish."""
    for vol in (VOL1, VOL2):
        dev = kernel.find_block_device(uuid=vol)
        INFO[vol]["data"]["device_path"] = dev
    drv.disconnect_volume(INFO[VOL1], {"uuid": "00000000-0000-4000-8000-000000000001"})
    still = bool(controllers())
    drv.disconnect_volume(INFO[VOL2], {"uuid": "00000000-0000-4000-8000-000000000002"})
    # the service disconnects the cluster's subsystem, then the one its discovery log announced
    wait_until(lambda: not controllers() and not controllers(SUB2), 30, "controllers disconnected")
    emit("detach", controllers_kept_for_other_volume=still, entry_files=sorted(
        p.name for p in PATHS.discovery_dir.iterdir()),
         device_gone=kernel.find_block_device(uuid=VOL1) is None,
         sub2_gone=not controllers(SUB2))


def demo_kernel_path():
    """`make demo`'s LightOS part where the kernel is present: its own cluster and host NQN."""
    run = subprocess.run([sys.executable, "-m", "lightos_driver.demo", "--mode", "kernel"],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'driver'}"})
    emit("demo_kernel_path", rc=run.returncode, stdout=run.stdout, stderr=run.stderr[-2000:])


if MODE == "fake":  # the demo brings its own cluster: one run serves, whatever kind is tested here
    step(demo_kernel_path)


for proc in REBOOTED:
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=30)
        emit("service_log", rc=proc.returncode, stderr=err[-3000:])
    except subprocess.TimeoutExpired:
        proc.kill()
emit("done")
