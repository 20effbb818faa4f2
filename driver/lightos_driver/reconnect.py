"""Startup reconnect: after a host reboot (or nova restart), bring back every LightOS volume of
every instance libvirt knows, as the LightOS nova spec promises and nova itself does not do.

Sources, cross-checked: the local attachment record (which volume, which cluster, which instance
— written at every attach/detach) and libvirt (which instances exist, and whether their domain
still has that disk, by serial or /dev path). For each volume still in use by an existing
instance: the connector re-creates the entry file if it is missing and waits for the device; if
the kernel numbered it differently than before, the record is updated and so is the persistent
definition of a stopped domain (a running one keeps its open device).

Idempotent: an entry file that is right is not rewritten, a present device is not waited for,
and nothing is changed twice; running it twice reports "already-connected" the second time.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import devices, domains
from .attachments import AttachmentRecord
from .connector import LightOSConnector
from .paths import Paths

log = logging.getLogger(__name__)

ALREADY = "already-connected"
RECONNECTED = "reconnected"
FAILED = "failed"
INSTANCE_MISSING = "instance-missing"
NOT_IN_DOMAIN = "not-in-domain"


@dataclass
class Outcome:
    instance: str
    instance_uuid: str
    volume: str
    action: str
    device_path: str = ""
    previous_path: str = ""
    domain_updated: bool = False
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        s = f"{self.instance or self.instance_uuid}  {self.volume}  {self.action}"
        if self.device_path:
            s += f"  {self.device_path}"
        if self.previous_path and self.previous_path != self.device_path:
            s += f" (was {self.previous_path}{', domain updated' if self.domain_updated else ''})"
        if self.detail:
            s += f"  — {self.detail}"
        return s


def _match_disk(disks: list[domains.BlockDisk], device_path: str, serial: str):
    for d in disks:
        if serial and d.serial == serial:
            return d
    for d in disks:
        if device_path and d.source_dev == device_path:
            return d
    return None


def reconnect(paths: Paths | None = None, *, conn: Any = None, libvirt_uri: str | None = None,
              connector: LightOSConnector | None = None, update_domains: bool = True,
              prune: bool = False) -> list[Outcome]:
    """Re-establish every recorded LightOS volume of every existing instance."""
    paths = paths or (connector.paths if connector else Paths())
    connector = connector or LightOSConnector(None, device_scan_attempts=8, paths=paths)
    record = AttachmentRecord(paths.attachments_file)
    volumes = record.volumes()
    if not volumes:
        return []
    conn = conn if conn is not None else domains.open_connection(libvirt_uri)
    out: list[Outcome] = []
    for vol_uuid, vol in sorted(volumes.items()):
        users = []  # (outcome, domain, disk) of instances that still use the volume
        for key, inst in sorted(vol.get("instances", {}).items()):
            name = inst.get("name", "")
            dom = domains.find_domain(conn, key if key != name else "", name)
            o = Outcome(instance=name, instance_uuid=key if key != name else "",
                        volume=vol_uuid, action="", previous_path=vol.get("device_path", ""))
            if dom is None:
                o.action, o.detail = INSTANCE_MISSING, "no such domain in libvirt"
                if prune:
                    record.remove(vol_uuid, {"uuid": key, "name": name})
                    o.detail += "; record pruned"
                out.append(o)
                continue
            o.instance = dom.name()
            disk = _match_disk(domains.domain_block_disks(dom), vol.get("device_path", ""),
                               inst.get("serial", ""))
            if disk is None:
                o.action, o.detail = NOT_IN_DOMAIN, "the domain has no disk for this volume"
                out.append(o)
                continue
            o.previous_path = disk.source_dev or o.previous_path
            users.append((o, dom, disk))
        if users:
            out.extend(_reconnect_volume(paths, connector, record, vol_uuid, vol, users, conn,
                                         update_domains))
    for o in out:
        log.info("reconnect: %s", o.line())
    return out


def _reconnect_volume(paths: Paths, connector: LightOSConnector, record: AttachmentRecord,
                      vol_uuid: str, vol: dict, users: list, conn: Any,
                      update_domains: bool) -> list[Outcome]:
    props = dict(vol.get("connection") or {})
    props.setdefault("uuid", vol_uuid)
    before_dev = devices.find_device(paths, vol_uuid)
    had_file = Path(connector.dsc_file_name(vol_uuid)).exists()
    try:
        device = connector.connect_volume(props)["path"]
    except Exception as exc:  # noqa: BLE001 - reported per volume, the others go on
        for o, _, _ in users:
            o.action, o.detail = FAILED, str(exc)
        return [o for o, _, _ in users]
    action = ALREADY if (before_dev == device and had_file) else RECONNECTED
    if vol.get("device_path") != device:
        record.set_device_path(vol_uuid, device)
    for o, dom, disk in users:
        o.action, o.device_path = action, device
        if disk.source_dev and disk.source_dev != device and update_domains:
            if dom.isActive():
                o.detail = "domain running with the old path: restart it to use the new one"
            else:
                o.domain_updated = domains.replace_disk_source(conn, dom, disk.source_dev, device)
    return [o for o, _, _ in users]
