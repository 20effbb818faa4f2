"""nova's LibvirtLightOSVolumeDriver, with the same public method signatures.

nova calls ``connect_volume`` (the host gets the block device), then builds the guest disk from
``get_config``; on detach ``disconnect_volume``; on a cinder extend ``extend_volume``, whose return
value (bytes) nova hands to QEMU's block resize. Beyond nova's driver this one:

* records every attachment locally (``attachments.AttachmentRecord``) so ``reconnect`` can restore
  the volumes of every instance after a host reboot, as the spec promises;
* keeps a multiattach volume's entry file while another instance on this host still uses it;
* waits (bounded) for the kernel to show the requested size on extend, rescanning once if the
  namespace-attribute-changed event did not arrive;
* can attach/detach the disk itself through libvirt-python (``attach``/``detach``).
"""
from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Callable

from . import devices, domains
from .attachments import AttachmentRecord, instance_ident
from .connector import DEVICE_SCAN_ATTEMPTS_DEFAULT, LightOSConnector
from .errors import ExtendIncomplete, LightOSError
from .paths import Paths

log = logging.getLogger(__name__)
QOS_KEYS = ("total_bytes_sec", "read_bytes_sec", "write_bytes_sec", "total_iops_sec",
            "read_iops_sec", "write_iops_sec")


@dataclass
class DiskConfig:
    """A guest ``<disk>`` as nova's LibvirtConfigGuestDisk formats it (the parts used here)."""

    source_path: str
    target_dev: str = ""
    target_bus: str = "virtio"
    source_device: str = "disk"
    driver_name: str = "qemu"
    driver_format: str = "raw"
    driver_cache: str = "none"
    driver_io: str = "native"
    driver_discard: str | None = None
    serial: str | None = None
    shareable: bool = False
    readonly: bool = False
    logical_block_size: int | None = None
    physical_block_size: int | None = None
    iotune: dict[str, int] = field(default_factory=dict)
    source_type: str = "block"

    def format_dom(self) -> ET.Element:
        disk = ET.Element("disk", type=self.source_type, device=self.source_device)
        drv = ET.SubElement(disk, "driver", name=self.driver_name, type=self.driver_format,
                            cache=self.driver_cache, io=self.driver_io)
        if self.driver_discard:
            drv.set("discard", self.driver_discard)
        ET.SubElement(disk, "source", dev=self.source_path)
        tgt = ET.SubElement(disk, "target", bus=self.target_bus)
        if self.target_dev:
            tgt.set("dev", self.target_dev)
        if self.serial:
            ET.SubElement(disk, "serial").text = self.serial
        if self.logical_block_size or self.physical_block_size:
            bio = ET.SubElement(disk, "blockio")
            if self.logical_block_size:
                bio.set("logical_block_size", str(self.logical_block_size))
            if self.physical_block_size:
                bio.set("physical_block_size", str(self.physical_block_size))
        if self.iotune:
            tune = ET.SubElement(disk, "iotune")
            for k in QOS_KEYS:
                if k in self.iotune:
                    ET.SubElement(tune, k).text = str(int(self.iotune[k]))
        if self.readonly:
            ET.SubElement(disk, "readonly")
        if self.shareable:
            ET.SubElement(disk, "shareable")
        return disk

    def to_xml(self) -> str:
        return ET.tostring(self.format_dom(), encoding="unicode")


class LibvirtLightOSVolumeDriver:
    """Attach LightOS volumes to libvirt guests (nova's LibvirtLightOSVolumeDriver interface)."""

    VERSION = "2.3.12"

    def __init__(self, host: Any = None, *, connector: LightOSConnector | None = None,
                 paths: Paths | None = None,
                 device_scan_attempts: int = DEVICE_SCAN_ATTEMPTS_DEFAULT,
                 record: AttachmentRecord | None = None, extend_wait: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.host = host
        self.paths = paths or (connector.paths if connector else Paths())
        self.connector = connector or LightOSConnector(
            None, device_scan_attempts=device_scan_attempts, paths=self.paths)
        self.record = record or AttachmentRecord(self.paths.attachments_file)
        self.extend_wait = extend_wait
        self._sleep = sleep

    # ---- nova's interface ----
    def get_config(self, connection_info: dict, disk_info: dict) -> DiskConfig:
        """The guest disk: block source, raw, cache none, plus serial/discard/QoS/shareable."""
        data = connection_info.get("data") or {}
        conf = DiskConfig(source_path=data["device_path"], target_dev=disk_info.get("dev", ""),
                          target_bus=disk_info.get("bus", "virtio"),
                          source_device=disk_info.get("type", "disk"),
                          serial=connection_info.get("serial") or data.get("volume_id"))
        if data.get("discard") is True:
            conf.driver_discard = "unmap"
        if connection_info.get("multiattach") or data.get("multiattach"):
            conf.shareable = True
        mode = data.get("access_mode")
        if mode:
            if mode not in ("ro", "rw"):
                raise LightOSError(f"unknown access_mode {mode!r}")
            conf.readonly = mode == "ro"
        conf.logical_block_size = data.get("logical_block_size")
        conf.physical_block_size = data.get("physical_block_size")
        qos = data.get("qos_specs")
        if isinstance(qos, dict):
            conf.iotune = {k: v for k, v in qos.items() if k in QOS_KEYS}
        return conf

    def connect_volume(self, connection_info: dict, instance: Any) -> None:
        data = connection_info["data"]
        device_info = self.connector.connect_volume(data)
        data["device_path"] = device_info["path"]
        self.record.add(data, instance, device_path=device_info["path"],
                        serial=connection_info.get("serial") or data.get("volume_id"))
        log.debug("LightOS volume %s connected at %s", data.get("uuid"), device_info["path"])

    def disconnect_volume(self, connection_info: dict, instance: Any, force: bool = False) -> None:
        """Detach from the host, unless another instance here still uses the volume."""
        data = connection_info["data"]
        uuid = data.get("uuid")
        others = [u for u in self.record.users(uuid) if u not in instance_ident(instance)] \
            if uuid else []
        if others:
            log.info("LightOS volume %s still used here by %s: keeping it connected",
                     uuid, ", ".join(others))
        else:
            self.connector.disconnect_volume(data, None, force=force)
        if uuid:
            self.record.remove(uuid, instance)

    def extend_volume(self, connection_info: dict, instance: Any, requested_size: int) -> int:
        """The new size in bytes once the kernel shows at least ``requested_size`` (bounded wait;
        one controller rescan if the resize event seems lost)."""
        data = connection_info["data"]
        size = self.connector.extend_volume(data)
        if not requested_size or size >= requested_size:
            return size
        deadline = time.monotonic() + self.extend_wait
        rescanned = False
        while time.monotonic() < deadline:
            self._sleep(0.5)
            size = self.connector.extend_volume(data)
            if size >= requested_size:
                return size
            if not rescanned and time.monotonic() > deadline - self.extend_wait / 2:
                dev = data.get("device_path") or devices.find_device(self.paths, data["uuid"])
                if dev:
                    devices.rescan(self.paths, dev)
                rescanned = True
        raise ExtendIncomplete(data.get("uuid", "?"), size, requested_size, self.extend_wait)

    # ---- attaching through libvirt itself ----
    def attach(self, connection_info: dict, disk_info: dict, instance: Any) -> str:
        """connect_volume + add the disk to the instance's domain. Returns how it was attached."""
        conn = domains.resolve_connection(self.host)
        inst_uuid, name = instance_ident(instance)
        dom = domains.find_domain(conn, inst_uuid, name)
        if dom is None:
            raise LightOSError(f"instance {name or inst_uuid} is not defined in libvirt")
        self.connect_volume(connection_info, instance)
        try:
            how = domains.attach_disk(conn, dom, self.get_config(connection_info,
                                                                 disk_info).to_xml())
        except BaseException:
            self.disconnect_volume(connection_info, instance, force=True)
            raise
        self.record.add(connection_info["data"], instance, target_dev=disk_info.get("dev"))
        return how

    def detach(self, connection_info: dict, instance: Any, force: bool = False) -> None:
        """Remove the disk from the domain, then disconnect_volume."""
        conn = domains.resolve_connection(self.host)
        inst_uuid, name = instance_ident(instance)
        dom = domains.find_domain(conn, inst_uuid, name)
        data = connection_info["data"]
        if dom is not None:
            recorded = self.record.volumes().get(data.get("uuid"), {})
            domains.detach_disk(conn, dom,
                                source_dev=data.get("device_path") or recorded.get("device_path", ""),
                                serial=connection_info.get("serial") or data.get("volume_id") or "")
        self.disconnect_volume(connection_info, instance, force=force)
