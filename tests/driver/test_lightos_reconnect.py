"""Startup reconnect: instances from libvirt (its test driver), volumes from the attachment record,
devices from the fake host tree. The kernel + discovery-client bringing a device back after the
entry file is rewritten is stood in for by a sleep hook (they cannot run on this machine)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid as _uuid
import xml.etree.ElementTree as ET

import pytest

from fakehost import connection_props
from lightos_driver.attachments import AttachmentRecord
from lightos_driver.connector import LightOSConnector
from lightos_driver.reconnect import (ALREADY, FAILED, INSTANCE_MISSING, NOT_IN_DOMAIN,
                                      RECONNECTED, reconnect)

libvirt = pytest.importorskip("libvirt", reason="the driver extra (libvirt-python) is required")

V1, V2, V3, V4 = (str(_uuid.UUID(int=i + 0x1000)) for i in range(4))


def domain_xml(name, uid, disks, typ="test"):
    devs = "".join(f"<disk type='block' device='disk'><source dev='{dev}'/>"
                   f"<target dev='{tgt}' bus='virtio'/><serial>{serial}</serial></disk>"
                   for tgt, dev, serial in disks)
    return (f"<domain type='{typ}'><name>{name}</name><uuid>{uid}</uuid><memory>524288</memory>"
            f"<os><type>hvm</type></os><devices>{devs}</devices></domain>")


class Kernel:
    """After the entry file of a volume appears, its device shows up (under a new name)."""

    def __init__(self, host, names: dict[str, str], never: set[str] = frozenset()):
        self.host, self.names, self.never = host, names, never
        self.sleeps = 0

    def __call__(self, seconds):
        self.sleeps += 1
        for f in os.listdir(self.host.paths.discovery_dir):
            vol = f.removesuffix(".conf")
            if vol in self.names and vol not in self.never and not os.path.exists(
                    self.host.paths.class_block / self.names[vol]):
                self.host.add_namespace(self.names[vol], vol)


@pytest.fixture
def scene(fakehost):
    """Two instances using three volumes, one deleted instance; the host has just rebooted
    (no entry files, no devices)."""
    conn = libvirt.open("test:///default")
    a, b = str(_uuid.uuid4()), str(_uuid.uuid4())
    dev = f"{fakehost.paths.dev}/nvme"
    doms = [conn.defineXML(domain_xml("inst-a", a, [("vdb", dev + "0n1", "s-" + V1),
                                                    ("vdc", dev + "1n1", "s-" + V2)])),
            conn.defineXML(domain_xml("inst-b", b, [("vdb", dev + "2n1", "s-" + V3)]))]
    rec = AttachmentRecord(fakehost.paths.attachments_file)
    for vol, inst, n in ((V1, {"uuid": a, "name": "inst-a"}, "0n1"),
                         (V2, {"uuid": a, "name": "inst-a"}, "1n1"),
                         (V3, {"uuid": b, "name": "inst-b"}, "2n1"),
                         (V4, {"uuid": str(_uuid.uuid4()), "name": "inst-gone"}, "3n1")):
        rec.add(connection_props(vol), inst, device_path=dev + n, serial="s-" + vol)
    yield conn, rec, a, b
    for d in doms:
        d.undefine()
    conn.close()


def connector(fakehost, kernel):
    return LightOSConnector(None, device_scan_attempts=6, paths=fakehost.paths, sleep=kernel,
                            flush=lambda d: None)


def test_reconnect_restores_every_volume_of_every_instance(fakehost, scene):
    conn, rec, a, b = scene
    kernel = Kernel(fakehost, {V1: "nvme4n1", V2: "nvme1n1", V3: "nvme2n1"})
    out = reconnect(fakehost.paths, conn=conn, connector=connector(fakehost, kernel))
    by = {(o.instance, o.volume): o for o in out}
    assert {k: o.action for k, o in by.items()} == {
        ("inst-a", V1): RECONNECTED, ("inst-a", V2): RECONNECTED, ("inst-b", V3): RECONNECTED,
        ("inst-gone", V4): INSTANCE_MISSING}
    assert by[("inst-a", V1)].device_path == str(fakehost.paths.dev / "nvme4n1")
    # the kernel numbered V1 differently: record and the stopped domain now point at it
    assert by[("inst-a", V1)].domain_updated
    xml = ET.fromstring(conn.lookupByUUIDString(a).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    assert [d.find("source").get("dev") for d in xml.findall("./devices/disk")] == [
        str(fakehost.paths.dev / "nvme4n1"), str(fakehost.paths.dev / "nvme1n1")]
    assert not by[("inst-a", V2)].domain_updated
    assert rec.volumes()[V1]["device_path"] == str(fakehost.paths.dev / "nvme4n1")
    assert sorted(os.listdir(fakehost.paths.discovery_dir)) == sorted(
        f"{v}.conf" for v in (V1, V2, V3))  # not for the volume of the deleted instance


def test_reconnect_twice_is_idempotent(fakehost, scene):
    conn, rec, a, b = scene
    kernel = Kernel(fakehost, {V1: "nvme0n1", V2: "nvme1n1", V3: "nvme2n1"})
    reconnect(fakehost.paths, conn=conn, connector=connector(fakehost, kernel))
    inodes = {f: os.stat(fakehost.paths.discovery_dir / f).st_ino
              for f in os.listdir(fakehost.paths.discovery_dir)}
    record_before = rec.volumes()
    sleeps = kernel.sleeps
    out = reconnect(fakehost.paths, conn=conn, connector=connector(fakehost, kernel))
    assert {o.action for o in out if o.volume != V4} == {ALREADY}
    assert kernel.sleeps == sleeps  # nothing was waited for
    assert {f: os.stat(fakehost.paths.discovery_dir / f).st_ino
            for f in os.listdir(fakehost.paths.discovery_dir)} == inodes
    assert rec.volumes() == record_before
    assert not any(o.domain_updated for o in out)


def test_a_failing_volume_does_not_stop_the_others(fakehost, scene):
    conn, rec, a, b = scene
    kernel = Kernel(fakehost, {V1: "nvme0n1", V2: "nvme1n1", V3: "nvme2n1"}, never={V2})
    out = reconnect(fakehost.paths, conn=conn, connector=connector(fakehost, kernel))
    actions = {o.volume: o.action for o in out}
    assert actions[V2] == FAILED and actions[V1] == actions[V3] == RECONNECTED
    # its instance still uses it: the file stays, so the service connects it when it can
    assert f"{V2}.conf" in os.listdir(fakehost.paths.discovery_dir)
    assert "the entry file stays" in next(o.detail for o in out if o.volume == V2)


def test_a_dead_cluster_costs_one_bounded_wait_not_one_per_volume(fakehost, scene):
    """Nova's attaches and detaches wait on the host-wide lock: it is not held meanwhile."""
    import threading

    from lightos_driver.locking import volume_lock
    conn, rec, a, b = scene
    slept, lock_free = [], []

    def nova_attaching():
        with volume_lock(fakehost.paths.lock_file):
            lock_free.append(True)

    def kernel(seconds):  # nothing ever shows up; another thread must get the lock meanwhile
        slept.append(seconds)
        t = threading.Thread(target=nova_attaching, daemon=True)
        t.start()
        t.join(5)

    c = LightOSConnector(None, device_scan_attempts=50, paths=fakehost.paths, sleep=kernel,
                         device_wait_timeout=10)
    out = reconnect(fakehost.paths, conn=conn, connector=c)
    assert {o.action for o in out if o.volume != V4} == {FAILED}
    assert 0 < sum(slept) <= 10  # three volumes, one budget
    assert len(lock_free) == len(slept)
    assert len(os.listdir(fakehost.paths.discovery_dir)) == 3


def test_disk_no_longer_in_domain_is_not_resurrected(fakehost, scene):
    conn, rec, a, b = scene
    dom = conn.lookupByUUIDString(b)
    conn.defineXML(domain_xml("inst-b", b, []))  # detached while the host was down
    kernel = Kernel(fakehost, {V1: "nvme0n1", V2: "nvme1n1", V3: "nvme2n1"})
    out = reconnect(fakehost.paths, conn=conn, connector=connector(fakehost, kernel))
    assert {o.volume: o.action for o in out}[V3] == NOT_IN_DOMAIN
    assert f"{V3}.conf" not in os.listdir(fakehost.paths.discovery_dir)
    assert dom.name() == "inst-b"


def test_prune_forgets_deleted_instances(fakehost, scene):
    conn, rec, a, b = scene
    kernel = Kernel(fakehost, {V1: "nvme0n1", V2: "nvme1n1", V3: "nvme2n1"})
    reconnect(fakehost.paths, conn=conn, connector=connector(fakehost, kernel), prune=True)
    assert V4 not in rec.volumes() and set(rec.volumes()) == {V1, V2, V3}


def test_reconnect_command_in_a_separate_process(fakehost, tmp_path):
    """A "rebooted" host: libvirt's domains come from a node file another process reads, the
    devices are back (the kernel reconnected them), the entry files are gone."""
    a = str(_uuid.uuid4())
    node = tmp_path / "node.xml"
    node.write_text("<node>" + domain_xml("inst-a", a, [
        ("vdb", str(fakehost.paths.dev / "nvme0n1"), "s-" + V1)]) + "</node>")
    fakehost.add_namespace("nvme0n1", V1)
    AttachmentRecord(fakehost.paths.attachments_file).add(
        connection_props(V1), {"uuid": a, "name": "inst-a"},
        device_path=str(fakehost.paths.dev / "nvme0n1"), serial="s-" + V1)
    cmd = [sys.executable, "-m", "lightos_driver.cli", "reconnect", "--root",
           str(fakehost.root), "--libvirt-uri", f"test://{node}", "--json"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    (o,) = json.loads(run.stdout)
    assert (o["instance"], o["volume"], o["action"]) == ("inst-a", V1, RECONNECTED)
    assert (fakehost.paths.discovery_dir / f"{V1}.conf").exists()
    run2 = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert json.loads(run2.stdout)[0]["action"] == ALREADY


def test_nothing_recorded_nothing_to_do(fakehost):
    assert reconnect(fakehost.paths, conn=object()) == []
