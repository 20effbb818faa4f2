"""The libvirt volume driver: nova's LightOS scenarios, the disk XML, and attach/detach through
libvirt-python against libvirt's own test driver (in-process, no daemon)."""
from __future__ import annotations

import inspect
import os
import uuid as _uuid
import xml.etree.ElementTree as ET

import pytest

from fakehost import SUBSYSNQN, VOLUME_UUID, connection_props
from lightos_driver.connector import LightOSConnector
from lightos_driver.libvirt_volume import LibvirtLightOSVolumeDriver

libvirt = pytest.importorskip("libvirt", reason="the driver extra (libvirt-python) is required")


def conn_info(uuid=VOLUME_UUID, **extra) -> dict:
    return {"driver_volume_type": "lightos", "serial": "cinder-" + uuid[:8],
            "data": connection_props(uuid), **extra}


def make_driver(fakehost, host=None, **kw) -> LibvirtLightOSVolumeDriver:
    connector = LightOSConnector(None, device_scan_attempts=2, paths=fakehost.paths,
                                 sleep=lambda s: None, flush=lambda d: None)
    return LibvirtLightOSVolumeDriver(host, connector=connector, **kw)


def test_public_signatures_match_nova():
    # nova's LibvirtBaseVolumeDriver signatures (nova tests require them identical)
    sig = {n: list(inspect.signature(getattr(LibvirtLightOSVolumeDriver, n)).parameters)
           for n in ("connect_volume", "disconnect_volume", "extend_volume", "get_config")}
    assert sig == {"connect_volume": ["self", "connection_info", "instance"],
                   "disconnect_volume": ["self", "connection_info", "instance", "force"],
                   "extend_volume": ["self", "connection_info", "instance", "requested_size"],
                   "get_config": ["self", "connection_info", "disk_info"]}
    assert inspect.signature(LibvirtLightOSVolumeDriver.disconnect_volume
                             ).parameters["force"].default is False


def test_connect_stores_device_path_and_records(fakehost):
    dev = fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    drv = make_driver(fakehost)
    info = conn_info()
    assert drv.connect_volume(info, {"uuid": "i-1", "name": "instance-00000001"}) is None
    assert info["data"]["device_path"] == dev
    vol = drv.record.volumes()[VOLUME_UUID]
    assert vol["connection"]["subsysnqn"] == SUBSYSNQN
    assert vol["device_path"] == dev
    assert vol["instances"]["i-1"]["name"] == "instance-00000001"


def test_disconnect_calls_connector_with_force(fakehost):
    calls = []

    class Recording(LightOSConnector):
        def disconnect_volume(self, props, device_info, force=False, ignore_errors=False):
            calls.append((props["uuid"], device_info, force))

    drv = LibvirtLightOSVolumeDriver(connector=Recording(None, paths=fakehost.paths))
    drv.disconnect_volume(conn_info(), None, force=True)
    assert calls == [(VOLUME_UUID, None, True)]


def test_get_config_block_raw_cache_none():
    drv = LibvirtLightOSVolumeDriver(connector=LightOSConnector(None))
    info = {"serial": "vol-1", "data": {"device_path": "/dev/fake-dev"}}
    tree = drv.get_config(info, {"type": "disk", "dev": "vdb", "bus": "virtio"}).format_dom()
    assert tree.get("type") == "block" and tree.get("device") == "disk"
    assert tree.find("./source").get("dev") == "/dev/fake-dev"
    assert tree.find("./driver").get("type") == "raw"
    assert tree.find("./driver").get("cache") == "none"
    assert tree.find("./target").attrib == {"bus": "virtio", "dev": "vdb"}
    assert tree.findtext("./serial") == "vol-1"
    assert tree.find("./shareable") is None and tree.find("./driver").get("discard") is None


def test_get_config_multiattach_discard_qos_readonly():
    drv = LibvirtLightOSVolumeDriver(connector=LightOSConnector(None))
    info = {"multiattach": True, "data": {
        "device_path": "/dev/nvme0n1", "discard": True, "access_mode": "ro",
        "qos_specs": {"total_iops_sec": 500, "bogus": 1}, "logical_block_size": 4096}}
    tree = ET.fromstring(drv.get_config(info, {"type": "disk", "dev": "vdc",
                                               "bus": "scsi"}).to_xml())
    assert tree.find("./shareable") is not None
    assert tree.find("./readonly") is not None
    assert tree.find("./driver").get("discard") == "unmap"
    assert tree.findtext("./iotune/total_iops_sec") == "500"
    assert tree.find("./iotune/bogus") is None
    assert tree.find("./blockio").get("logical_block_size") == "4096"


def test_extend_waits_for_requested_size(fakehost):
    fakehost.add_namespace("nvme0n1", VOLUME_UUID, size_bytes=1 << 30)
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        if len(sleeps) == 3:  # the kernel processes the namespace-changed AEN
            fakehost.resize("nvme0n1", 2 << 30)

    drv = make_driver(fakehost, sleep=sleep)
    assert drv.extend_volume(conn_info(), None, 2 << 30) == 2 << 30
    assert len(sleeps) == 3


def test_extend_rescans_when_the_event_is_lost(fakehost):
    fakehost.add_namespace("nvme0n1", VOLUME_UUID, size_bytes=1 << 30, ctrls=(0,))
    rescan_file = fakehost.paths.sys / "class/nvme/nvme0/rescan_controller"

    def sleep(s):  # the stand-in kernel resizes only when asked to rescan
        if rescan_file.read_text() == "1":
            fakehost.resize("nvme0n1", 3 << 30)

    drv = make_driver(fakehost, sleep=sleep, extend_wait=2.0)
    assert drv.extend_volume(conn_info(), None, 3 << 30) == 3 << 30


def test_extend_that_never_shows_fails_instead_of_reporting_the_old_size(fakehost):
    """nova would resize the guest's disk to whatever size is returned."""
    import time

    from lightos_driver.errors import ExtendIncomplete
    fakehost.add_namespace("nvme0n1", VOLUME_UUID, size_bytes=1 << 30, ctrls=(0,))
    drv = make_driver(fakehost, sleep=lambda s: time.sleep(0.01), extend_wait=0.1)
    with pytest.raises(ExtendIncomplete) as err:
        drv.extend_volume(conn_info(), None, 2 << 30)
    assert (err.value.size, err.value.requested) == (1 << 30, 2 << 30)


def test_corrupt_attachment_record_is_moved_aside_and_attach_detach_work(fakehost):
    record = fakehost.paths.attachments_file
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text('{"volumes": {"truncated')
    fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    drv = make_driver(fakehost)
    info = conn_info()
    drv.connect_volume(info, {"uuid": "i-1", "name": "inst-1"})
    assert list(drv.record.volumes()) == [VOLUME_UUID]
    aside = [p.name for p in record.parent.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and (record.parent / aside[0]).read_text() == '{"volumes": {"truncated'
    record.write_text("[]")  # valid JSON, not a record
    drv.disconnect_volume(info, {"uuid": "i-1", "name": "inst-1"})
    assert not (fakehost.paths.discovery_dir / f"{VOLUME_UUID}.conf").exists()


def test_extend_of_unattached_volume_fails(fakehost):
    from lightos_driver.errors import DeviceNotFound
    with pytest.raises(DeviceNotFound):
        make_driver(fakehost).extend_volume(conn_info(), None, 1 << 30)


DOMAIN = """<domain type='test'><name>{name}</name><uuid>{uuid}</uuid>
<memory>1048576</memory><os><type>hvm</type></os><devices/></domain>"""


@pytest.fixture
def lv():
    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


def define(conn, name):
    uid = str(_uuid.uuid4())
    return conn.defineXML(DOMAIN.format(name=name, uuid=uid)), uid


def test_attach_and_detach_through_libvirt(fakehost, lv):
    dev = fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    dom, uid = define(lv, "instance-a")
    drv = make_driver(fakehost, host=lv)
    info = conn_info()
    inst = {"uuid": uid, "name": "instance-a"}
    assert drv.attach(info, {"type": "disk", "dev": "vdb", "bus": "virtio"}, inst) == "config"
    disks = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).findall("./devices/disk")
    (disk,) = disks
    assert disk.get("type") == "block" and disk.find("source").get("dev") == dev
    assert disk.findtext("serial") == info["serial"]
    assert drv.record.volumes()[VOLUME_UUID]["instances"][uid]["target_dev"] == "vdb"
    assert (fakehost.paths.discovery_dir / f"{VOLUME_UUID}.conf").exists()

    drv.detach(info, inst)
    assert ET.fromstring(dom.XMLDesc(0)).findall("./devices/disk") == []
    assert drv.record.volumes() == {}
    assert not (fakehost.paths.discovery_dir / f"{VOLUME_UUID}.conf").exists()
    dom.undefine()


def test_attach_to_unknown_instance_changes_nothing(fakehost, lv):
    fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    drv = make_driver(fakehost, host=lv)
    from lightos_driver.errors import LightOSError
    with pytest.raises(LightOSError):
        drv.attach(conn_info(), {"dev": "vdb"}, {"uuid": str(_uuid.uuid4()), "name": "nope"})
    assert os.listdir(fakehost.paths.discovery_dir) == [] and drv.record.volumes() == {}


def test_multiattach_keeps_connection_until_last_instance_detaches(fakehost, lv):
    fakehost.add_namespace("nvme0n1", VOLUME_UUID)
    drv = make_driver(fakehost, host=lv)
    conf = fakehost.paths.discovery_dir / f"{VOLUME_UUID}.conf"
    doms = [define(lv, f"multi-{i}") for i in range(2)]
    for dom, uid in doms:
        drv.attach(conn_info(multiattach=True), {"dev": "vdb"}, {"uuid": uid, "name": dom.name()})
        assert "<shareable/>" in dom.XMLDesc(0)
    drv.detach(conn_info(multiattach=True), {"uuid": doms[0][1], "name": doms[0][0].name()})
    assert "<disk" not in doms[0][0].XMLDesc(0) and "<shareable/>" in doms[1][0].XMLDesc(0)
    assert conf.exists() and drv.record.users(VOLUME_UUID) == [doms[1][1]]
    drv.detach(conn_info(multiattach=True), {"uuid": doms[1][1], "name": doms[1][0].name()})
    assert not conf.exists() and drv.record.volumes() == {}
    for dom, _ in doms:
        dom.undefine()
